"""The bench seeds. Cards: the demo seed plus employees with telephony, their tokens, and one
group per subscriber level holding exactly that many of them (the audience of the posted
calls). Scale: the demo seed plus the employee of the rare caller's calls."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.cards_load import FIRST_EMPLOYEE, GROUP_BASE, token_of
from bench.procs import DEMO_SEED

# The rare caller of the scale scenario: RARE_CALLS calls among the oldest thousand, the only
# ones with this phone, this final status and bound to this employee (see bench.store_seed).
RARE_PHONE = "+7 495 700-16-16"
RARE_EMPLOYEE = 900
RARE_STATUS = "failed"
RARE_UNTIL = 1_000
RARE_EVERY = 16
RARE_CALLS = len(range(0, RARE_UNTIL, RARE_EVERY))


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


def write_scale_seed(path: Path) -> Path:
    """The demo seed plus the employee the rare calls are bound to. Without telephony
    access they are in no call's audience (and so in no probe call's either)."""
    seed: dict[str, Any] = json.loads(DEMO_SEED.read_text(encoding="utf-8"))
    seed["employees"].append({"id": RARE_EMPLOYEE, "name": "Rare caller's agent"})
    path.write_text(json.dumps(seed), encoding="utf-8")
    return path
