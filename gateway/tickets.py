"""Stream tickets: POST /api/v2/telephony/stream-tickets.

A page opens a live stream with `?ticket=` instead of putting its token in the URL
(EventSource cannot set headers): core issues the ticket for the bearer token in the
header, valid once, for a minute, with that token's identity and scope.
"""

from __future__ import annotations

import falcon
import falcon.asgi

from gateway import convert
from gateway.auth import caller_authorization
from gateway.core_client import CoreClient
from gateway.errors import GatewayError

ONLY_IN_THE_HEADER = (
    "send the token as 'Authorization: Bearer <token>': a ticket is asked for with the"
    " token in the header, never in the URL"
)


class StreamTicketsResource:
    def __init__(self, core: CoreClient) -> None:
        self._core = core

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.action = "issue_stream_ticket"
        scheme = (req.get_header("Authorization") or "").strip().partition(" ")[0]
        if scheme.lower() != "bearer":
            # The point of a ticket is to keep the token out of URLs; and a ticket
            # cannot ask for another.
            raise GatewayError(401, "unauthenticated", ONLY_IN_THE_HEADER)
        authorization = caller_authorization(req)
        reply = await self._core.issue_stream_ticket(authorization, req.context.request_id)
        resp.status = falcon.HTTP_201
        resp.media = {"ticket": reply.ticket, "expires_at": convert.time_json(reply, "expire_time")}
