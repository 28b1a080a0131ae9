"""A test plugin that claims a name another distribution already provides."""

from shlax_core.actions import Action


class Greet(Action):
    """Greet (the clashing one)."""

    def apply(self, ctx):
        ctx.run(["echo", "clash"])
        return True
