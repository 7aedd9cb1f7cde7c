"""Fixtures of the CLI tests: one live core per test module and the `vats` command."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli.cli_support import PUBLIC_URL, Pbx, Vats
from tests.conftest import LiveStack


@pytest.fixture(scope="module")
def live_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """`python -m core` alone, as `make run` starts it, with the demo seed."""
    core = LiveStack(tmp_path_factory.mktemp("core"), {"VATS_PUBLIC_URL": PUBLIC_URL})
    try:
        core.start_core()
        yield core
    finally:
        core.stop()


@pytest.fixture(scope="module")
def vats(live_core: LiveStack) -> Vats:
    return Vats(live_core.grpc_target)


@pytest.fixture(scope="module")
def pbx(live_core: LiveStack) -> Iterator[Pbx]:
    client = Pbx(live_core.grpc_target)
    try:
        yield client
    finally:
        client.close()
