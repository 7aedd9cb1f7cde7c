"""Fixtures of the CLI tests: one live core per test module and the `vats` command."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cli_support import CoreProcess, Pbx, Vats


@pytest.fixture(scope="module")
def live_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    core = CoreProcess(tmp_path_factory.mktemp("core"))
    core.start()
    try:
        yield core
    finally:
        core.stop()


@pytest.fixture(scope="module")
def vats(live_core: CoreProcess) -> Vats:
    return Vats(live_core.target)


@pytest.fixture(scope="module")
def pbx(live_core: CoreProcess) -> Iterator[Pbx]:
    client = Pbx(live_core.target)
    try:
        yield client
    finally:
        client.close()
