"""One core per data directory: a second one on the same SQLite file is refused
at start with a clear message, and nothing of the first is disturbed."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.server import Core, DataDirInUse
from tests.conftest import ROOT, free_port, running_core


async def test_a_second_core_on_the_same_data_directory_is_refused(tmp_path: Path) -> None:
    async with running_core(tmp_path) as first:
        with pytest.raises(DataDirInUse, match="another core already runs"):
            Core(dataclasses.replace(first.config, grpc_addr="127.0.0.1:0"))
        first.store.ping()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("VATS_")},
            "VATS_DATA_DIR": first.config.data_dir,
            "VATS_GRPC_ADDR": f"127.0.0.1:{free_port()}",
            "VATS_METRICS_ADDR": "off",
        }
        second = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "core"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=30,
        )
        assert second.returncode == 1
        assert b"another core already runs on the data directory" in second.stderr
        assert b"Traceback" not in second.stderr


async def test_the_data_directory_is_free_again_once_core_stops(tmp_path: Path) -> None:
    async with running_core(tmp_path):
        pass
    async with running_core(tmp_path) as again:
        again.store.ping()
