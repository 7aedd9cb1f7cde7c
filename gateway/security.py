"""Security headers on every answer of the gateway: the pages' Content-Security-Policy, no
framing, no content sniffing, no referrer, and what a browser or proxy may keep."""

from __future__ import annotations

import functools
import hashlib
import pathlib
import re
import urllib.parse

import falcon
import falcon.asgi

API_PREFIX = "/api/"
STATIC_PREFIX = "/static/"
# A file whose name carries (a prefix of) the sha256 of its content never changes under
# that name: `agent.3f2a9c1b.js`.
_HASHED_NAME = re.compile(r"[^/]+\.([0-9a-f]{8,64})\.[A-Za-z0-9]+")

NO_STORE = "no-store"
# Revalidated at every use (the static route answers 304 for a known ETag).
REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"

_ALWAYS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page_policy(public_url: str = "") -> str:
    """The pages' policy: scripts, styles and connections to the gateway only, nothing inline.

    Recording links are built on VATS_PUBLIC_URL, which may name another origin than the
    one the page was loaded from (a proxy's name, say): its player may play from there too.
    """
    media = " ".join(["'self'", *_origin(public_url)])
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"media-src {media}",
            "connect-src 'self'",
            "font-src 'self'",
            "manifest-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )


# Any other answer (JSON, a recording, a script) loads nothing itself; a recording opened
# on its own still plays (a browser shows it in a media element of the answer's origin).
ANSWER_POLICY = "default-src 'none'; media-src 'self'; frame-ancestors 'none'; base-uri 'none'"


def _origin(url: str) -> list[str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return []
    return [f"{parts.scheme}://{parts.netloc}"]


@functools.lru_cache(maxsize=256)
def _content_matches(path: pathlib.Path, digest: str, mtime_ns: int) -> bool:
    # mtime_ns is part of the key only: a file replaced under the same name is read again.
    return hashlib.sha256(path.read_bytes()).hexdigest().startswith(digest)


class SecurityHeaders:
    """Falcon middleware adding the security headers to every answer, errors included.

    Goes first in the middleware list, so that its process_response runs last and sees
    the answer as the resource and the error handlers left it.
    """

    def __init__(self, static_dir: pathlib.Path, public_url: str = "") -> None:
        self._static_dir = static_dir.resolve()
        self._page_policy = page_policy(public_url)

    async def process_response(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        for name, value in _ALWAYS.items():
            resp.set_header(name, value)
        resp.set_header("Content-Security-Policy", self._policy_for(resp))
        resp.set_header("Cache-Control", self._cache_control(req, resp))

    def _policy_for(self, resp: falcon.asgi.Response) -> str:
        content_type = (resp.content_type or "").partition(";")[0].strip().lower()
        return self._page_policy if content_type == "text/html" else ANSWER_POLICY

    def _cache_control(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> str:
        """API answers (phones, names, recordings) are never stored; static files are
        revalidated, or kept for good when their name carries their content's hash; other
        answers keep what their resource chose, else are not stored either."""
        if req.path.startswith(API_PREFIX):
            return NO_STORE
        if req.path.startswith(STATIC_PREFIX) and resp.status_code in (200, 206, 304):
            return IMMUTABLE if self._is_hashed(req.path) else REVALIDATE
        chosen = resp.get_header("Cache-Control")
        return chosen or NO_STORE

    def _is_hashed(self, path: str) -> bool:
        name = path.removeprefix(STATIC_PREFIX)
        match = _HASHED_NAME.fullmatch(name)
        if match is None:
            return False
        file = (self._static_dir / name).resolve()
        if not file.is_relative_to(self._static_dir) or not file.is_file():
            return False
        return _content_matches(file, match.group(1), file.stat().st_mtime_ns)
