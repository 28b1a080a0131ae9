"""How the buildah backend tells whether its working container changed too much to go on after a
commit (shlax_buildah.upper): the overlay layout it recognises, and the limits it counts to."""

from __future__ import annotations

from pathlib import Path

from shlax_buildah import upper


def test_only_the_overlay_drivers_layout_is_recognised(tmp_path: Path) -> None:
    layer = tmp_path / "overlay" / "abc"
    (layer / "merged").mkdir(parents=True)
    assert upper.of(str(layer / "merged")) is None          # no diff, no link: not guessed at
    (layer / "diff").mkdir()
    (layer / "link").write_text("XYZ")
    assert upper.of(str(layer / "merged")) == str(layer / "diff")
    assert upper.of(str(layer / "merged") + "/") == str(layer / "diff")
    assert upper.of(str(layer / "diff")) is None             # not a mount point of that driver


def test_big_counts_bytes_and_entries_in_every_folder(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"x" * 1000)
    assert not upper.big(str(tmp_path), max_bytes=1000, max_entries=10)
    assert upper.big(str(tmp_path), max_bytes=999, max_entries=10)       # the file deep down counts
    for i in range(8):
        (tmp_path / f"e{i}").touch()
    assert not upper.big(str(tmp_path), max_bytes=10_000, max_entries=11)  # 3 + 8 entries
    assert upper.big(str(tmp_path), max_bytes=10_000, max_entries=10)
    assert upper.big(str(tmp_path / "missing"))                            # unreadable: made again
