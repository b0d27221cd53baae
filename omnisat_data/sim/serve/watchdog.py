"""Tear down a server group when the process that started it dies, however it dies (SIGKILL included).

    python -m omnisat_data.sim.serve.watchdog PG_CTL DATA_DIR WORKDIR REMOVE_WORKDIR AS_POSTGRES

The parent keeps the write end of a pipe that is this process's standard input and writes one line
"pgid <n>" per process group to end (the API). When the pipe closes (the parent stopped or died), the
watchdog ends those groups, stops PostgreSQL and removes the work folder if it was the parent's own.
Every step is idempotent: after a clean stop it finds nothing left to do.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time


def end_group(pgid: int) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def main(argv: list[str]) -> None:
    pg_ctl, data, workdir, remove, as_postgres = argv[0], argv[1], argv[2], argv[3] == "1", argv[4] == "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C for the parent's group: the parent stops first
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    groups = []
    for line in sys.stdin:  # returns at EOF: the parent closed the pipe or died
        if line.startswith("pgid "):
            groups.append(int(line.split()[1]))
    for pgid in groups:
        end_group(pgid)
    if os.path.isdir(data):
        cmd = [pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"]
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd] if as_postgres else cmd, capture_output=True,
                       timeout=60)
    if remove:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
