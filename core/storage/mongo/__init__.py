"""The MongoDB adapter of the storage port: transactions, change streams, GridFS."""

from core.storage.mongo.blobs import GridFSBlobStore
from core.storage.mongo.changes import ChangeStreamFollower
from core.storage.mongo.store import MongoStore, MongoUnitOfWork

__all__ = ["ChangeStreamFollower", "GridFSBlobStore", "MongoStore", "MongoUnitOfWork"]
