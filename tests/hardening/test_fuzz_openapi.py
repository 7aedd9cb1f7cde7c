"""The live gateway against its own OpenAPI document, fuzzed with schemathesis.

Every operation is driven with schemathesis's coverage cases (boundary values,
missing or mistyped parameters, unexpected methods) and then with random
requests, valid (positive) and invalid (negative) by the document; the PBX
endpoint gets the demo channel's real key for all coverage cases and half the
random ones, so that requests reach core. Every reply must be documented
(status, content type, headers, body schema) and none may be a 5xx. A fixed
budget and derandomized generation keep the run short and the same on every
machine. The card stream is included: generated tokens are never valid, and
VATS_WATCH_TIMEOUT bounds any stream that did open.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
import schemathesis.checks
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from tests.conftest import LiveStack
from tests.hardening.support import Core, started

pytestmark = pytest.mark.e2e

CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
CHECKS = [getattr(schemathesis.checks, name) for name in CHECK_NAMES]
DEMO_KEY = LiveStack.channel_key

PBX = ("POST", "/api/v2/telephony/calls/{channel_key}")
RECORDS = ("GET", "/api/v2/telephony/records/{recording_id}")

# Examples per (operation, generation mode). Sized so the whole module stays
# well under a minute on a CI machine.
BUDGET = {PBX: 300, RECORDS: 60}
DEFAULT_BUDGET = 20
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


@dataclass
class Tally:
    requests: int = 0
    server_errors: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: dict[str, str] = field(default_factory=dict)

    def report(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return (
            f"fuzzed requests: {self.requests}; 5xx: {self.server_errors}; "
            f"by status: {statuses}; distinct failures: {len(self.failures)}"
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    env = {"VATS_RATE_LIMIT": "0", "VATS_WATCH_TIMEOUT": "2"}
    with started(tmp_path_factory.mktemp("fuzz"), env) as live:
        yield live


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


class Runner:
    """Sends cases to the live gateway and checks each reply against the document."""

    def __init__(self, stack: LiveStack, tally: Tally) -> None:
        self.stack = stack
        self.tally = tally
        self.session = requests.Session()

    def send(self, operation: Any, case: Any) -> None:
        tally = self.tally
        try:
            response = case.call(base_url=self.stack.http_url, session=self.session, timeout=15)
        except requests.RequestException as error:
            key = f"{operation.label}: transport error {type(error).__name__}"
            tally.failures.setdefault(key, str(error)[:500])
            return
        tally.requests += 1
        tally.statuses[response.status_code] += 1
        if response.status_code >= 500:
            tally.server_errors += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except AssertionError as failure:
            # A FailureGroup (or one Failure): keep the first example of each kind.
            failures = getattr(failure, "exceptions", (failure,))
            for one in failures:
                title = getattr(one, "title", type(one).__name__)
                key = f"{operation.label}: {title} ({response.status_code})"
                if key not in tally.failures:
                    tally.failures[key] = (
                        f"{one}\n  request: {case.as_curl_command()}\n"
                        f"  reply: {response.status_code} {response.text[:300]}"
                    )

    def coverage(self, schema: Any, operation: Any) -> None:
        """Schemathesis's coverage phase: boundary values, missing and wrong-typed
        parameters, unexpected methods; deterministic, a few hundred cases at most."""
        config = schema.config.generation_for(operation=operation, phase="coverage")
        cases = schema.iter_coverage_cases(
            operation, generation_modes=list(MODES), generation_config=config
        )
        for case in cases:
            if "channel_key" in (case.path_parameters or {}):
                case.path_parameters["channel_key"] = DEMO_KEY
            self.send(operation, case)

    def fuzz(self, operation: Any, strategy: Any, budget: int) -> None:
        """Random cases from hypothesis: a fixed budget, derandomized, no shrinking."""

        @hypothesis.settings(
            max_examples=budget,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            self.send(operation, case)

        # Unsatisfiable: nothing of this operation can be made invalid (no parameters, no body).
        with contextlib.suppress(hypothesis.errors.Unsatisfiable):
            run()

    def close(self) -> None:
        self.session.close()


def test_gateway_conforms_to_its_openapi_document(stack: LiveStack) -> None:
    started_at = time.monotonic()
    core = Core(stack)
    calls_before = core.count_calls()
    schema = schemathesis.openapi.from_url(f"{stack.http_url}/openapi.json", timeout=10)
    tally = Tally()
    runner = Runner(stack, tally)
    for operation in _operations(schema):
        key = (operation.method.upper(), operation.path)
        before = tally.requests
        runner.coverage(schema, operation)
        print(f"{operation.label} coverage: {tally.requests - before} requests")
        budget = BUDGET.get(key, DEFAULT_BUDGET)
        for mode in MODES:
            strategy = operation.as_strategy(generation_mode=mode)
            if key == PBX:
                # Half the cases with the real key, so requests get past the channel look-up.
                strategy = st.one_of(
                    strategy,
                    operation.as_strategy(
                        generation_mode=mode, path_parameters={"channel_key": DEMO_KEY}
                    ),
                )
            before = tally.requests
            runner.fuzz(operation, strategy, budget)
            print(f"{operation.label} {mode.value}: {tally.requests - before} requests")
    runner.close()
    calls_after = core.count_calls()
    core.close()
    elapsed = time.monotonic() - started_at
    print(f"\n{tally.report()}; calls created: {calls_after - calls_before}; {elapsed:.1f} s")
    for failure, detail in tally.failures.items():
        print(f"- {failure}\n  {detail}")
    assert tally.requests > 0
    assert tally.server_errors == 0, tally.report()
    assert not tally.failures, "\n".join(tally.failures)
    # The real key was used: some generated requests made calls.
    assert calls_after > calls_before
