"""The card streams of CallService: WatchCallCards, and the two RPCs gateways deliver card
streams with (OpenCardStream, WatchCardFeed).

A card event is encoded once for every subscriber it goes to: the streams yield the
serialized message, and `add_call_service` registers them with no response serializer,
so that gRPC sends those bytes as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio

from core import errors
from core.auth import Principal
from core.events import (
    CardUpdate,
    EventStreams,
    FeedItem,
    FeedStart,
    Subscription,
    TokenRevoked,
)
from core.model import PublishedEvent
from core.rpc import decode, encode
from core.rpc.encode import LinkMaker
from core.rpc.handler import READERS, SERVICE, Context, Handler, checked
from core.rpc.status import abort
from telephony.v1 import call_service_pb2 as pb
from telephony.v1 import call_service_pb2_grpc
from vocabulary import CARD_EVENT

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CallService"].full_name
# Encoded messages of recent events kept for the subscribers still to be sent them: an
# event reaches all of its live subscribers within a few loop turns.
CACHE_SIZE = 512
_FEED = pb.CardFeedEvent
REVOKED = "the token was revoked or has expired"


class _Recent:
    """Encoded messages by key, the oldest dropped first. Used on the event loop only."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._items: dict[object, bytes] = {}

    def get(self, key: object) -> bytes | None:
        return self._items.get(key)

    def put(self, key: object, data: bytes) -> bytes:
        if len(self._items) >= self._size:
            del self._items[next(iter(self._items))]
        self._items[key] = data
        return data


def card_event_message(update: CardUpdate, links: LinkMaker | None) -> pb.CallCardEvent:
    event = pb.CallCardEvent(
        seq=update.seq, type=CARD_EVENT.number(update.change), reason=update.reason
    )
    if update.view is not None:
        event.card.CopyFrom(encode.card_message(update.view, links))
    return event


def feed_event_message(event: PublishedEvent, links: LinkMaker | None) -> pb.CardFeedEvent:
    message = pb.CardFeedEvent(type=_FEED.TYPE_EVENT, seq=event.seq)
    if event.card_events:
        message.card.CopyFrom(encode.card_message(event.view, links))
        # Grouped: the employees of an event's audience mostly share one change.
        groups: dict[tuple[str, str], list[int]] = {}
        for c in event.card_events:
            groups.setdefault((c.change.value, c.reason), []).append(c.employee_id)
        message.changes.extend(
            _FEED.Change(type=CARD_EVENT.number(change), reason=reason, employee_ids=employees)
            for (change, reason), employees in groups.items()
        )
    return message


# A TYPE_BATCH message is its type and, for each message in it, field 7 (`events`, length
# delimited) with that message's bytes: messages encoded once are framed, not re-encoded.
_BATCH_HEAD = _FEED(type=_FEED.TYPE_BATCH).SerializeToString()
_EVENTS_TAG = bytes([_FEED.EVENTS_FIELD_NUMBER << 3 | 2])


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def batch_bytes(messages: list[bytes]) -> bytes:
    """One TYPE_BATCH CardFeedEvent carrying the encoded `messages`, in order."""
    parts = [_BATCH_HEAD]
    for data in messages:
        parts += (_EVENTS_TAG, _varint(len(data)), data)
    return b"".join(parts)


class CardStreams:
    def __init__(self, handler: Handler, streams: EventStreams) -> None:
        self.h = handler
        self.streams = streams
        self.hub = streams.hub
        self._cards = _Recent()
        self._feed = _Recent()

    def _card_bytes(self, update: CardUpdate, principal: Principal) -> bytes:
        if update.snapshot or update.view is None:
            # Read for this stream alone: a snapshot may be newer than its seq.
            return card_event_message(update, self.h.links_for(principal)).SerializeToString()
        # A logged event's card is the same for everyone it changes the same way, but
        # for its recording's link, bound to the token each stream was opened with.
        bound_to = principal.token_id if update.view.recordings else ""
        key = (update.seq, update.view.call.call_id, update.change, update.reason, bound_to)
        data = self._cards.get(key)
        if data is None:
            data = card_event_message(update, self.h.links_for(principal)).SerializeToString()
            self._cards.put(key, data)
        return data

    def _feed_bytes(self, item: FeedItem, principal: Principal) -> bytes:
        if isinstance(item, FeedStart):
            return _FEED(type=_FEED.TYPE_START, seq=item.seq, reset=item.reset).SerializeToString()
        if isinstance(item, TokenRevoked):
            return _FEED(type=_FEED.TYPE_REVOKED, token_id=item.token_id).SerializeToString()
        # Recording links are bound to the feed's token: gateways sharing one share the bytes.
        key = (item.seq, principal.token_id)
        data = self._feed.get(key)
        if data is None:
            message = feed_event_message(item, self.h.links_for(principal))
            data = self._feed.put(key, message.SerializeToString())
        return data

    async def watch(
        self, request: pb.WatchCallCardsRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """WatchCallCards: one employee's cards, encoded (see the module's docstring)."""
        principal = await self.h.principal(context, READERS)
        employee_id = await checked(context, lambda: decode.card_owner(principal, request))
        # Subscribed before the stream is accepted: every change after that reaches it.
        subscription = self.hub.subscribe(principal.token_id, employee_id=employee_id)
        # One generator, no layers in between: this runs once per subscriber and event.
        try:
            await context.send_initial_metadata(())
            async for update in self.streams.cards(employee_id, request.after_seq, subscription):
                yield self._card_bytes(update, principal)
        finally:
            self.hub.unsubscribe(subscription)
        await _end(context, subscription)

    async def open(
        self, request: pb.OpenCardStreamRequest, context: Context
    ) -> pb.OpenCardStreamResponse:
        """OpenCardStream: the caller's credentials checked for a card stream, whose cards
        it shows, and the events that bring it up to the seq the feed takes over at."""
        watch = pb.WatchCallCardsRequest(
            employee_id=request.employee_id, after_seq=request.after_seq
        )

        def work(principal: Principal) -> pb.OpenCardStreamResponse:
            employee_id = decode.card_owner(principal, watch)
            updates, seq = (
                ([], request.after_seq)
                if request.held
                else self.streams.card_start(employee_id, request.after_seq)
            )
            return pb.OpenCardStreamResponse(
                employee_id=employee_id,
                token_id=principal.token_id,
                seq=seq,
                events=[card_event_message(u, self.h.links_for(principal)) for u in updates],
            )

        response = await self.h.call(context, READERS, work, stream=True)
        # Its revocation or expiry is then announced on the feed.
        self.hub.hold_remote(response.token_id)
        return response

    async def feed(
        self, request: pb.WatchCardFeedRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """WatchCardFeed: every event's card changes and the tokens revoked, encoded once
        for every gateway."""
        principal = await self.h.call(context, SERVICE, lambda p: p)
        await checked(context, lambda: decode.after_seq(request.after_seq))
        token_ids = list(request.token_ids)
        subscription = self.hub.subscribe(principal.token_id, notices=True)
        items = self.streams.feed(
            request.after_seq, token_ids, subscription, self.h.app.tokens.no_longer_valid
        )
        try:
            await context.send_initial_metadata(())
            async for ready in items:
                if request.batches and len(ready) > 1:
                    yield batch_bytes([self._feed_bytes(item, principal) for item in ready])
                else:
                    for item in ready:
                        yield self._feed_bytes(item, principal)
        finally:
            self.hub.unsubscribe(subscription)
        await _end(context, subscription)


async def _end(context: Context, subscription: Subscription) -> None:
    """A stream whose token was revoked ends UNAUTHENTICATED; others end OK."""
    if subscription.revoked:
        await abort(context, errors.Unauthenticated(REVOKED))


def add_call_service(
    servicer: call_service_pb2_grpc.CallServiceServicer, server: grpc.aio.Server
) -> None:
    """CallService on `server`, its card streams sending the bytes they yield as they are."""
    encoded = {
        "WatchCallCards": grpc.unary_stream_rpc_method_handler(
            servicer.WatchCallCards, request_deserializer=pb.WatchCallCardsRequest.FromString
        ),
        "WatchCardFeed": grpc.unary_stream_rpc_method_handler(
            servicer.WatchCardFeed, request_deserializer=pb.WatchCardFeedRequest.FromString
        ),
    }
    # Generic handlers are asked in the order they were added: these come first.
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, encoded),))
    call_service_pb2_grpc.add_CallServiceServicer_to_server(servicer, server)
    # Registered handlers take precedence over generic ones; the later registration of a
    # method replaces the generated one.
    server.add_registered_method_handlers(SERVICE_NAME, encoded)
