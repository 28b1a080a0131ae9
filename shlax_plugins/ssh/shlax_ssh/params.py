"""The ssh target's options, host entries, inventory files, and their expansion into one set of
connection settings per host.

Precedence for a host's user, port, identity and become settings, most specific first: the host's
own entry, its inventory group, the inventory's ``[defaults]``, then the target's options.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

from shlax_core import params as P
from shlax_core import tomlfile
from shlax_core.errors import RecipeError
from shlax_core.locate import Locator
from shlax_core.names import VARIABLE
from shlax_core.params import doc

_HOST = re.compile(r"^[A-Za-z0-9_.:%\[\]-]+$")
_USER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")
PER_HOST = ("user", "port", "identity", "become", "become_user")


def _check_host(host: str) -> Optional[str]:
    if not host or host.startswith("-") or not _HOST.match(host):
        return f"host {host!r} is not a host name or address"
    return None


@dataclass
class HostEntry:
    """One host written as a table: ``{ host = "web2", port = 2222, become = true }``."""

    host: str = doc("host name, ssh_config alias or address")
    name: Optional[str] = doc("label shown in output and the recap; default: the host as written", None)
    user: Optional[str] = doc("login user", None)
    port: Optional[int] = doc("ssh port", None)
    identity: Optional[str] = doc("private key file (relative to the recipe)", None)
    become: Optional[bool] = doc("run steps through sudo (non-root login users)", None)
    become_user: Optional[str] = doc("the user sudo switches to", None)
    vars: dict[str, Any] = doc("template variables of this host (over group and inventory vars)",
                               default_factory=dict)

    def validate(self) -> Optional[tuple[str, str]]:
        problem = _check_host(self.host)
        if problem:
            return "host", problem
        problem = _check_vars(self.vars)
        return ("vars", problem) if problem else _check_settings(self)


def _check_vars(values: dict[str, Any]) -> Optional[str]:
    from shlax_core.recipe import RESERVED_VARS

    for key in values:
        if not VARIABLE.match(key) or key in RESERVED_VARS:
            return (f"variable name {key!r} must be letters, digits and '_' (not starting with a digit), "
                    f"and not one of {', '.join(RESERVED_VARS)}")
    return None


def _check_user(user: Optional[str]) -> Optional[str]:
    if user is not None and not _USER.match(user):
        return f"user {user!r} is not a login name"
    return None


def _check_port(port: Optional[int]) -> Optional[str]:
    if port is not None and not 0 < port < 65536:
        return f"port {port} is out of range"
    return None


def _check_settings(table: Any) -> Optional[tuple[str, str]]:
    """The per-host settings every table that may hold them checks alike (a host entry, a group,
    the inventory's defaults, the target): ``(key, problem)`` so the error points at that key."""
    problem = _check_user(table.user)
    if problem:
        return "user", problem
    problem = _check_port(table.port)
    return ("port", problem) if problem else None


@dataclass
class SSHParams:
    hosts: list[Union[str, HostEntry]] = doc(
        'hosts: "host", "user@host", "user@host:port", or tables { host, name, user, port, identity, '
        'become, become_user }', default_factory=list)
    inventory: Optional[str] = doc("a TOML inventory file of host groups (relative to the recipe)", None)
    groups: list[str] = doc("inventory groups to apply to; default: every group", default_factory=list)
    user: Optional[str] = doc("login user for every host; default: ssh's own choice (ssh_config, $USER)", None)
    port: Optional[int] = doc("ssh port for every host; default: ssh's own choice (ssh_config, 22)", None)
    identity: Optional[str] = doc("private key file; default: ssh's own choice (agent, ~/.ssh, ssh_config)", None)
    become: bool = doc("run steps as `become_user` through `sudo -n` (passwordless sudo on the host)", False)
    become_user: str = doc("the user `become` switches to", "root")
    host_key_checking: Literal["strict", "accept-new", "off"] = doc(
        'strict: unknown or changed host keys are refused; accept-new: unknown keys are added to '
        'known_hosts, changed keys refused; off: no checking (throw-away hosts only)', "strict")
    known_hosts: Optional[str] = doc("known_hosts file to use instead of ssh's default", None)
    ssh_config: Optional[str] = doc("ssh client config file (ssh -F) instead of ~/.ssh/config", None)
    jump: Optional[str] = doc("jump host(s), as ssh -J takes them: [user@]host[:port][,...]", None)
    options: dict[str, str] = doc('more ssh client options, e.g. { ServerAliveInterval = "15" }',
                                  default_factory=dict)
    connect_timeout: int = doc("seconds to wait for a connection", 10)
    persist: int = doc("seconds the connection stays open after a run, for the next run to reuse "
                       "(ControlPersist); 0 closes it at the end of the run", 300)

    def validate(self) -> Any:
        if not self.hosts and not self.inventory:
            return 'an ssh target needs `hosts = ["host", ...]` or `inventory = "FILE"`'
        if self.groups and not self.inventory:
            return "groups", "`groups` selects groups of an `inventory` file: give `inventory` too"
        if self.connect_timeout <= 0:
            return "connect_timeout", "connect_timeout must be positive"
        for key in self.options:
            if not re.match(r"^[A-Za-z]+$", key):
                return f"options.{key}", f"ssh option name {key!r} must be letters only, e.g. ServerAliveInterval"
        # a hop beginning with - would reach ssh as an option; other malformed jumps get
        # OpenSSH's own message when it parses them
        if self.jump is not None and any(hop.strip().startswith("-") for hop in self.jump.split(",")):
            return "jump", f"{self.jump!r} is not [user@]host[:port][,...] (a host never begins with '-')"
        return _check_settings(self)


@dataclass
class SSHHost:
    """Everything needed to reach one host: what each backend instance gets as its params."""

    label: str
    host: str
    user: Optional[str] = None
    port: Optional[int] = None
    identity: Optional[str] = None
    become: bool = False
    become_user: str = "root"
    host_key_checking: str = "strict"
    known_hosts: Optional[str] = None
    ssh_config: Optional[str] = None
    jump: Optional[str] = None
    options: dict[str, str] = field(default_factory=dict)
    connect_timeout: int = 10
    persist: int = 300
    #: template variables: inventory [vars], then its groups' vars, then the host's own
    vars: dict[str, Any] = field(default_factory=dict)
    #: the inventory groups that list this host
    groups: list[str] = field(default_factory=list)


@dataclass
class InventoryGroup:
    hosts: list[Union[str, HostEntry]] = doc("the group's hosts", default_factory=list)
    user: Optional[str] = doc("login user", None)
    port: Optional[int] = doc("ssh port", None)
    identity: Optional[str] = doc("private key file (relative to the inventory)", None)
    become: Optional[bool] = doc("run steps through sudo", None)
    become_user: Optional[str] = doc("the user sudo switches to", None)
    vars: dict[str, Any] = doc("template variables of the group's hosts", default_factory=dict)

    def validate(self) -> Optional[tuple[str, str]]:
        problem = _check_vars(self.vars)
        return ("vars", problem) if problem else _check_settings(self)


@dataclass
class InventoryDefaults:
    user: Optional[str] = doc("login user", None)
    port: Optional[int] = doc("ssh port", None)
    identity: Optional[str] = doc("private key file (relative to the inventory)", None)
    become: Optional[bool] = doc("run steps through sudo", None)
    become_user: Optional[str] = doc("the user sudo switches to", None)

    def validate(self) -> Optional[tuple[str, str]]:
        return _check_settings(self)


@dataclass
class Inventory:
    groups: dict[str, InventoryGroup] = doc("[groups.NAME] tables", default_factory=dict)
    defaults: Optional[InventoryDefaults] = doc("[defaults] for every host", None)
    vars: dict[str, Any] = doc("[vars]: template variables of every host", default_factory=dict)

    def validate(self) -> Optional[tuple[str, str]]:
        problem = _check_vars(self.vars)
        return ("vars", problem) if problem else None


def parse_host(text: str) -> HostEntry:
    """``host``, ``user@host``, ``user@host:port``, ``[v6addr]:port``."""
    user, _, rest = text.rpartition("@")
    port: Optional[int] = None
    host = rest
    if rest.startswith("["):
        addr, _, tail = rest[1:].partition("]")
        host = addr
        if tail.startswith(":") and tail[1:].isdigit():
            port = int(tail[1:])
    elif rest.count(":") == 1:
        h, _, p = rest.partition(":")
        if p.isdigit():
            host, port = h, int(p)
    return HostEntry(host=host, user=user or None, port=port)


def _path(value: Optional[str], base: Optional[Path]) -> Optional[str]:
    if value is None:
        return None
    value = os.path.expanduser(value)
    if base is not None and not os.path.isabs(value):
        value = str(base / value)
    return value


def load_inventory(path: Path, shown: str) -> tuple[Inventory, Callable[[str], str]]:
    """The inventory, and its locator: key path (``groups.web.hosts[1]``) -> ``FILE:LINE``."""
    try:
        text = tomlfile.read(path, shown, "inventory")
    except RecipeError as exc:
        if exc.where == shown:  # cannot read it at all: the recipe's `inventory` key is what to fix
            exc.where, exc.key, exc.hint = None, "inventory", "check the `inventory` path (relative to the recipe)"
        raise
    data = tomlfile.loads(text, shown, "inventory")
    loc = Locator(shown, text)
    inventory = P.build(Inventory, data, path="inventory", locate=lambda p: loc(p.removeprefix("inventory.")),
                        what="key")
    return inventory, loc


def expand(params: SSHParams, base_dir: Optional[Path] = None) -> list[SSHHost]:
    """One :class:`SSHHost` per host the target names; RecipeError for duplicates or bad files."""
    # (inherited settings, base dir, the host as written, its key path, its FILE:LINE or None
    # for the recipe's own `hosts`: the core locates those from the key, see ShlaxError.key;
    # the group's vars, the group's name or "")
    layers: list[tuple[dict[str, Any], Optional[Path], Union[str, HostEntry], str, Optional[str],
                       dict[str, Any], str]] = []
    inv_vars: dict[str, Any] = {}
    target_vals = {k: getattr(params, k) for k in PER_HOST}
    target_vals["identity"] = _path(params.identity, base_dir)
    for i, h in enumerate(params.hosts):
        layers.append(({}, base_dir, h, f"hosts[{i}]", None, {}, ""))
    if params.inventory:
        inv_path = Path(_path(params.inventory, base_dir) or "")
        inv, inv_loc = load_inventory(inv_path, params.inventory)
        inv_dir = inv_path.parent
        inv_vars = dict(inv.vars)
        defaults = {k: getattr(inv.defaults, k) for k in PER_HOST} if inv.defaults else {}
        if defaults.get("identity"):
            defaults["identity"] = _path(defaults["identity"], inv_dir)
        for i, name in enumerate(params.groups):
            if name not in inv.groups:
                sugg = P.closest(name, inv.groups)
                raise RecipeError(f"no group {name!r} in the inventory {params.inventory}", key=f"groups[{i}]",
                                  hint=(f"did you mean {sugg[0]!r}? " if sugg else "")
                                  + f"groups: {', '.join(inv.groups) or 'none'}")
        for gname, group in inv.groups.items():
            if params.groups and gname not in params.groups:
                continue
            gvals = {k: getattr(group, k) for k in PER_HOST}
            if gvals.get("identity"):
                gvals["identity"] = _path(gvals["identity"], inv_dir)
            merged = {**{k: v for k, v in defaults.items() if v is not None},
                      **{k: v for k, v in gvals.items() if v is not None}}
            for i, h in enumerate(group.hosts):
                key = f"groups.{gname}.hosts[{i}]"
                layers.append((merged, inv_dir, h, key, inv_loc(key), dict(group.vars), gname))
    out: list[SSHHost] = []
    seen: dict[str, tuple[str, Optional[str]]] = {}
    by_label: dict[str, SSHHost] = {}
    own_vars: dict[str, dict[str, Any]] = {}
    for inherited, base, raw, key, where, group_vars, group in layers:
        entry = parse_host(raw) if isinstance(raw, str) else raw
        if isinstance(raw, str):
            problem = _check_host(entry.host) or _check_user(entry.user)
            if problem:
                raise RecipeError(f"{key}: {problem}", where=where, key=key,
                                  hint='write "host", "user@host" or "user@host:port"')
        label = entry.name or (raw if isinstance(raw, str) else
                               (f"{entry.user}@" if entry.user else "") + entry.host
                               + (f":{entry.port}" if entry.port else ""))
        if label in seen:
            first_key, first_where = seen[label]
            if first_where is not None and where is not None:
                # one host in several selected groups: applied once (first group wins its settings);
                # it is in every group, and a later group's vars win (host vars still win over all)
                first = by_label[label]
                first.groups.append(group)
                first.vars = {**first.vars, **group_vars, **own_vars[label]}
                continue
            also = f"{first_where} ({first_key})" if first_where else first_key
            raise RecipeError(f"{key}: host {label!r} is listed twice (also {also})", where=where, key=key,
                              hint="give one of them a distinct `name`")
        seen[label] = (key, where)
        vals = {k: v for k, v in target_vals.items() if v is not None}
        vals.update(inherited)
        own = {k: getattr(entry, k) for k in PER_HOST if getattr(entry, k) is not None}
        if "identity" in own:
            own["identity"] = _path(own["identity"], base)
        vals.update(own)
        host = SSHHost(
            label=label, host=entry.host, user=vals.get("user"), port=vals.get("port"),
            identity=vals.get("identity"), become=bool(vals.get("become", False)),
            become_user=vals.get("become_user") or "root",
            host_key_checking=params.host_key_checking, known_hosts=_path(params.known_hosts, base_dir),
            ssh_config=_path(params.ssh_config, base_dir), jump=params.jump, options=dict(params.options),
            connect_timeout=params.connect_timeout, persist=params.persist,
            vars={**(inv_vars if group else {}), **group_vars, **entry.vars}, groups=[group] if group else [])
        by_label[label] = host
        own_vars[label] = dict(entry.vars)
        out.append(host)
    if not out:
        raise RecipeError("the ssh target selects no host", hint="list `hosts` or check `groups`")
    return out
