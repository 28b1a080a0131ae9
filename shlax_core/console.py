"""The ``shlax`` console script: a plain ``shlax run`` whose recipe changed nothing is answered by
the no-op fast path (:mod:`shlax_core.fastpath`), anything else by the full CLI
(:mod:`shlax_core.cli`), imported only then.

It sits above both, so neither imports the other: the fast path is a library the runner
records into and this script reads from.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from shlax_core.fastpath import NEUTRAL_OPTIONS, check, enabled, replay


def _terminated(signum: int, _frame: Any) -> None:
    """Until the runner installs its own handler, SIGTERM unwinds like Ctrl-C (exit 130)."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    """Console entry point: try the fast path for a plain ``shlax run``, else the full CLI."""
    try:
        signal.signal(signal.SIGTERM, _terminated)
        _main()
    except KeyboardInterrupt:  # before the CLI took over (while importing): nothing to clean up
        sys.stderr.write("shlax: interrupted\n")
        sys.exit(130)


def _main() -> None:
    started = time.monotonic()
    args = sys.argv[1:]
    if args[:1] == ["run"] and enabled():
        rest = [a for a in args[1:] if a not in NEUTRAL_OPTIONS]
        if not any(a.startswith("-") for a in rest):
            recipe = Path(rest[0]) if rest else Path("shlax.toml")
            if recipe.is_dir():
                recipe = recipe / "shlax.toml"
            try:
                record = check(recipe.resolve(), rest[1:])
            except Exception:  # the fast path never fails a run: the full path decides
                record = None
            if record is not None:
                try:
                    replay(record, "--json" in args, started)
                except BrokenPipeError:  # `shlax run | head`: the reader left, nothing is wrong
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                from shlax_core.cache import usage

                usage.touch([k for image in record["images"] for k in image["keys"]])
                sys.exit(0)
    from shlax_core.cli import main as cli_main

    cli_main()
