"""shlax pip: the ``pip`` action and the ``pip`` download cache (the user's pip cache + a wheelhouse)."""
