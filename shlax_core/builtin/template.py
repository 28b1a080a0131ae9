"""The ``template`` action: a file of the recipe's directory rendered with the variables.

Rendered once per machine with that machine's variables (Jinja2, the same syntax as every
string parameter; docs/recipes.md). On hosts the step is ``ok`` when the file on the machine
already has the rendered content's sha256, the mode and the owner; in images the rendered
content is the step's input, so an image rebuilds this step only when the rendering changed.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from shlax_core.actions import Action, StepContext
from shlax_core.params import doc


@dataclass
class TemplateParams:
    src: str = doc("the template file, relative to the recipe file (Jinja2)")
    dest: str = doc("absolute path of the rendered file in the target")
    mode: str = doc('permission bits, octal', "0644")
    owner: Optional[str] = doc('"user" or "user:group" owning the file (names resolved in the target)', None)

    def validate(self) -> Optional[tuple[str, str] | str]:
        if not self.dest.startswith("/") or self.dest.endswith("/"):
            return ("dest", f"dest {self.dest!r} must be an absolute file path")
        try:
            if not 0 <= int(self.mode, 8) <= 0o7777:
                raise ValueError
        except ValueError:
            return ("mode", f"mode {self.mode!r} must be octal permission bits like \"0644\"")
        if self.owner is not None and (not self.owner or self.owner.startswith("-")):
            return ("owner", f"owner {self.owner!r} must be \"user\" or \"user:group\"")
        return None


class Template(Action):
    """Render a Jinja2 template file of the recipe's directory into the target.

    Variables: the recipe's [vars], the target's vars, inventory host and group vars, --var,
    and `host`, `facts`, `target` (see docs/recipes.md). An undefined variable is an error
    naming the template's file and line, before anything runs.

    Example: ``{ template = { src = "nginx.conf.j2", dest = "/etc/nginx/nginx.conf" } }``
    """
    runs_commands = False  # the build-wide env and workdir do not change what it writes

    Params = TemplateParams
    uses_variables = True

    def prepare(self) -> None:
        p = self.params
        key = f"{self.step.path}.template.src"
        text, self._watched = self.templates.render_file(p.src, self.variables, where=self.recipe.locate(key),
                                                         key=key)
        self.content = text.encode("utf-8")
        self.digest = hashlib.sha256(self.content).hexdigest()

    def inputs(self, session) -> Mapping[str, str]:
        return {"rendered": self.digest}

    def guards(self, session) -> Optional[Mapping[str, Optional[list]]]:
        if any(sig is None for sig in self._watched.values()):
            return None
        return dict(self._watched)

    def describe(self) -> str:
        return f"template {self.params.src} -> {self.params.dest}"

    def check(self, ctx: StepContext) -> Optional[bool]:
        p = self.params
        st = ctx.stat(p.dest)
        if not st.exists or st.is_dir or st.digest != self.digest or st.mode != int(p.mode, 8):
            return False
        if p.owner:
            owner = p.owner if ":" in p.owner else None
            if st.owner is not None and (st.owner != owner if owner else st.owner.split(":")[0] != p.owner):
                return False
        return True

    def apply(self, ctx: StepContext) -> Optional[bool]:
        p = self.params
        with tempfile.TemporaryDirectory(prefix="shlax-template-") as tmp:
            path = Path(tmp) / "template.tar"
            with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
                info = tarfile.TarInfo(p.dest.lstrip("/"))
                info.size = len(self.content)
                info.mode = int(p.mode, 8)
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                tar.addfile(info, io.BytesIO(self.content))
            ctx.put_archive(path, "/", owner=p.owner, paths=[p.dest])
        return True
