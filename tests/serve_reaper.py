"""Run a command as a child subreaper (Linux): whatever it leaves behind is adopted here, not by init.

Usage: ``python serve_reaper.py LOG COMMAND...``. Prints the command's pid, runs it with its output in
LOG, and once it has ended waits (up to a generous bound) for the processes it left to end too, then
prints ``{"rc": ..., "left": [their command lines]}`` as its last line. Used by test_serve_lifecycle.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
GIVE_UP = 120.0


def _adopted() -> dict[int, str]:
    """Live children of this process (orphans reparent here), reaping the ones that have ended."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found[int(entry)] = cmdline
    return found


def main() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)
    log, command = sys.argv[1], sys.argv[2:]
    with open(log, "wb") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        print(child.pid, flush=True)
        rc = child.wait()
    deadline = time.monotonic() + GIVE_UP
    left = _adopted()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _adopted()
    print(json.dumps({"rc": rc, "left": sorted(left.values())}), flush=True)


if __name__ == "__main__":
    main()
