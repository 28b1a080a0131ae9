"""Remove the images tests and benchmarks leave in the default buildah store.

Tests and benchmarks build hundreds of images: layers keyed by random nonces, final images,
registry pulls. Left in the store, every later ``buildah`` call reads a bigger index, and CI, which
runs on the same machine again and again, gets slower run after run (1,500 leftover images made
``buildah bud`` of a 3-step file take 2.6 s instead of 0.9 s, and skewed every benchmark).

Two sweeps, both safe when two test sessions share a machine:

- :func:`sweep_session` at the end of a session removes what *this* session made: images named
  with one of its nonces, and the layers its shlax runs recorded in its own cache folder's usage
  file (``layers.json``), if made after the session started;
- :func:`sweep_old` at the start removes what older runs left (crashed sessions, bud's unnamed
  intermediate images, tests with a cache folder of their own): images made more than
  ``hours`` ago (2 in conftest: far longer than a session) whose names all look like a test's (layer-cache tags, a nonce of 12 or more hex
  digits, a test registry on loopback) or that have no name.

Bases worth keeping between runs (``localhost/shlax-base:*``, the busybox and Debian test images
(and the Debian ones with dnf or pacman),
the demo's image) are never removed, nor an image with any name that does not look like a test's:
a developer's own images survive. Images still used by a container are left alone (no --force).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable

KEEP = re.compile(r"^localhost/(shlax-base|shlax-test-busybox|shlax-test-debian(-dnf|-pacman)?|shlax-example):")
TEST_NAME = re.compile(r"^(localhost/shlax-cache:|127\.0\.0\.1:\d+/|localhost:\d+/)|[0-9a-f]{12}")


def listing() -> list[dict[str, Any]]:
    """Every image: ``id``, ``names``, ``created`` (when it came into the store, Unix time); empty
    when buildah cannot say."""
    proc = subprocess.run(["buildah", "images", "--all", "--json", "--no-trunc"], capture_output=True, text=True)
    if proc.returncode != 0:
        return []
    try:
        images = json.loads(proc.stdout or "[]") or []
    except ValueError:
        return []
    rows = [{"id": str(i.get("id", "")).removeprefix("sha256:"), "names": list(i.get("names") or []),
             "created": float(i.get("created") or 0)} for i in images]
    # shlax pins an image's `created` (docs/reproducible.md: 1970 unless SOURCE_DATE_EPOCH or a git
    # commit says otherwise): when it came into the store is what tells an old image from a new one
    from shlax_buildah import store

    stored = store.stored_times(None, [r["id"] for r in rows])
    for r in rows:
        r["created"] = stored.get(r["id"], r["created"])
    return rows


def kept(names: list[str]) -> bool:
    return any(KEEP.match(n) for n in names)


def remove(ids: Iterable[str]) -> int:
    """``buildah rmi`` in batches, again while a pass removes something (a parent image goes once
    its children are gone); how many went. An image is removed by its names (buildah refuses an
    ID with several names without --force, which would also remove containers), or by its ID when
    it has none. An image still used by a container stays."""
    wanted = set(ids)
    present = {i["id"]: i["names"] for i in listing() if i["id"] in wanted}
    first = set(present)
    one_by_one = False
    while present:
        # buildah stops a batch at its first failure (a parent listed before its child): when a
        # batch pass removes nothing, go image by image
        groups = [names or [image] for image, names in sorted(present.items())]
        if not one_by_one:
            flat = [a for g in groups for a in g]
            groups = [flat[start:start + 100] for start in range(0, len(flat), 100)]
        for args in groups:
            subprocess.run(["buildah", "rmi", *args], capture_output=True)
        now = {i["id"]: i["names"] for i in listing() if i["id"] in wanted}
        if now == present:
            if one_by_one:
                break
            one_by_one = True
        present = now
    return len(first - set(present))


def sweep_old(hours: float) -> int:
    """Remove test-made images older than ``hours`` (see the module's docstring)."""
    limit = time.time() - hours * 3600
    doomed = [i["id"] for i in listing() if i["created"] and i["created"] < limit and not kept(i["names"])
              and all(TEST_NAME.search(n) for n in i["names"])]
    return remove(doomed)


def session_layers(cache_dir: Path) -> set[str]:
    """The layers shlax runs recorded in a cache folder's usage file: their image IDs and their
    cache names (an entry's ID may be another store's, when one key was built in two stores)."""
    try:
        data = json.loads((cache_dir / "layers.json").read_text())
    except (OSError, ValueError):
        return set()
    found = {f"localhost/shlax-cache:{key}" for key in data}
    return found | {str(v["image"]) for v in data.values() if isinstance(v, dict) and v.get("image")}


def sweep_session(since: float, nonces: Iterable[str], layers: set[str]) -> int:
    """Remove images made since ``since`` that carry one of ``nonces`` in a name, or whose ID or
    a name is one of ``layers`` (this session's own), bases excepted."""
    nonces = [n for n in nonces if n]
    doomed = []
    for image in listing():
        if image["created"] and image["created"] < since - 60 or kept(image["names"]):
            continue
        names = image["names"]
        if image["id"] in layers or any(n in layers for n in names) or any(x in n for n in names for x in nonces):
            doomed.append(image["id"])
    return remove(doomed)
