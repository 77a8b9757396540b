"""A throwaway PostgreSQL cluster for the benchmarks, in a process of its own so it can outlive one.

    python bench/pg.py        # prints the cluster's URL, keeps it until SIGTERM or Ctrl-C

It is ``tests/services.py::postgres_cluster()`` (initdb in a temporary folder, as the postgres
user when run as root, on 127.0.0.1 and a free port), held open by a small process: stopping
that process (``kill PID``) stops the cluster and removes its folder. ``start()`` runs it from a
benchmark and returns the process and the URL, so a benchmark can leave the cluster running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent


def start() -> tuple[subprocess.Popen[bytes], str]:
    """Start the cluster's process (in its own session, so Ctrl-C does not reach it)."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve())],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    process.stdout.close()
    if not line.startswith("postgresql"):
        process.wait(30)
        raise SystemExit("PostgreSQL did not start (see the messages above)")
    return process, line


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the cluster and remove its folder."""
    process.terminate()
    process.wait(60)


def _exit(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.services import postgres_cluster

    signal.signal(signal.SIGTERM, _exit)
    try:
        with postgres_cluster() as url:
            print(url, flush=True)
            # Let go of the caller's output (a pipe someone may wait on): it may be gone.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.dup2(devnull, sys.stderr.fileno())
            while True:
                signal.pause()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
