"""Core's use cases, by area, over the storage port: call commands, queries,
the card/event log, channel and directory administration, tokens, the audit log, the seed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

from core.app.admin import ChannelAdmin, DirectoryAdmin
from core.app.audit import AuditTrail
from core.app.board import BoardDesk
from core.app.callbacks import CallbackDesk
from core.app.calls import CallCommands, RecordingDiscard
from core.app.cardlog import CardLog
from core.app.queries import CallQueries
from core.app.tokens import TokenDesk
from core.model import utc_now
from core.storage.port import Store


@dataclasses.dataclass(frozen=True)
class UseCases:
    """Everything the transports may ask of core, wired once (`over`) in core.server."""

    calls: CallCommands
    queries: CallQueries
    cards: CardLog
    channels: ChannelAdmin
    directory: DirectoryAdmin
    tokens: TokenDesk
    audit: AuditTrail
    callbacks: CallbackDesk
    board: BoardDesk

    @classmethod
    def over(
        cls,
        store: Store,
        *,
        region: str,
        timezone: str,
        public_url: str = "",
        recordings: RecordingDiscard | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> UseCases:
        """Every use case over one store, on one clock."""
        return cls(
            calls=CallCommands(store, region=region, recordings=recordings, clock=clock),
            queries=CallQueries(store, region=region),
            cards=CardLog(store, clock=clock),
            channels=ChannelAdmin(store, public_url=public_url, clock=clock),
            directory=DirectoryAdmin(store, region=region, clock=clock),
            tokens=TokenDesk(store, clock=clock),
            audit=AuditTrail(store, clock=clock),
            callbacks=CallbackDesk(store, clock=clock),
            board=BoardDesk(store, timezone, clock=clock),
        )


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
