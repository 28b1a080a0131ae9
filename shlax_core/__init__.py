"""shlax core: recipes, the action and backend contracts, the layer cache and the runner.

Nothing here knows a package manager or a container engine by name; those are plugins.
"""

__version__ = "0.1.0"
