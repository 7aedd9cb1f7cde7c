"""The bench seed: the demo seed plus employees with telephony, their tokens, and one group
per subscriber level holding exactly that many of them (the audience of the posted calls)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.cards_load import FIRST_EMPLOYEE, GROUP_BASE, token_of
from bench.procs import DEMO_SEED


def write_seed(path: Path, levels: Iterable[int]) -> Path:
    levels = sorted(set(levels))
    count = max(levels)
    seed: dict[str, Any] = json.loads(DEMO_SEED.read_text(encoding="utf-8"))
    ids = list(range(FIRST_EMPLOYEE, FIRST_EMPLOYEE + count))
    seed["employees"] += [{"id": e, "name": f"Bench {e}", "telephony": True} for e in ids]
    seed["groups"] += [
        {"id": GROUP_BASE + n, "name": f"Bench {n}", "members": ids[:n]} for n in levels
    ]
    seed["tokens"] += [{"token": token_of(e), "role": "employee", "employee_id": e} for e in ids]
    path.write_text(json.dumps(seed), encoding="utf-8")
    return path
