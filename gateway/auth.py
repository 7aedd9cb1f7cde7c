"""Who a request is made for: the caller's credentials, passed through to core as they came.

Every request asks `caller_authorization`; every live stream asks `stream_authorization`,
the one place that also takes a one-time stream ticket (core checks and uses it up).
"""

from __future__ import annotations

import falcon.asgi

from gateway.core_client import bearer, is_metadata_safe
from gateway.errors import GatewayError

# Far above any token core issues, far below what gRPC metadata may carry (16 KiB).
MAX_AUTHORIZATION = 4096
NOT_BEARER = "the Authorization scheme must be Bearer: send 'Authorization: Bearer <token>'"
# How core is told that a stream is opened with a ticket: `authorization: Ticket <ticket>`.
TICKET_SCHEME = "Ticket"


def caller_authorization(req: falcon.asgi.Request) -> str | None:
    """`Authorization: Bearer` header, else `?access_token=` (discouraged: a token in a
    URL lands in browser history and proxies' logs; kept for existing integrations)."""
    return _authorization(req, ticket="")


def stream_authorization(req: falcon.asgi.Request) -> str | None:
    """Who a live stream is for: the `Authorization: Bearer` header, else a one-time
    `?ticket=` (POST /api/v2/telephony/stream-tickets: EventSource cannot set headers),
    else, discouraged, `?access_token=`."""
    return _authorization(req, ticket=_param(req, "ticket"))


def _authorization(req: falcon.asgi.Request, ticket: str) -> str | None:
    token = _param(req, "access_token")
    header = _bearer_header(req, has_others=bool(ticket or token or req.get_param("signature")))
    if header:
        value = header
    elif ticket:
        value = f"{TICKET_SCHEME} {ticket}"
    elif token:
        value = bearer(token)
    else:
        return None
    if len(value) > MAX_AUTHORIZATION or not is_metadata_safe(value):
        raise GatewayError(401, "unauthenticated", "the token or ticket is malformed")
    return value


def _bearer_header(req: falcon.asgi.Request, *, has_others: bool) -> str:
    """The `Authorization` header when it is a Bearer one.

    A header of another scheme (`Token x`, `Basic ...`, a bare token) is refused unless
    the request has other credentials: a ticket, `?access_token=`, or a signed recording
    link, which needs no token (a proxy in front may add such a header).
    """
    header = (req.get_header("Authorization") or "").strip()
    if header and header.partition(" ")[0].lower() != "bearer":
        if not has_others:
            raise GatewayError(401, "unauthenticated", NOT_BEARER)
        return ""
    return header


def _param(req: falcon.asgi.Request, name: str) -> str:
    return (req.get_param(name) or "").strip()
