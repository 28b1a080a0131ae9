"""A tiny app for the shlax demo."""
