"""Helpers of the operations tests: reading Prometheus text, a small WAV, a storage fault."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from core.server import Core
from core.storage.sqlite import DATABASE_FILE
from tests.recordings.recording_samples import pcm_wav

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def scrape(url: str) -> Samples:
    reply = httpx.get(url, timeout=5)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return parse_metrics(reply.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when it was never recorded."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def wav_bytes(seconds: float = 0.5, rate: int = 8000) -> bytes:
    return pcm_wav(seconds, rate)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a log file, each of which must be one JSON object."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@contextlib.contextmanager
def database_file_gone(core: Core) -> Iterator[None]:
    """The database file is moved away under the running core (a removed data
    directory, a lost mount), then put back."""
    path = Path(core.config.data_dir) / DATABASE_FILE
    away = path.with_name(DATABASE_FILE + ".away")
    path.rename(away)
    try:
        yield
    finally:
        away.rename(path)
