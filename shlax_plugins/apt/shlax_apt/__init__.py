"""shlax apt: the ``apt`` action and the ``apt`` download cache (archives and lists per release)."""
