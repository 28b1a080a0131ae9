"""The ``user`` action: a user with a home, by useradd (Debian) or busybox adduser."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from shlax_core import names
from shlax_core.actions import Action, StepContext
from shlax_core.params import doc

_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


@dataclass
class UserParams:
    name: str = doc("login name")
    uid: Optional[int] = doc("numeric user id", None)
    group: Optional[str] = doc("primary group (must exist); default: a group named after the user", None)
    groups: list[str] = doc("supplementary groups (must exist)", default_factory=list)
    home: Optional[str] = doc("home directory, created; default /home/NAME", None)
    shell: str = doc("login shell", "/bin/sh")
    system: bool = doc("a system account", False)

    def validate(self) -> Optional[tuple[str, str]]:
        if not _NAME.match(self.name):
            return "name", f"user name {self.name!r} must match [a-z_][a-z0-9_-]* (at most 32 characters)"
        if self.uid is not None and not 0 <= self.uid < 2**31:
            return "uid", f"uid {self.uid} is out of range"
        if self.group is not None and names.account(self.group, what="group"):
            return "group", names.account(self.group, what="group") or ""
        for i, group in enumerate(self.groups):
            if names.account(group, what="group"):
                return f"groups[{i}]", names.account(group, what="group") or ""
        if self.home is not None and names.absolute_path(self.home, what="home"):
            return "home", names.absolute_path(self.home, what="home") or ""
        if names.absolute_path(self.shell, what="shell"):
            return "shell", names.absolute_path(self.shell, what="shell") or ""
        return None


class User(Action):
    """Create a user and its home directory.

    Example: ``{ user = "app" }`` or ``{ user = { name = "app", uid = 1000, home = "/srv/app" } }``
    """

    Params = UserParams
    primary = "name"

    def describe(self) -> str:
        return f"user {self.params.name}"

    def home(self) -> str:
        return self.params.home or f"/home/{self.params.name}"

    def check(self, ctx: StepContext) -> Optional[bool]:
        return ctx.run(["id", "-u", self.params.name], check=False, quiet=True).ok

    def apply(self, ctx: StepContext) -> Optional[bool]:
        p = self.params
        has_useradd = ctx.run(["sh", "-c", "command -v useradd"], check=False, quiet=True).ok
        if has_useradd:
            argv = ["useradd", "--create-home", "--home-dir", self.home(), "--shell", p.shell]
            if p.uid is not None:
                argv += ["--uid", str(p.uid)]
            if p.group:
                argv += ["--gid", p.group]
            else:
                argv += ["--user-group"]
            if p.groups:
                argv += ["--groups", ",".join(p.groups)]
            if p.system:
                argv += ["--system"]
        else:  # busybox
            argv = ["adduser", "-D", "-h", self.home(), "-s", p.shell]
            if p.uid is not None:
                argv += ["-u", str(p.uid)]
            if p.group:
                argv += ["-G", p.group]
            if p.system:
                argv += ["-S"]
        ctx.run([*argv, "--", p.name] if has_useradd else [*argv, p.name])
        if not has_useradd:
            for group in p.groups:
                ctx.run(["addgroup", p.name, group])
        return True
