"""Reading a local image store's index directly: the names and IDs ``buildah images`` would list,
and the storage layers each image is made of.

``buildah images --json`` takes 0.2-0.5 s on a store of a few hundred images, on every run;
containers/storage keeps the same facts in ``<graphroot>/<driver>-images/images.json`` (and the
layers in ``<driver>-layers/layers.json``), written atomically, which read in ~10 ms.

This is used only where the layout is one we know: as root, with the storage.conf buildah itself
reads (``$CONTAINERS_STORAGE_CONF``, else ``/etc/containers/storage.conf``, else
``/usr/share/containers/storage.conf``) parsed as the TOML it is and naming a driver (with no
file at all, buildah's default: overlay in /var/lib/containers/storage), and no additional or
separate image stores. Anything else returns None and the caller asks buildah.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any, Optional

from shlax_core.tomlfile import tomllib

CONF_FILES = ("/etc/containers/storage.conf", "/usr/share/containers/storage.conf")
DEFAULT_GRAPHROOT = "/var/lib/containers/storage"
#: keys of storage.conf that move images somewhere we do not look
_ELSEWHERE = ("imagestore", "additionalimagestores", "additionallayerstores", "transient_store")


def _conf() -> Optional[dict[str, Any]]:
    """The ``[storage]`` table buildah uses, or None when we cannot tell. With no file at all,
    buildah's built-in default: overlay in /var/lib/containers/storage."""
    named = os.environ.get("CONTAINERS_STORAGE_CONF")
    for path in ((named,) if named else CONF_FILES):
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            if named:
                return None  # buildah would fail: let it say so
            continue
        except OSError:
            return None
        try:
            storage = tomllib.loads(text).get("storage", {})
        except (tomllib.TOMLDecodeError, ValueError):
            return None
        return storage if isinstance(storage, dict) else None
    return {"driver": "overlay"}


def _location(root: Optional[str]) -> Optional[Path]:
    """``<graphroot>`` and the driver's name folded in: the prefix of the index files, or None."""
    if os.geteuid() != 0:
        return None
    conf = _conf()
    if conf is None:
        return None
    options = conf.get("options") if isinstance(conf.get("options"), dict) else {}
    if any(conf.get(k) or options.get(k) for k in _ELSEWHERE):
        return None
    driver = conf.get("driver")
    graphroot = root or conf.get("graphroot") or DEFAULT_GRAPHROOT
    if not isinstance(driver, str) or not driver or not isinstance(graphroot, str):
        return None  # no driver named: buildah picks one itself
    return Path(graphroot) / driver


def _read(path: Path) -> Optional[list[Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, list) and all(isinstance(i, dict) for i in data) else None


def read_index(root: Optional[str] = None) -> Optional[list[dict[str, Any]]]:
    """[{"id", "names", "layer"}] of every image in the store (``layer``: its top storage layer),
    or None when it cannot be read directly."""
    where = _location(root)
    data = _read(Path(f"{where}-images") / "images.json") if where is not None else None
    if data is None:
        return None
    return [{"id": str(i.get("id", "")), "names": [str(n) for n in i.get("names") or []],
             "layer": str(i.get("layer") or "")} for i in data]


def stored_times(root: Optional[str], ids: list[str]) -> dict[str, float]:
    """{image ID: when it was written to this store, Unix seconds} (its record folder's time).
    Not the image's ``created``, which shlax pins (docs/reproducible.md): an image made today says
    1970 there, and so does the store's index."""
    where = _location(root)
    out: dict[str, float] = {}
    if where is None:
        return out
    for image in ids:
        try:
            out[image] = os.stat(f"{where}-images/{image}").st_mtime
        except OSError:
            pass
    return out


def read_layers(root: Optional[str] = None) -> Optional[dict[str, tuple[str, int]]]:
    """{layer id: (parent id or "", bytes of its own content)} of every storage layer, or None."""
    where = _location(root)
    data = _read(Path(f"{where}-layers") / "layers.json") if where is not None else None
    if data is None:
        return None
    out = {}
    for layer in data:
        size = layer.get("diff-size")
        out[str(layer.get("id", ""))] = (str(layer.get("parent") or ""), size if isinstance(size, int) and size > 0 else 0)
    return out


def parts(top: str, layers: dict[str, tuple[str, int]]) -> dict[str, int]:
    """The storage layers an image is made of (its top layer and every parent), with their sizes."""
    out: dict[str, int] = {}
    while top and top in layers and top not in out:
        parent, size = layers[top]
        out[top] = size
        top = parent
    return out


def root_of(argv0: list[str]) -> tuple[bool, Optional[str]]:
    """(usable, root) from a buildah argv prefix: only plain local buildah with an optional --root."""
    root = None
    args = argv0[1:]
    while args:
        if args[0] == "--root" and len(args) > 1:
            root, args = args[1], args[2:]
        elif args[0] == "--runroot" and len(args) > 1:
            args = args[2:]
        else:
            return False, None
    return True, root


def image_config(root: Optional[str], image_id: str) -> Optional[dict[str, Any]]:
    """The run configuration (``Env``, ``Cmd``, ``WorkingDir``, ``User``, ``Labels``...) of a local
    image, read from the store (containers/storage keeps the image's config blob under the key
    ``sha256:<image ID>``), or None when it cannot be read that way (the caller asks buildah)."""
    where = _location(root) if re.fullmatch(r"[0-9a-f]{64}", image_id) else None
    if where is None:
        return None
    key = "=" + base64.b64encode(f"sha256:{image_id}".encode()).decode()
    try:
        data = json.loads((Path(f"{where}-images") / image_id / key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    config = data.get("config") or {}
    return config if isinstance(config, dict) else None
