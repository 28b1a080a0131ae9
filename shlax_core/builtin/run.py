"""The ``run`` action: one command, as an argv list or as a script with an explicit shell."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Optional, Union

from shlax_core import names
from shlax_core.actions import Action, StepContext
from shlax_core.params import doc


@dataclass
class RunParams:
    command: Union[list[str], str] = doc(
        "an argv list (no shell involved), or a script string run by `shell`")
    shell: Optional[str] = doc("the shell that runs a script string, e.g. /bin/sh or /bin/bash", None)
    env: dict[str, str] = doc("environment variables for the command", default_factory=dict)
    workdir: Optional[str] = doc("directory to run in", None)
    user: Optional[str] = doc("user to run as", None)
    caches: list[str] = doc('download caches to mount for this step, e.g. ["apt", "pip"]', default_factory=list)
    creates: Optional[str] = doc("host backends: skip the command when this path exists", None)
    unless: Optional[list[str]] = doc("host backends: skip the command when this argv exits 0", None)

    def validate(self) -> Any:
        if isinstance(self.command, str):
            if not self.shell:
                return "command", ("a string command is a shell script: say which shell runs it "
                                   "(shell = \"/bin/sh\"), or give an argv list")
            if not self.command.strip():
                return "command", "the script is empty"
            if names.program(self.shell, what="shell"):
                return "shell", names.program(self.shell, what="shell")
        elif not self.command:
            return "command", "the command is an empty list"
        elif self.shell:
            return "shell", "`shell` goes with a script string, not an argv list"
        # what reaches backends' command lines (env NAME=VALUE, --user=, cd --): well-formed
        checks = [("env", names.env_names(self.env)),
                  ("user", self.user is not None and names.owner(self.user, what="user")),
                  ("workdir", self.workdir is not None and names.absolute_path(self.workdir, what="workdir")),
                  ("creates", self.creates is not None and names.absolute_path(self.creates, what="creates")),
                  ("unless", self.unless == [] and "unless is an empty list")]
        return next(((key, problem) for key, problem in checks if problem), None)


class Run(Action):
    """Run a command in the target.

    A list is an argv list, run as is: ``{ run = ["make", "install"] }``. A string is a
    script and needs its shell: ``{ run = "make && make install", shell = "/bin/sh" }``.

    Example: ``{ run = ["pip", "download", "x"], caches = ["pip"], workdir = "/app" }``
    """

    Params = RunParams
    primary = "command"

    def argv(self) -> list[str]:
        p = self.params
        if isinstance(p.command, str):
            return [p.shell, "-c", p.command]
        return list(p.command)

    def cache_names(self) -> list[str]:
        return list(self.params.caches)

    def describe(self) -> str:
        p = self.params
        text = p.command if isinstance(p.command, str) else shlex.join(p.command)
        text = " ".join(text.split())
        return "run " + (text if len(text) <= 70 else text[:67] + "...")

    def check(self, ctx: StepContext) -> Optional[bool]:
        p = self.params
        if p.creates is not None and ctx.stat(p.creates).exists:
            return True
        if p.unless is not None:
            return ctx.run(p.unless, check=False, quiet=True, workdir=p.workdir, user=p.user).ok
        return None

    def apply(self, ctx: StepContext) -> Optional[bool]:
        p = self.params
        ctx.run(self.argv(), env=p.env, workdir=p.workdir, user=p.user)
        return True
