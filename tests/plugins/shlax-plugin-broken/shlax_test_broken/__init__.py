"""A test plugin whose import fails, as a plugin with a missing dependency would."""

raise RuntimeError("shlax-plugin-broken is broken on purpose")
