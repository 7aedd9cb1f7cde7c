"""The embedded storage adapter: the storage port on one SQLite file, `VATS_DATA_DIR/vats.db`."""

from core.storage.sqlite.schema import LATEST_VERSION, SchemaError
from core.storage.sqlite.store import SqliteStore, SqliteUnitOfWork, backup_file

__all__ = ["LATEST_VERSION", "SchemaError", "SqliteStore", "SqliteUnitOfWork", "backup_file"]
