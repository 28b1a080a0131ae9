"""shlax npm: the ``npm`` action and the ``npm`` download cache (the user's own ~/.npm)."""
