"""The caller's credentials, passed through to core as they came."""

from __future__ import annotations

import falcon.asgi

from gateway.core_client import bearer, is_metadata_safe
from gateway.errors import GatewayError

# Far above any token core issues, far below what gRPC metadata may carry (16 KiB).
MAX_AUTHORIZATION = 4096
NOT_BEARER = "the Authorization scheme must be Bearer: send 'Authorization: Bearer <token>'"


def caller_authorization(req: falcon.asgi.Request) -> str | None:
    """`Authorization` header, else `?access_token=` (EventSource cannot set headers).

    A header of another scheme (`Token x`, `Basic ...`, a bare token) is refused
    unless the request has other credentials: `?access_token=`, or a signed
    recording link, which needs no token (a proxy in front may add such a header).
    """
    header = (req.get_header("Authorization") or "").strip()
    token = (req.get_param("access_token") or "").strip()
    if header and header.partition(" ")[0].lower() != "bearer":
        if not (token or req.get_param("signature")):
            raise GatewayError(401, "unauthenticated", NOT_BEARER)
        header = ""
    value = header or (bearer(token) if token else "")
    if value and (len(value) > MAX_AUTHORIZATION or not is_metadata_safe(value)):
        raise GatewayError(401, "unauthenticated", "the token is malformed")
    return value or None
