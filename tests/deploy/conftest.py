"""Shared by the deployment tests: one that needs what this machine lacks skips, but not in CI."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skips the test; fails it when CI is set, where a missing tool is a broken machine."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so deployment tests may not be skipped)")
    pytest.skip(reason)
