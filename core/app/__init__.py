"""Core's use cases, by area, over the storage port: call commands, queries,
the card/event log, channel and directory administration, tokens, the audit log, the seed."""

from __future__ import annotations

import dataclasses

from core.app.admin import ChannelAdmin, DirectoryAdmin
from core.app.audit import AuditTrail
from core.app.board import BoardDesk
from core.app.callbacks import CallbackDesk
from core.app.calls import CallCommands
from core.app.cardlog import CardLog
from core.app.queries import CallQueries
from core.app.tokens import TokenDesk


@dataclasses.dataclass(frozen=True)
class UseCases:
    """Everything the transports may ask of core, wired once in core.server."""

    calls: CallCommands
    queries: CallQueries
    cards: CardLog
    channels: ChannelAdmin
    directory: DirectoryAdmin
    tokens: TokenDesk
    audit: AuditTrail
    callbacks: CallbackDesk
    board: BoardDesk


__all__ = [
    "AuditTrail",
    "BoardDesk",
    "CallCommands",
    "CallQueries",
    "CallbackDesk",
    "CardLog",
    "ChannelAdmin",
    "DirectoryAdmin",
    "TokenDesk",
    "UseCases",
]
