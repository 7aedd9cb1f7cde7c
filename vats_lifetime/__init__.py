"""Ties the lifetime of core and gateway to the `make run` launcher that started them,
and keeps what they built to start out of the garbage collector's way.

Imported by both processes (as `vats_logs`); the launcher's own side, which starts and
stops them, is `vats_lifetime.launcher`.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys

# Set by the launcher in each child's environment: its own pid. Not a setting, so not in
# the README's table; removed from the environment once read.
LAUNCHER_PID = "_VATS_LAUNCHER_PID"

# <linux/prctl.h>
_PR_SET_PDEATHSIG = 1


def end_with_launcher() -> None:
    """When started by the launcher, get SIGTERM as soon as it ends, however it ends.

    Called first thing by `python -m core` and `python -m gateway`; does nothing when
    they were started any other way.
    """
    expected = os.environ.pop(LAUNCHER_PID, "")
    if not expected:
        return
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        # prctl is variadic: each argument must be a full unsigned long.
        args = (ctypes.c_ulong(_PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGTERM))
        zeros = (ctypes.c_ulong(0),) * 3
        if libc.prctl(*args, *zeros) != 0:
            # The launcher's own signal handling still stops this process, unless the
            # launcher is killed outright.
            error = os.strerror(ctypes.get_errno())
            sys.stderr.write(f"warning: cannot tie this process to the launcher: {error}\n")
    # The signal is only armed from here on: a launcher that died since it started this
    # process has left it re-parented (to init or a subreaper), with nobody to stop it.
    if os.getppid() != int(expected):
        raise SystemExit(f"the launcher (pid {expected}) has already ended; not starting")


def freeze_startup_heap() -> None:
    """Called once the process serves: what it built to start (modules, protobuf
    descriptors, its wiring) lives as long as the process, and the cyclic garbage
    collector stops walking it. Otherwise every full collection walks all of it, a pause
    of 10-25 ms measured in the middle of card deliveries (1-4 ms once frozen)."""
    gc.collect()
    gc.freeze()
