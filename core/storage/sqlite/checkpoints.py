"""Checkpoints off the commit path.

In WAL mode a COMMIT appends the pages it changed to the log, and a checkpoint later
copies them into the database file and syncs it. Left to SQLite, the COMMIT that makes
the log reach its limit runs that checkpoint itself, before it returns: with a call's
commit writing about twenty pages, one commit in forty waited for a copy of a thousand
pages and a flush of the database file (1.5 ms and more on a quiet machine), and that
was the slowest one percent of every card's way from the PBX to a screen.

Here a thread of the store copies the log a little after commits instead, with PASSIVE
checkpoints on a connection of its own: they never wait for the writer or the readers,
nor hold them up. The writer's own checkpoint stays as the backstop, at a larger limit:
it runs only when the log still grows past it, because the thread fell behind or
because commits kept coming while it copied (the log starts over from its beginning
only once all of it is copied). Checkpoints change nothing of what a COMMIT makes
durable: the log is synced at every commit either way.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger("vats.storage")

# Pages of log after which a COMMIT checkpoints by itself (SQLite's default is 1,000).
WRITER_CHECKPOINT_PAGES = 2000
# How long the thread lets commits gather before it copies them: measured in process
# (one call a commit, 2.5 ms apart), 0.05 s kept the commits' p99 at 1.77 ms against
# 2.84-2.92 ms with SQLite's own checkpoints, and 0.1 s at 1.97-2.21.
DELAY_SECONDS = 0.05
# How long close() waits for a checkpoint under way.
STOP_WAIT_SECONDS = 10.0


class Checkpointer:
    """The thread that checkpoints the database's log after commits (see the module)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._connect = connect
        self._name = name
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        connection = self._connect()
        self._thread = threading.Thread(
            target=self._run, args=(connection,), name=f"checkpoints {self._name}", daemon=True
        )
        self._thread.start()

    def committed(self) -> None:
        """Called after each COMMIT: its pages are copied a little later."""
        self._wanted.set()

    def stop(self) -> None:
        """Stop the thread, after the checkpoint under way if there is one."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        self._wanted.set()
        thread.join(STOP_WAIT_SECONDS)
        if thread.is_alive():
            log.warning("the checkpoint thread of %s did not stop in time", self._name)

    def _run(self, connection: sqlite3.Connection) -> None:
        try:
            while True:
                self._wanted.wait()
                if self._stopping.wait(DELAY_SECONDS):
                    return
                # Commits from now on ask for the next checkpoint.
                self._wanted.clear()
                self._checkpoint(connection)
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as error:
            # The writer's own checkpoint still bounds the log.
            log.warning("checkpoint of %s failed: %s", self._name, error)
