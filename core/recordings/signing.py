"""Signed, expiring download links for recordings: they work without a token until they expire.

A link is bound to the token it was handed to (`token=<token id>`, covered by the
signature): a download through it is that token's, and a link made for one token does
not verify for another. Links made before links were bound name no token; they stay
valid until they expire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote, urlencode

RECORDS_PATH = "/api/v2/telephony/records/"
_MIN_SECRET_BYTES = 16
# Binds a signature to its purpose, so the secret can sign other things without confusion.
_CONTEXT = b"vats-bridge recording link v1\x00"
# Links bound to a token sign under their own context: neither kind passes for the other.
_BOUND_CONTEXT = b"vats-bridge recording link v2\x00"


class LinkSigner:
    """Signs (recording id, expiry, token id) with HMAC-SHA256; a link is valid while
    now < expires."""

    def __init__(self, secret: bytes, ttl_seconds: int) -> None:
        if len(secret) < _MIN_SECRET_BYTES:
            raise ValueError(f"the link secret needs at least {_MIN_SECRET_BYTES} bytes")
        if ttl_seconds <= 0:
            raise ValueError("the link lifetime must be positive")
        self._secret = secret
        self._ttl = ttl_seconds

    @property
    def ttl_seconds(self) -> int:
        return self._ttl

    def sign(self, recording_id: str, now: float, token_id: str = "") -> tuple[int, str]:
        """(expires, signature) for a link to the recording made at unix time `now`
        for the token `token_id` ("" for a link bound to no token)."""
        expires = int(now) + self._ttl
        return expires, self._signature(recording_id, expires, token_id)

    def verify(
        self, recording_id: str, expires: int, signature: str, now: float, token_id: str = ""
    ) -> bool:
        """Whether the signature is ours for this recording, expiry and token, and not
        yet expired."""
        if now >= expires:
            return False
        expected = self._signature(recording_id, expires, token_id).encode("ascii")
        return hmac.compare_digest(expected, signature.encode("utf-8", "surrogatepass"))

    def signed_path(self, recording_id: str, now: float, token_id: str = "") -> tuple[str, int]:
        """(path with query, expires) of a fresh link to the recording for `token_id`."""
        expires, signature = self.sign(recording_id, now, token_id)
        return signed_path(recording_id, expires, signature, token_id), expires

    def _signature(self, recording_id: str, expires: int, token_id: str) -> str:
        rid = recording_id.encode("utf-8", "surrogatepass")
        # The id's length first: no other (id, expires) pair yields the same message. The
        # expiry is digits only, so the token id after it cannot trade characters with it.
        message = b"%s%d:%s:%d" % (_BOUND_CONTEXT if token_id else _CONTEXT, len(rid), rid, expires)
        if token_id:
            message += b":" + token_id.encode("utf-8", "surrogatepass")
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def signed_path(recording_id: str, expires: int, signature: str, token_id: str = "") -> str:
    """The path and query string of a signed link, e.g. for VATS_PUBLIC_URL + path."""
    bound = {"token": token_id} if token_id else {}
    query = urlencode({"expires": expires, **bound, "signature": signature})
    return f"{RECORDS_PATH}{quote(recording_id, safe='')}?{query}"
