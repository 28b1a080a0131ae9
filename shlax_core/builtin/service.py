"""The ``service`` action: systemd units enabled, started, stopped, restarted or reloaded.

On hosts, one ``systemctl show`` reads the unit's state; only what differs is done, so the step
is ``ok`` when the unit is already as asked (``restarted`` and ``reloaded`` always act: they are
what handlers are for). In image builds nothing runs, so the step only **enables** the unit
(``enabled = true``): ``systemctl enable`` in offline mode when the image has systemctl, else
the ``.wants/`` symlinks its ``[Install]`` section asks for, made by a fixed script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Optional

from shlax_core.actions import Action, StepContext
from shlax_core.errors import StepFailed
from shlax_core.params import doc

_UNIT = re.compile(r"^[A-Za-z0-9:_.@\\-]+$")
RUNNING = ("active", "activating", "reloading")
ENABLED = ("enabled", "enabled-runtime", "static", "alias", "indirect", "generated")

#: image builds without systemctl: the symlinks `systemctl enable` would make, from the unit's
#: [Install] WantedBy=/RequiredBy= ($1 the unit, $2 enable|disable); data only in arguments
LINKS_SCRIPT = r"""
set -e
unit=$1; what=$2; file=
for d in /etc/systemd/system /usr/lib/systemd/system /lib/systemd/system; do
  if [ -f "$d/$unit" ]; then file=$d/$unit; break; fi
done
if [ -z "$file" ]; then
  echo "no unit file $unit in /etc/systemd/system, /usr/lib/systemd/system or /lib/systemd/system" >&2
  exit 3
fi
if [ "$what" = disable ]; then
  find /etc/systemd/system -type l -name "$unit" -exec rm -f {} +
  exit 0
fi
section=; made=0
while IFS= read -r line || [ -n "$line" ]; do
  case $line in
    '['*) section=$line ;;
    WantedBy=*|RequiredBy=*)
      [ "$section" = "[Install]" ] || continue
      kind=wants; case $line in RequiredBy=*) kind=requires ;; esac
      for t in ${line#*=}; do
        mkdir -p "/etc/systemd/system/$t.$kind"
        ln -sfn "$file" "/etc/systemd/system/$t.$kind/$unit"
        echo "enabled: /etc/systemd/system/$t.$kind/$unit -> $file"
        made=1
      done ;;
  esac
done < "$file"
[ "$made" = 1 ] || echo "$unit has no WantedBy= or RequiredBy= in its [Install] section: nothing to enable"
"""


@dataclass
class ServiceParams:
    name: str = doc("the unit, e.g. nginx or nginx.service")
    state: Optional[Literal["started", "stopped", "restarted", "reloaded"]] = doc(
        "hosts: started/stopped when needed; restarted/reloaded every time (use them in handlers)", None)
    enabled: Optional[bool] = doc("start at boot (systemctl enable) or not; the only effect in image builds",
                                  None)

    def validate(self) -> Optional[tuple[str, str] | str]:
        if not _UNIT.match(self.name) or self.name.startswith("-"):
            return ("name", f"{self.name!r} is not a systemd unit name")
        if self.state is None and self.enabled is None:
            return 'say what to do: state = "started" (or stopped, restarted, reloaded) and/or enabled = true'
        return None


class Service(Action):
    """Manage a systemd service: enabled at boot, started, stopped, restarted or reloaded.

    Hosts need systemd (a clear error otherwise); image builds only enable units.

    Example: ``{ service = "nginx", state = "started", enabled = true }``, and in a handler
    ``{ service = "nginx", state = "restarted" }``
    """

    Params = ServiceParams
    primary = "name"

    def describe(self) -> str:
        p = self.params
        what = [w for w in (p.state, {True: "enabled", False: "disabled", None: None}[p.enabled]) if w]
        return f"service {p.name} {' '.join(what)}"

    # -- hosts ----------------------------------------------------------------------------------
    def state(self, ctx: StepContext) -> dict[str, str]:
        res = ctx.run(["systemctl", "show", "--property=LoadState,ActiveState,UnitFileState", "--", self.params.name],
                      check=False, capture=True, quiet=True)
        text = res.output
        if res.returncode == 127 or "not found" in text and "systemctl" in text:
            raise StepFailed(f"{self.params.name}: this host has no systemctl: the service action needs systemd",
                             argv=res.argv, returncode=res.returncode, tail=res.tail)
        if not res.ok or "booted with systemd" in text or "Failed to connect to bus" in text:
            raise StepFailed(f"{self.params.name}: systemd is not running on this host (systemctl cannot reach it)",
                             argv=res.argv, returncode=res.returncode, tail=res.tail)
        values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        if values.get("LoadState") == "not-found":
            raise StepFailed(f"no unit {self.params.name} on this host (systemctl show: LoadState=not-found)",
                             argv=res.argv, returncode=res.returncode, tail=res.tail)
        return values

    def needed(self, values: dict[str, str]) -> list[list[str]]:
        """The systemctl commands that bring the unit where the step wants it."""
        p = self.params
        out = []
        if p.enabled is True and values.get("UnitFileState") not in ENABLED:
            out.append(["systemctl", "enable", "--", p.name])
        if p.enabled is False and values.get("UnitFileState") in ("enabled", "enabled-runtime"):
            out.append(["systemctl", "disable", "--", p.name])
        running = values.get("ActiveState") in RUNNING
        if p.state == "started" and not running:
            out.append(["systemctl", "start", "--", p.name])
        elif p.state == "stopped" and running:
            out.append(["systemctl", "stop", "--", p.name])
        elif p.state in ("restarted", "reloaded"):
            out.append(["systemctl", p.state[:-2], "--", p.name])
        return out

    def check(self, ctx: StepContext) -> Optional[bool]:
        return not self.needed(self.state(ctx))

    def apply(self, ctx: StepContext) -> Optional[bool]:
        if ctx.is_image:
            return self._enable_offline(ctx)
        commands = self.needed(self.state(ctx))
        for argv in commands:
            ctx.run(argv)
        return bool(commands)

    # -- images ---------------------------------------------------------------------------------
    def _enable_offline(self, ctx: StepContext) -> Optional[bool]:
        p = self.params
        if p.enabled is None:
            ctx.log(f"service {p.name}: state = {p.state!r} applies to hosts; an image build only enables units")
            return False
        what = "enable" if p.enabled else "disable"
        if ctx.run(["sh", "-c", "command -v systemctl"], check=False, quiet=True).ok:
            ctx.run(["systemctl", what, "--", p.name], env={"SYSTEMD_OFFLINE": "1"})
        else:
            ctx.run(["sh", "-c", LINKS_SCRIPT, "sh", p.name, what])
        return True
