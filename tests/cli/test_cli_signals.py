"""`vats` stops on SIGINT and SIGTERM however it was started, including with SIGINT
ignored, as a shell hands it to a command started in the background by a script
(`make test &`, a CI wrapper)."""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cli.cli_support import Pbx, Vats, channel_service_stand_in

# Long enough to tell a command that stopped from one that hangs on.
STOP_WITHIN = 20.0


@pytest.fixture
def silent_core() -> Iterator[tuple[str, threading.Event]]:
    """A server that takes ListChannels and never answers it: the address, and an
    event set once a request is waiting there."""
    asked = threading.Event()
    released = threading.Event()

    def list_channels(request: Any, context: Any) -> bytes:
        asked.set()
        released.wait(60)
        return b""

    with channel_service_stand_in(list_channels) as address:
        try:
            yield address, asked
        finally:
            released.set()


def _watching(vats: Vats, pbx: Pbx, sigint_ignored: bool) -> Any:
    """A `vats cards watch` that has printed its first card, so it is following."""
    call = pbx.create_call("+7916" + str(uuid.uuid4().int)[:7], user_ids=[2])
    watch = vats.watch("--employee", "2", sigint_ignored=sigint_ignored)
    try:
        watch.wait_for(lambda line: f"call {call.call_id} " in line)
    except BaseException:
        watch.stop(signal.SIGKILL)
        raise
    return watch


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["sigint", "sigint-ignored"])
def test_cards_watch_stops_cleanly_on_sigint(vats: Vats, pbx: Pbx, sigint_ignored: bool) -> None:
    watch = _watching(vats, pbx, sigint_ignored)

    code, stderr = watch.stop(signal.SIGINT, timeout=STOP_WITHIN)

    assert code == 0, stderr
    assert stderr == ""


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["sigint", "sigint-ignored"])
def test_cards_watch_stops_cleanly_on_sigterm(vats: Vats, pbx: Pbx, sigint_ignored: bool) -> None:
    watch = _watching(vats, pbx, sigint_ignored)

    code, stderr = watch.stop(signal.SIGTERM, timeout=STOP_WITHIN)

    # Not killed by the signal (-15): it stopped the watch and exited on its own.
    assert code == 0, stderr
    assert stderr == ""


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["sigint", "sigterm"]
)
def test_a_waiting_request_stops_on_a_signal_with_sigint_ignored(
    silent_core: tuple[str, threading.Event], signum: int, code: int
) -> None:
    target, asked = silent_core
    # The deadline is far off: only the signal can end the command in time.
    running = Vats(target).start("channels", "list", "--timeout", "600", sigint_ignored=True)
    try:
        assert asked.wait(STOP_WITHIN), "the request never reached the server"
    except BaseException:
        running.stop(signal.SIGKILL)
        raise

    exit_code, stderr = running.stop(signum, timeout=STOP_WITHIN)

    assert exit_code == code
    assert stderr == ""
