"""A test plugin: ``{ hello = "world" }`` runs ``echo hello world``."""

from dataclasses import dataclass

from shlax_core.actions import Action
from shlax_core.errors import ShlaxError
from shlax_core.params import doc


@dataclass
class HelloParams:
    who: str = doc("who to greet")
    loud: bool = doc("shout", False)


class Hello(Action):
    """Greet someone (a test plugin)."""

    Params = HelloParams
    primary = "who"

    def describe(self) -> str:
        return f"hello {self.params.who}"

    def apply(self, ctx):
        if self.params.who == "crash":  # a bug in a plugin, for the internal-error test
            raise ZeroDivisionError("division by zero in a test plugin")
        if self.params.who == "nobody":  # a user error only running reveals, for the mid-build tests
            raise ShlaxError("hello: there is nobody to greet", key="who", hint="greet somebody")
        greeting = f"hello {self.params.who}"
        ctx.run(["echo", greeting.upper() if self.params.loud else greeting])
        return True
