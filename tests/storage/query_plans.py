"""SQLite query plans for the index tests: each statement's plan on a database as written
(`vats.db`) and on a copy with the statistics `PRAGMA optimize` may gather over time
(`analyzed.db`)."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any


def add_analyzed_copy(data: Path) -> None:
    """`analyzed.db` beside `vats.db`: the same database, ANALYZEd."""
    shutil.copy(data / "vats.db", data / "analyzed.db")
    with sqlite3.connect(data / "analyzed.db") as connection:
        connection.execute("ANALYZE")
    connection.close()


def plan(data: Path, statement: str, params: Any, analyzed: bool) -> list[str]:
    """The lines of the statement's query plan on one of the two databases."""
    connection = sqlite3.connect(data / ("analyzed.db" if analyzed else "vats.db"))
    try:
        stats = "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"
        assert connection.execute(stats).fetchone()[0] == int(analyzed)
        rows = connection.execute(f"EXPLAIN QUERY PLAN {statement}", params).fetchall()
        return [row[3] for row in rows]
    finally:
        connection.close()


def assert_indexed(
    lines: list[str], index: str, tables: str, *, sorted_in_memory: bool = False
) -> None:
    """The plan uses `index` and reads none of `tables` (names and aliases, `a|b`) whole.

    An ordered walk of an index is fine (the LIMIT stops it); reading a whole table is not.
    """
    assert any(index in line for line in lines), lines
    for line in lines:
        assert not re.fullmatch(rf"SCAN ({tables})", line), lines
        if not sorted_in_memory:
            assert "TEMP B-TREE" not in line, lines
