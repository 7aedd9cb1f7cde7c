"""The embedded storage adapter: the storage port on one SQLite file, `VATS_DATA_DIR/vats.db`."""

from core.storage.sqlite.schema import LATEST_VERSION, SchemaError
from core.storage.sqlite.store import SqliteStore, SqliteUnitOfWork, backup_file

# The database's file name in the data directory.
DATABASE_FILE = "vats.db"

__all__ = [
    "DATABASE_FILE",
    "LATEST_VERSION",
    "SchemaError",
    "SqliteStore",
    "SqliteUnitOfWork",
    "backup_file",
]
