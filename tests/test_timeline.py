"""Where a build's time went: ``phases`` in ``step_end``/``target_end`` events, ``--timings``'
table and ``--trace``'s Chrome trace file (docs/output.md, "Timings and traces")."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from conftest import events, run_shlax


def test_image_steps_carry_their_phases(shlax_recipe) -> None:
    """A step that ran: key hashing, running and committing; a cached one: its key only; the
    target: the lookup of existing layers and the final commit."""
    project = shlax_recipe("""
        [targets.t]
        backend = "fake-image"
        steps = [ { run = ["echo", "one"] }, { run = ["echo", "two"] } ]
    """)
    first = project.run()
    assert first.code == 0
    done = first.steps
    # the last step's layer is the image itself (no image config): its commit is the target's
    assert [list(s["phases"]) for s in done] == [["key", "run", "commit"], ["key", "run"]]
    assert all(v >= 0 for s in done for v in s["phases"].values())
    end = [e for e in first.events if e["event"] == "target_end"][0]
    assert "lookup" in end["phases"] and "commit" in end["phases"]

    again = project.run()
    assert again.statuses == ["cached", "cached"]
    assert [list(s["phases"]) for s in again.steps] == [["key"], ["key"]]


def test_host_steps_carry_check_and_apply(shlax_recipe, tmp_path: Path) -> None:
    marker = tmp_path / "made"
    project = shlax_recipe(f"""
        [targets.h]
        backend = "fake"
        steps = [ {{ run = ["touch", "{marker}"] }} ]
    """)
    result = project.run()
    assert result.code == 0
    assert list(result.steps[0]["phases"]) == ["check", "apply"]


def _seconds(text: str) -> float:
    """``--timings``' durations: 812ms, 3.4s, 1m02s."""
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    if "m" in text:
        minutes, sec = text[:-1].split("m")
        return int(minutes) * 60 + float(sec)
    return float(text[:-1])


def _recipe(tmp_path: Path, base: str, nonce: str) -> Path:
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""\
        [targets.tl{nonce}]
        base = "{base}"
        image = "localhost/shlax-test-timeline-{nonce}"
        steps = [
          {{ run = ["sh", "-c", "echo quick {nonce}"] }},
          {{ run = ["sh", "-c", "sleep 0.6; echo slow {nonce}"] }},
          {{ run = ["sh", "-c", "echo last {nonce}"] }},
        ]
    """))
    return tmp_path


def test_timings_table_and_trace_of_a_real_build(tmp_path: Path, busybox_image: str, nonce: str) -> None:
    project = _recipe(tmp_path, busybox_image, nonce)
    trace = tmp_path / "build.trace.json"
    proc = run_shlax("run", "--timings", "--trace", str(trace), cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    at = lines.index("timings (slowest first):")
    # one line per step that ran, slowest first, with its phases
    rows = [line for line in lines[at + 1:] if f" {nonce}" in line and "/3 " in line]
    assert len(rows) == 3 and all("run " in row for row in rows)
    took = [_seconds(row.split()[0]) for row in rows]
    assert took == sorted(took, reverse=True)
    slow = [row for row in rows if f"slow {nonce}" in row][0]
    assert _seconds(slow.split("  run ")[1].split()[0]) >= 0.6     # the sleep is in its run phase
    assert "commit " in rows[0] or "commit " in rows[1]            # two of them are committed layers
    assert lines[-1].startswith("per phase: ") and "run " in lines[-1] and "lookup " in lines[-1]

    doc = json.loads(trace.read_text())
    evs = doc["traceEvents"]
    names = {e["args"]["name"] for e in evs if e["ph"] == "M" and e["name"] == "thread_name"}
    assert len(names) == 1                                   # one track: this target's build
    steps = [e for e in evs if e["ph"] == "X" and e["cat"] == "step" and e["name"] != "image"]
    assert len(steps) == 3 and all(e["dur"] > 0 for e in steps)
    assert sorted(steps, key=lambda e: e["ts"]) == steps     # in the order they ran
    slow = [e for e in steps if f"slow {nonce}" in e["name"]][0]
    assert slow["dur"] >= 600_000                            # microseconds: the sleep is in it
    # each step's phases lie within the step's own span, on its track
    for step in steps:
        inside = [e for e in evs if e["ph"] == "X" and e["cat"] == "phase" and e["tid"] == step["tid"]
                  and step["ts"] <= e["ts"] and e["ts"] + e["dur"] <= step["ts"] + step["dur"] + 1000]
        assert {"run", "key"} <= {e["name"] for e in inside} or {"run"} <= {e["name"] for e in inside}

    # off by default; JSON events of the full path carry the phases whatever the flags (the
    # no-op fast path, which times nothing, replays cached steps without them)
    plain = run_shlax("run", "--json", cwd=project, env={"SHLAX_NO_FASTPATH": "1"})
    assert plain.returncode == 0
    assert "slowest first" not in plain.stdout + plain.stderr
    ends = [e for e in events(plain.stdout) if e["event"] == "step_end"]
    assert [e["status"] for e in ends] == ["cached"] * 3 and all(list(e["phases"]) == ["key"] for e in ends)


def test_a_failed_build_still_writes_its_trace(tmp_path: Path, busybox_image: str, nonce: str) -> None:
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""\
        [targets.tf{nonce}]
        base = "{busybox_image}"
        image = "localhost/shlax-test-timeline-f{nonce}"
        steps = [ {{ run = ["sh", "-c", "echo {nonce}; exit 3"] }} ]
    """))
    trace = tmp_path / "t.json"
    proc = run_shlax("run", "--trace", str(trace), "--timings", cwd=tmp_path)
    assert proc.returncode == 1
    failed = [e for e in json.loads(trace.read_text())["traceEvents"] if e.get("cat") == "step"]
    assert [e["args"]["status"] for e in failed] == ["failed"]
    assert "timings (slowest first):" in proc.stdout and "(failed)" in proc.stdout


def test_an_unwritable_trace_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "shlax.toml").write_text('[targets.x]\nbackend = "local"\nsteps = [ { run = ["true"] } ]\n')
    proc = run_shlax("run", "--trace", str(tmp_path / "missing-dir" / "t.json"), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--trace" in proc.stderr
