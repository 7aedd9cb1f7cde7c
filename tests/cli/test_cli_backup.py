"""`vats backup FILE`: an online copy of core's SQLite store, and a restore from it."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc
from tests.cli.cli_support import PROJECT_DIR, PYTHON, Pbx, clean_environ
from tests.conftest import LiveStack, bearer

# Enough writes that the backup runs while some are being committed.
MAX_CALLS = 3000


def vats_backup(
    file: Path, env: dict[str, str], cwd: Path = PROJECT_DIR
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "vats_cli", "backup", str(file)],
        cwd=cwd,
        env={**clean_environ(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stored_calls(stack: LiveStack) -> dict[int, call_pb2.Call]:
    calls = {}
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = call_service_pb2_grpc.CallServiceStub(channel)
        token = ""
        while True:
            reply = stub.ListCalls(
                call_service_pb2.ListCallsRequest(page_size=500, page_token=token),
                metadata=bearer(stack.admin_token),
                timeout=30,
            )
            calls.update({c.call_id: c for c in reply.calls})
            token = reply.next_page_token
            if not token:
                return calls


@pytest.fixture
def source(tmp_path: Path) -> Iterator[LiveStack]:
    stack = LiveStack(tmp_path / "source")
    stack.workdir.mkdir()
    try:
        stack.start_core()
        yield stack
    finally:
        stack.stop()


def test_backup_taken_under_writes_restores_every_call_answered_before_it(
    source: LiveStack, tmp_path: Path
) -> None:
    answered: list[int] = []
    before_backup: list[int] = []
    stop = threading.Event()

    def report_calls() -> None:
        pbx = Pbx(source.grpc_target)
        try:
            for n in range(MAX_CALLS):
                if stop.is_set():
                    return
                answered.append(pbx.create_call(f"+7495{n:07d}", comment=f"call {n}").call_id)
        finally:
            pbx.close()

    writer = threading.Thread(target=report_calls)
    writer.start()
    try:
        while len(answered) < 50 and writer.is_alive():
            stop.wait(0.01)
        before_backup = list(answered)
        backup = tmp_path / "vats-backup.db"
        result = vats_backup(backup, {"VATS_DATA_DIR": str(source.data_dir)})
        writing_still = writer.is_alive()
    finally:
        stop.set()
        writer.join(timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backed up {source.data_dir / 'vats.db'} to {backup} ("), (
        result.stdout
    )
    assert "recordings" in result.stdout
    assert writing_still, "the writes ended before the backup: it did not run beside them"
    assert len(before_backup) >= 50
    # One file, whole without a -wal beside it.
    assert not backup.with_name(backup.name + "-wal").exists()
    with sqlite3.connect(backup) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    restored = LiveStack(tmp_path / "restored")
    restored.data_dir.mkdir(parents=True)
    shutil.copyfile(backup, restored.data_dir / "vats.db")
    try:
        restored.start_core()
        calls = stored_calls(restored)
    finally:
        restored.stop()

    assert set(before_backup) <= set(calls), "calls answered before the backup are missing"
    assert set(calls) <= set(answered)
    for call in calls.values():
        assert call.ticket.ticket_id and call.ticket.contact.contact_id, call
        assert [c.text for c in call.ticket.comments] == [f"call {int(call.phone[5:])}"]


def test_backup_replaces_an_older_backup_whole(source: LiveStack, tmp_path: Path) -> None:
    backup = tmp_path / "vats-backup.db"
    backup.write_bytes(b"yesterday's backup, or anything else")
    pbx = Pbx(source.grpc_target)
    try:
        call = pbx.create_call("+74951234567")
    finally:
        pbx.close()

    result = vats_backup(backup, {"VATS_DATA_DIR": str(source.data_dir)})

    assert result.returncode == 0, result.stderr
    with sqlite3.connect(backup) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    restored = LiveStack(tmp_path / "restored")
    restored.data_dir.mkdir(parents=True)
    shutil.copyfile(backup, restored.data_dir / "vats.db")
    try:
        restored.start_core()
        assert call.call_id in stored_calls(restored)
    finally:
        restored.stop()


def test_backup_without_a_database_says_where_it_looked(tmp_path: Path) -> None:
    # VATS_DATA_DIR unset: ./data, relative to where vats runs.
    result = vats_backup(tmp_path / "backup.db", {}, cwd=tmp_path)

    assert result.returncode == 1
    assert result.stderr == (
        "error: no database at data/vats.db: set VATS_DATA_DIR to core's data directory\n"
    )
    assert result.stdout == ""
    assert not (tmp_path / "backup.db").exists()


def test_backup_on_mongodb_points_to_mongodump(tmp_path: Path) -> None:
    result = vats_backup(
        tmp_path / "backup.db",
        {"VATS_MONGODB_URI": "mongodb://db.example:27017/?replicaSet=rs0"},
        cwd=tmp_path,
    )

    assert result.returncode == 1
    assert "MongoDB" in result.stderr and "mongodump" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "backup.db").exists()


def test_backup_into_a_missing_directory_is_refused(source: LiveStack, tmp_path: Path) -> None:
    result = vats_backup(
        tmp_path / "nowhere" / "backup.db", {"VATS_DATA_DIR": str(source.data_dir)}
    )

    assert result.returncode == 1
    assert result.stderr.startswith("error: no directory ")
    assert not (tmp_path / "nowhere").exists()
