"""Core's settings: its VATS_ variables (defined in `vats_settings.table`), read once at start."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from vats_settings import Setting
from vats_settings import table as t


@dataclasses.dataclass(frozen=True)
class CoreConfig:
    """The defaults are the variables' defaults, except that metrics are off unless asked
    for (tests build one directly and serve no metrics)."""

    grpc_addr: str = t.GRPC_ADDR.initial
    http_addr: str = t.HTTP_ADDR.initial
    mongodb_uri: str | None = t.MONGODB_URI.initial
    mongodb_db: str = t.MONGODB_DB.initial
    seed_path: str | None = t.SEED.initial
    data_dir: str = t.DATA_DIR.initial
    public_url: str = t.PUBLIC_URL.initial
    max_record_mb: int = t.MAX_RECORD_MB.initial
    default_region: str = t.DEFAULT_REGION.initial
    # The IANA time zone the board's "today" is in.
    timezone: str = t.TIMEZONE.initial
    # Signs recording download links; unset, a secret made at the first start is
    # kept in the data directory. Set it when running more than one core.
    link_secret: str | None = t.LINK_SECRET.initial
    link_ttl_seconds: int = t.LINK_TTL_SECONDS.initial
    ringing_expiry_seconds: int = t.RINGING_EXPIRY_SECONDS.initial
    in_progress_expiry_seconds: int = t.IN_PROGRESS_EXPIRY_SECONDS.initial
    sweep_interval_seconds: float = t.SWEEP_INTERVAL_SECONDS.initial
    storage_workers: int = t.STORAGE_WORKERS.initial
    # "changestream" (cards from every core on a replica set) or "inprocess";
    # on SQLite (one writer) events are always in-process.
    event_source: str = t.EVENT_SOURCE.initial
    # host:port of the Prometheus /metrics endpoint; None turns it off.
    metrics_addr: str | None = None
    # How often storage is pinged (health) and the gauges of stored state refreshed.
    storage_check_seconds: float = t.STORAGE_CHECK_SECONDS.initial
    log_level: str = t.LOG_LEVEL.initial
    test_storage_delay_ms: int = t.TEST_STORAGE_DELAY_MS.initial

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CoreConfig:
        """Raises vats_settings.SettingError, naming the variable, for a value it refuses."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {field: s.read(env) for field, s in _VARIABLES.items()}
        return cls(**values)


_VARIABLES: dict[str, Setting[Any]] = {
    "grpc_addr": t.GRPC_ADDR,
    "http_addr": t.HTTP_ADDR,
    "mongodb_uri": t.MONGODB_URI,
    "mongodb_db": t.MONGODB_DB,
    "seed_path": t.SEED,
    "data_dir": t.DATA_DIR,
    "public_url": t.PUBLIC_URL,
    "max_record_mb": t.MAX_RECORD_MB,
    "default_region": t.DEFAULT_REGION,
    "timezone": t.TIMEZONE,
    "link_secret": t.LINK_SECRET,
    "link_ttl_seconds": t.LINK_TTL_SECONDS,
    "ringing_expiry_seconds": t.RINGING_EXPIRY_SECONDS,
    "in_progress_expiry_seconds": t.IN_PROGRESS_EXPIRY_SECONDS,
    "sweep_interval_seconds": t.SWEEP_INTERVAL_SECONDS,
    "storage_workers": t.STORAGE_WORKERS,
    "event_source": t.EVENT_SOURCE,
    "metrics_addr": t.METRICS_ADDR,
    "storage_check_seconds": t.STORAGE_CHECK_SECONDS,
    "log_level": t.LOG_LEVEL,
    "test_storage_delay_ms": t.TEST_STORAGE_DELAY_MS,
}
