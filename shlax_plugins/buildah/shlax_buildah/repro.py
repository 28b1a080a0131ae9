"""How the buildah backend commits reproducibly (docs/reproducible.md).

``buildah commit --timestamp T`` dates the image's configuration and its history entry with T
and rewrites the modification, access and change times of every file in the new layer to T;
file order within a layer is the store's own sorted walk. ``--identity-label=false`` leaves out
``io.buildah.version``, which would make two machines with different buildah releases disagree.
Step layers are committed with :data:`shlax_core.buildinfo.LAYER_EPOCH` (0), so a layer never
depends on the date; the final configuration commit with the pinned epoch.
"""

from __future__ import annotations


def commit_args(epoch: int) -> list[str]:
    """The ``buildah commit`` flags that make a commit depend on its content only."""
    return [f"--timestamp={int(epoch)}", "--identity-label=false"]


def step_env() -> dict[str, str]:
    """What every image step sees: ``SOURCE_DATE_EPOCH`` set to the layers' date, so tools that
    honour it write what the commit keeps anyway (Python's ``compileall``, as pip runs it, then
    writes hash-checked ``.pyc`` files, which stay valid after the commit re-dates their sources)."""
    from shlax_core.buildinfo import EPOCH_ENV, LAYER_EPOCH

    return {EPOCH_ENV: str(LAYER_EPOCH)}

