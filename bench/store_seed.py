"""Grows a stopped core's store offline, through the same use cases core runs.

    python -m bench.store_seed --first N --count K [--max-seconds S]   # VATS_* as for core

Core is wired from the environment exactly as `python -m core` wires it (core.server.Core,
its start-up work included), and each call is stored the way the PBX makes it: a
create_call (ringing) and then an update_call to its final status, each its own unit of work
with a durable commit. Only the transport is left out. Prints one JSON object.

Call number n (counted over the whole store, so that a later run continues the pattern):
- the rare caller's calls, n < RARE_UNTIL and n % RARE_EVERY == 0 (63 among the oldest
  1,000), come from RARE_PHONE, end `failed` and are bound to RARE_EMPLOYEE. No other call has
  that phone, status or employee, so the history's filters on them find one full page that lies
  ever deeper in the store as it grows: a filter without its index would show it.
- every other call comes from one of PHONE_POOL numbers, rings group 10 (employees 1 and 2)
  or employee 3, and ends answered (bound to who took it), missed, busy or canceled.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bench.procs import CHANNEL_KEY
from bench.seed import RARE_EMPLOYEE, RARE_EVERY, RARE_PHONE, RARE_STATUS, RARE_UNTIL
from bench.stats import summarize
from core.app.admin import ChannelRef
from core.config import CoreConfig
from core.domain import CreateCall, Direction, Status, UpdateCall
from core.server import Core

PHONE_POOL = 20_000
# Final statuses of the ordinary calls, by n % 20.
ENDINGS = (Status.ANSWERED,) * 12 + (Status.MISSED,) * 5 + (Status.BUSY,) * 2 + (Status.CANCELED,)


def is_rare(n: int) -> bool:
    return n < RARE_UNTIL and n % RARE_EVERY == 0


def commands(n: int) -> tuple[CreateCall, UpdateCall]:
    """The create_call and update_call of call number n."""
    pbx_call_id = f"seed-{n}"
    direction = Direction.OUTGOING if n % 3 == 0 else Direction.INCOMING
    if is_rare(n):
        create = CreateCall(direction, RARE_PHONE, Status.RINGING, pbx_call_id, user_ids=(3,))
        ending = Status(RARE_STATUS)
        return create, UpdateCall(ending, pbx_call_id=pbx_call_id, user_id=RARE_EMPLOYEE)
    # A multiplier prime to the pool spreads neighbouring calls over different callers.
    phone = f"+7916{(n * 7919) % PHONE_POOL:07d}"
    comment = "callback requested" if n % 3 == 1 else None
    if n % 2 == 0:
        create = CreateCall(
            direction, phone, Status.RINGING, pbx_call_id, group_ids=(10,), comment=comment
        )
        taker = 1 + (n // 2) % 2
    else:
        create = CreateCall(
            direction, phone, Status.RINGING, pbx_call_id, user_ids=(3,), comment=comment
        )
        taker = 3
    ending = ENDINGS[n % len(ENDINGS)]
    bound = taker if ending is Status.ANSWERED else None
    return create, UpdateCall(ending, pbx_call_id=pbx_call_id, user_id=bound)


def seed(first: int, count: int, max_seconds: float) -> dict[str, Any]:
    config = CoreConfig.from_env()
    began = time.perf_counter()
    core = Core(config)
    try:
        core.prepare()
        opened = time.perf_counter() - began
        ref = ChannelRef(key=CHANNEL_KEY)
        creates: list[float] = []
        updates: list[float] = []
        deadline = time.perf_counter() + max_seconds
        started = time.perf_counter()
        done = 0
        for n in range(first, first + count):
            if time.perf_counter() > deadline:
                break
            create, update = commands(n)
            t0 = time.perf_counter()
            core.app.calls.create_call(ref, create)
            t1 = time.perf_counter()
            core.app.calls.update_call(ref, update)
            t2 = time.perf_counter()
            creates.append(t1 - t0)
            updates.append(t2 - t1)
            done += 1
        seconds = time.perf_counter() - started
        with core.store.reading() as uow:
            stored = uow.calls.count()
    finally:
        core.runner.shutdown()
        core.blob_runner.shutdown()
        core.store.close()
    return {
        "count": done,
        "stored": stored,
        "seconds": seconds,
        "open_seconds": opened,
        "rate": done / seconds if seconds > 0 else 0.0,
        "units_per_s": 2 * done / seconds if seconds > 0 else 0.0,
        # Over the last thousand calls of this run: the cost per unit at this store size.
        "create": summarize(creates[-1000:], sum(creates[-1000:])),
        "update": summarize(updates[-1000:], sum(updates[-1000:])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.store_seed")
    parser.add_argument("--first", type=int, default=0, help="number of the first call")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args()
    print(json.dumps(seed(args.first, args.count, args.max_seconds)))


if __name__ == "__main__":
    main()
