"""At start, recording files and their records are reconciled: a file no record
names and an unattached upload's record whose file is gone are removed; a call's
recording whose file is gone is kept and reported. Everything is counted in the log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.model import Recording, utc_now
from core.recordings import FileBlobStore
from core.storage.sqlite import SqliteStore
from tests.conftest import running_core
from tests.recordings.recording_samples import make_wav


def store_file(data_dir: Path, recording_id: str) -> None:
    with FileBlobStore(data_dir).open_writer(recording_id, "audio/wav") as writer:
        writer.write(make_wav(0.5))
        writer.commit("audio/wav")


def store_record(data_dir: Path, recording_id: str, call_id: int | None = None) -> None:
    store = SqliteStore(data_dir / "vats.db", FileBlobStore(data_dir))
    store.prepare()
    try:
        with store.unit_of_work() as uow:
            uow.recordings.add(
                Recording(
                    recording_id, 1, "wav", "audio/wav", 100, "0" * 64, utc_now(), call_id=call_id
                )
            )
            uow.commit()
    finally:
        store.close()


async def test_files_and_records_that_disagree_are_reconciled_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    store_file(data_dir, "kept")
    store_record(data_dir, "kept")
    store_file(data_dir, "orphanfile")
    store_record(data_dir, "missingfile")
    store_record(data_dir, "callsfilegone", call_id=7)
    with caplog.at_level(logging.WARNING, logger="vats.recordings"):
        async with running_core(tmp_path) as core:
            with core.store.reading() as uow:
                assert sorted(uow.recordings.ids()) == ["callsfilegone", "kept"]
            assert sorted(core.store.blobs.list_ids()) == ["kept"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "1 files without a record removed" in m
        and "1 records of unattached uploads without a file removed" in m
        for m in messages
    ), messages
    assert any("1 recordings of calls have no file" in m for m in messages), messages


async def test_a_consistent_store_is_left_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    store_file(data_dir, "kept")
    store_record(data_dir, "kept")
    async with running_core(tmp_path) as core:
        assert core.library.reconcile() == (0, 0, 0)
        with core.store.reading() as uow:
            assert list(uow.recordings.ids()) == ["kept"]
