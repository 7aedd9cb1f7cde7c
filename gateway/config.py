"""Gateway settings, read once from the environment (defaults in the table below)."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping


class Config:
    """Everything the gateway can be told. Tests build one and swap attributes freely.

    Variables [defaults]:
    VATS_HTTP_ADDR [127.0.0.1:8080]: where uvicorn listens.
    VATS_CORE_TARGET [VATS_GRPC_ADDR, itself 127.0.0.1:50051]: core's gRPC address.
    VATS_SERVICE_TOKEN [empty]: the gateway's token towards core.
    VATS_PUBLIC_URL [http://{VATS_HTTP_ADDR}]: prefix of recording links in replies.
    VATS_MAX_RECORD_MB [200]: largest recording accepted.
    VATS_MAX_BODY_KB [1024]: largest form or JSON body, files excluded.
    VATS_MAX_FIELD_KB [64]: largest single multipart text field.
    VATS_MAX_FORM_PARTS [64]: most parts in one multipart body, or members in one JSON object.
    VATS_CORE_TIMEOUT [5]: deadline of unary calls to core, in seconds.
    VATS_RECORD_TIMEOUT [600]: deadline of recording uploads and downloads.
    VATS_WATCH_TIMEOUT [3600]: lifetime of one card stream (the browser resumes it).
    VATS_HEALTH_TIMEOUT [1]: deadline of the health check of core.
    VATS_SSE_KEEPALIVE [15]: seconds between keepalive comments on card streams.
    VATS_SHUTDOWN_GRACE [5]: seconds open requests get at shutdown (card streams end at once).
    VATS_LOG_LEVEL [INFO]: least severe level logged (JSON lines on stderr).
    VATS_RATE_LIMIT [50]: PBX requests per second per channel (burst twice that); 0: no limit.
    VATS_TRUSTED_PROXIES [none]: addresses or CIDR networks of the reverse proxies whose
        X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated).
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.http_addr = env.get("VATS_HTTP_ADDR") or "127.0.0.1:8080"
        grpc_addr = env.get("VATS_GRPC_ADDR") or "127.0.0.1:50051"
        self.core_target = env.get("VATS_CORE_TARGET") or grpc_addr
        self.service_token = env.get("VATS_SERVICE_TOKEN", "")
        public_url = env.get("VATS_PUBLIC_URL") or f"http://{self.http_addr}"
        self.public_url = public_url.rstrip("/")
        self.max_record_bytes = _number(env, "VATS_MAX_RECORD_MB", 200) * 1024 * 1024
        self.max_body_bytes = _number(env, "VATS_MAX_BODY_KB", 1024) * 1024
        self.max_field_bytes = _number(env, "VATS_MAX_FIELD_KB", 64) * 1024
        self.max_form_parts = _number(env, "VATS_MAX_FORM_PARTS", 64)
        self.core_timeout = _seconds(env, "VATS_CORE_TIMEOUT", 5.0)
        self.record_timeout = _seconds(env, "VATS_RECORD_TIMEOUT", 600.0)
        self.watch_timeout = _seconds(env, "VATS_WATCH_TIMEOUT", 3600.0)
        self.health_timeout = _seconds(env, "VATS_HEALTH_TIMEOUT", 1.0)
        self.sse_keepalive = _seconds(env, "VATS_SSE_KEEPALIVE", 15.0)
        # How long a card stream waits for core to accept the token before it
        # commits to 200 (core answers auth errors at once, so this is rarely reached).
        self.sse_handshake = min(self.core_timeout, 2.0)
        self.retry_after = 1
        self.shutdown_grace = int(_seconds(env, "VATS_SHUTDOWN_GRACE", 5.0))
        self.log_level = (env.get("VATS_LOG_LEVEL") or "INFO").upper()
        self.rate_limit = _rate(env, "VATS_RATE_LIMIT", 50.0)
        self.trusted_proxies = _networks(env, "VATS_TRUSTED_PROXIES")

    @property
    def http_host_port(self) -> tuple[str, int]:
        host, _, port = self.http_addr.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"VATS_HTTP_ADDR must be host:port, not {self.http_addr!r}")
        return host.strip("[]"), int(port)

    def public_url_for(self, scheme: str) -> str:
        """The prefix of links in the reply to a request that came in over `scheme`.

        A request that reached a trusted proxy over https gets https links even when
        VATS_PUBLIC_URL says http; links are never downgraded to http.
        """
        if scheme == "https" and self.public_url.startswith("http://"):
            return "https://" + self.public_url.removeprefix("http://")
        return self.public_url


def _number(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, not {raw!r}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {raw!r}")
    return value


def _rate(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number per second, not {raw!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be 0 (off) or positive, not {raw!r}")
    return value


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Addresses and CIDR networks, written the one way uvicorn's proxy headers
    middleware understands (it would take a malformed entry as a name that never matches)."""
    raw = env.get(name) or ""
    networks: list[str] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(
                f"{name} must list IP addresses or CIDR networks, not {item!r}"
            ) from None
        networks.append(str(network.network_address) if _is_host(network) else str(network))
    return tuple(networks)


def _is_host(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    return network.num_addresses == 1
