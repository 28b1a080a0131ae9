"""The remote helper and its channel, run locally (as root, become through sudo to ``nobody``):
framing under load, become children, facts, a helper that dies."""

from __future__ import annotations

import subprocess
import threading

import pytest

from shlax_core.channel import Channel, ChannelLost, bootstrap_argv


@pytest.fixture
def channel():
    # the system's python3: become children run it as `nobody`, who cannot read a python under /root
    argv = ["/usr/bin/python3", *bootstrap_argv()[1:]]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    ch = Channel(proc, "local")
    ch.open()
    try:
        yield ch
    finally:
        ch.close()
        if proc.poll() is None:
            proc.kill()


def within(seconds: float, work, on_timeout) -> None:
    """Run ``work``; a hang is a failure (``on_timeout`` unblocks it), not a stuck test run."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        on_timeout()
        pytest.fail(f"no answer within {seconds} s: a frame was left waiting")
    if errors:
        raise errors[0]


def test_become_child_relays_every_frame(channel):
    """Output frames and the exit frame come back to back: none may wait unseen in a buffer."""
    script = "head -c 200000 /dev/zero | tr '\\0' x; echo; echo done"

    def work() -> None:
        for _ in range(10):
            res = channel.run(["sh", "-c", script], become="nobody", capture=True)
            assert res.returncode == 0 and res.output.endswith("done")
            assert len(res.output) == 200000 + 5
        who = channel.run(["id", "-un"], become="nobody", capture=True)
        assert who.output == "nobody"

    within(60, work, channel.proc.kill)


def test_facts_stat_and_exit_codes(channel, tmp_path):
    assert channel.facts["architecture"] and channel.facts["hostname"]
    (tmp_path / "f").write_text("x")
    stats = channel.stat([str(tmp_path / "f"), str(tmp_path), str(tmp_path / "missing")])
    assert stats[0].exists and stats[0].digest == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    assert stats[1].is_dir and not stats[2].exists
    assert channel.run(["sh", "-c", "exit 3"]).returncode == 3
    missing = channel.run(["no-such-command-shlax"], capture=True)
    assert missing.returncode == 127 and "No such file" in missing.output
    nodir = channel.run(["true"], cwd=str(tmp_path / "nope"), capture=True)
    assert nodir.returncode == 2 and "No such file or directory" in nodir.output
    assert channel.run(["cat"], stdin=b"abc", capture=True).output == "abc"


def test_a_dead_helper_is_a_lost_channel(channel):
    channel.proc.kill()
    channel.proc.wait()
    with pytest.raises(ChannelLost):
        channel.run(["true"])
