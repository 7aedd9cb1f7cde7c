"""Core's configuration, read from the environment (SPEC 9)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class CoreConfig:
    grpc_addr: str = "127.0.0.1:50051"
    http_addr: str = "127.0.0.1:8080"
    mongodb_uri: str | None = None
    mongodb_db: str = "vats"
    seed_path: str | None = None
    data_dir: str = "./data"
    public_url: str = "http://127.0.0.1:8080"
    max_record_mb: int = 200
    default_region: str = "RU"
    # Signs recording download links; unset, a secret made at the first start is
    # kept in the data directory. Set it when running more than one core.
    link_secret: str | None = None
    link_ttl_seconds: int = 24 * 3600
    ringing_expiry_seconds: int = 15 * 60
    in_progress_expiry_seconds: int = 4 * 3600
    sweep_interval_seconds: float = 30.0
    storage_workers: int = 8
    # "changestream" (cards from every core on a replica set) or "inprocess";
    # on SQLite (one writer) events are always in-process.
    event_source: str = "changestream"
    # host:port of the Prometheus /metrics endpoint; None turns it off (the
    # environment's default is 127.0.0.1:9464, "off" turns it off there).
    metrics_addr: str | None = None
    # How often storage is pinged (health) and the gauges of stored state refreshed.
    storage_check_seconds: float = 5.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CoreConfig:
        env = os.environ if env is None else env
        http_addr = env.get("VATS_HTTP_ADDR", cls.http_addr)
        return cls(
            grpc_addr=env.get("VATS_GRPC_ADDR", cls.grpc_addr),
            http_addr=http_addr,
            mongodb_uri=env.get("VATS_MONGODB_URI") or None,
            mongodb_db=env.get("VATS_MONGODB_DB", cls.mongodb_db),
            seed_path=env.get("VATS_SEED") or None,
            data_dir=env.get("VATS_DATA_DIR", cls.data_dir),
            public_url=(env.get("VATS_PUBLIC_URL") or f"http://{http_addr}").rstrip("/"),
            max_record_mb=int(env.get("VATS_MAX_RECORD_MB", cls.max_record_mb)),
            default_region=env.get("VATS_DEFAULT_REGION", cls.default_region),
            link_secret=env.get("VATS_LINK_SECRET") or None,
            link_ttl_seconds=int(env.get("VATS_LINK_TTL_SECONDS", cls.link_ttl_seconds)),
            ringing_expiry_seconds=int(
                env.get("VATS_RINGING_EXPIRY_SECONDS", cls.ringing_expiry_seconds)
            ),
            in_progress_expiry_seconds=int(
                env.get("VATS_IN_PROGRESS_EXPIRY_SECONDS", cls.in_progress_expiry_seconds)
            ),
            sweep_interval_seconds=float(
                env.get("VATS_SWEEP_INTERVAL_SECONDS", cls.sweep_interval_seconds)
            ),
            storage_workers=int(env.get("VATS_STORAGE_WORKERS", cls.storage_workers)),
            event_source=env.get("VATS_EVENT_SOURCE", cls.event_source),
            metrics_addr=_metrics_addr(env.get("VATS_METRICS_ADDR", "127.0.0.1:9464")),
            storage_check_seconds=float(
                env.get("VATS_STORAGE_CHECK_SECONDS", cls.storage_check_seconds)
            ),
            log_level=env.get("VATS_LOG_LEVEL", cls.log_level),
        )


def _metrics_addr(value: str) -> str | None:
    value = value.strip()
    return None if value.lower() in ("", "off") else value
