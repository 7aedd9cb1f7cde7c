"""The gateway's settings: its VATS_ variables (defined in `vats_settings.table`), read once."""

from __future__ import annotations

import os
from collections.abc import Mapping

from vats_settings import table as t


class Config:
    """Everything the gateway can be told. Tests build one and swap attributes freely."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        """Raises vats_settings.SettingError, naming the variable, for a value it refuses."""
        env = os.environ if env is None else env
        self.http_addr = t.HTTP_ADDR.read(env)
        self.core_target = t.CORE_TARGET.read(env)
        self.service_token = t.SERVICE_TOKEN.read(env) or ""
        self.public_url = t.PUBLIC_URL.read(env)
        self.max_record_bytes = t.MAX_RECORD_MB.read(env) * 1024 * 1024
        self.max_body_bytes = t.MAX_BODY_KB.read(env) * 1024
        self.max_field_bytes = t.MAX_FIELD_KB.read(env) * 1024
        self.max_form_parts = t.MAX_FORM_PARTS.read(env)
        self.core_timeout = t.CORE_TIMEOUT.read(env)
        self.record_timeout = t.RECORD_TIMEOUT.read(env)
        self.watch_timeout = t.WATCH_TIMEOUT.read(env)
        self.health_timeout = t.HEALTH_TIMEOUT.read(env)
        self.sse_keepalive = t.SSE_KEEPALIVE.read(env)
        # How long a card stream waits for core to accept the token before it
        # commits to 200 (core answers auth errors at once, so this is rarely reached).
        self.sse_handshake = min(self.core_timeout, 2.0)
        self.retry_after = 1
        self.shutdown_grace = int(t.SHUTDOWN_GRACE.read(env))
        self.log_level = t.LOG_LEVEL.read(env)
        self.rate_limit = t.RATE_LIMIT.read(env)
        # X-Forwarded-For / X-Forwarded-Proto are believed only from these.
        self.trusted_proxies = t.TRUSTED_PROXIES.read(env)

    @property
    def http_host_port(self) -> tuple[str, int]:
        host, _, port = self.http_addr.rpartition(":")
        return host.strip("[]"), int(port)

    def public_url_for(self, scheme: str) -> str:
        """The prefix of links in the reply to a request that came in over `scheme`.

        A request that reached a trusted proxy over https gets https links even when
        VATS_PUBLIC_URL says http; links are never downgraded to http.
        """
        if scheme == "https" and self.public_url.startswith("http://"):
            return "https://" + self.public_url.removeprefix("http://")
        return self.public_url
