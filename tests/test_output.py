"""Plain output (pipes, CI logs): one line per event, written as it happens."""

from __future__ import annotations

import io
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading

from shlax_core.output import PlainReporter


def test_piped_image_build_streams_its_steps(tmp_path, busybox_image, nonce):
    """With the default -j (above 1), an image target's lines are not held back until it ends:
    a CI log shows the running step while it runs, and an interrupted build shows its steps."""
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(textwrap.dedent(f"""
        [targets.o{nonce}]
        base = "{busybox_image}"
        steps = [
          {{ run = ["sh", "-c", "echo {nonce} > /first"] }},
          {{ run = ["sh", "-c", "echo waiting-{nonce}; sleep 600"] }},
        ]
    """))
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("CI", None)
    proc = subprocess.Popen([sys.executable, "-m", "shlax_core", "run", str(recipe)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen = []
    try:
        while True:
            line = lines.get(timeout=300)  # a hang, not a measurement: the step sleeps 600 s
            seen.append(line)
            if f"| waiting-{nonce}" in line:
                break
        alive = proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert alive, "the step's output came only after the build ended"
    assert proc.returncode == 130, err
    text = "".join(seen)
    assert f"o{nonce} [1/2] DONE" in text and f"o{nonce} [2/2] RUN" in text, text
    assert text.index("[1/2] DONE") < text.index("[2/2] RUN") < text.index(f"| waiting-{nonce}")


def events(reporter: PlainReporter, *items: tuple[str, dict]) -> None:
    for event, data in items:
        reporter.emit(event, **data)


def test_fleet_lines_are_grouped_and_image_lines_are_not():
    out = io.StringIO()
    r = PlainReporter(out, buffer_hosts=True)
    a, b = {"target": "web", "host": "a"}, {"target": "web", "host": "b"}
    img = {"target": "img", "host": "img"}
    step = {"total": 1, "step": "run true", "index": 1}
    events(r, ("run_start", {"recipe": "r.toml"}),
           ("target_start", {**img, "backend": "buildah", "steps": 1}),
           ("step_start", {**img, **step}))
    assert out.getvalue().splitlines()[-1] == "img [1/1] RUN     run true"   # written at once
    events(r, ("target_start", {**a, "backend": "ssh", "steps": 1, "fleet": True}),
           ("target_start", {**b, "backend": "ssh", "steps": 1, "fleet": True}),
           ("step_start", {**a, **step}), ("step_start", {**b, **step}),
           ("step_end", {**b, **step, "status": "ok"}),
           ("target_end", {**b, "summary": "ok=1", "elapsed": 0.1}))
    assert "web@a" not in out.getvalue()                                      # a is still running
    assert out.getvalue().splitlines()[-4:] == ["web@b: ssh target, 1 steps", "web@b [1/1] RUN     run true",
                                                "web@b [1/1] OK      run true", "web@b: ok=1 in 0.1s"]
    # an interrupt: a never ends, its lines still come out, before the last line
    events(r, ("run_end", {"status": "interrupted", "elapsed": 1.0}))
    tail = out.getvalue().splitlines()[-3:]
    assert tail == ["web@a: ssh target, 1 steps", "web@a [1/1] RUN     run true", "interrupted in 1.0s"]
