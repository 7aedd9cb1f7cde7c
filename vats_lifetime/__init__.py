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


# The cyclic garbage collector's first threshold: a young collection every this many
# allocations not yet freed (CPython's default is 700), the older ones every 10 and 100
# of those. With 1,000 card streams open, the default ran a 5-10 ms collection several
# times a second and a 50-60 ms full one every second or so, in the middle of deliveries;
# with this one none of those fell inside the bench's 1,000-subscriber window.
YOUNG_COLLECTION_THRESHOLD = 7000


def settle_garbage_collector() -> None:
    """Called once the process serves. What it built to start (modules, protobuf
    descriptors, its wiring) lives as long as the process: it is frozen, and no
    collection walks it again (full collections during card deliveries: 10-25 ms, 1-4 ms
    once frozen). Collections then run a tenth as often (YOUNG_COLLECTION_THRESHOLD)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)
