"""Every VATS_ variable of core, the gateway and the admin CLI: type, bounds, default and
meaning. The README's configuration table is checked against it."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vats_settings import (
    Setting,
    address,
    choice,
    define,
    integer,
    matching,
    networks,
    number,
    optional_address,
    optional_text,
    text,
    url,
)

DAY = 24 * 3600

# Addresses
HTTP_ADDR = address("VATS_HTTP_ADDR", "127.0.0.1:8080", "gateway listen address")
GRPC_ADDR = address("VATS_GRPC_ADDR", "127.0.0.1:50051", "core listen address")
# A gRPC target: host:port, or a name resolver's form such as dns:///host:port.
CORE_TARGET = text("VATS_CORE_TARGET", "{VATS_GRPC_ADDR}", "where the gateway and CLI find core")
PUBLIC_URL = url(
    "VATS_PUBLIC_URL", "http://{VATS_HTTP_ADDR}", "base of channel URLs and recording links"
)
TRUSTED_PROXIES = networks(
    "VATS_TRUSTED_PROXIES", "reverse proxies whose X-Forwarded-For / -Proto are believed"
)
METRICS_ADDR = optional_address(
    "VATS_METRICS_ADDR", "127.0.0.1:9464", "core's Prometheus endpoint (off: none)"
)

# Store
MONGODB_URI = optional_text("VATS_MONGODB_URI", "MongoDB URI; unset, the SQLite file")
MONGODB_DB = text("VATS_MONGODB_DB", "vats", "MongoDB database name")
DATA_DIR = text("VATS_DATA_DIR", "./data", "core's files: database, recordings, link secret")
SEED = optional_text("VATS_SEED", "seed file applied at start")
EVENT_SOURCE = choice(
    "VATS_EVENT_SOURCE",
    "changestream",
    ("changestream", "inprocess"),
    "on MongoDB: events from a change stream, or from this core only",
)
STORAGE_WORKERS = integer("VATS_STORAGE_WORKERS", 8, 1, 256, "core's threads doing storage work")

# Secrets
SERVICE_TOKEN = optional_text("VATS_SERVICE_TOKEN", "the gateway's token towards core")
ADMIN_TOKEN = optional_text("VATS_ADMIN_TOKEN", "the admin CLI's token towards core")
LINK_SECRET = optional_text("VATS_LINK_SECRET", "signs recording links; unset, kept in the data")

# Limits
MAX_RECORD_MB = integer("VATS_MAX_RECORD_MB", 200, 1, 4096, "largest recording, MB")
MAX_BODY_KB = integer("VATS_MAX_BODY_KB", 1024, 1, 64 * 1024, "largest PBX body without files")
MAX_FIELD_KB = integer("VATS_MAX_FIELD_KB", 64, 1, 64 * 1024, "largest multipart text field")
MAX_FORM_PARTS = integer(
    "VATS_MAX_FORM_PARTS", 64, 1, 10_000, "most parts of a multipart body or JSON members"
)
RATE_LIMIT = number(
    "VATS_RATE_LIMIT", 50, 1_000_000, "PBX requests per second per channel (0: off)", zero=True
)
DEFAULT_REGION = matching(
    "VATS_DEFAULT_REGION",
    "RU",
    "[A-Za-z]{2}",
    "a two-letter region code such as RU",
    "region of phone numbers without a country code",
)


def _time_zone(raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(raw) from None
    return raw


TIMEZONE = define(
    Setting(
        "VATS_TIMEZONE",
        "Europe/Moscow",
        'the time zone of the board\'s "today"',
        "an IANA time zone such as Europe/Moscow",
        _time_zone,
        "Europe/Moscow",
    )
)

# Timing
LINK_TTL_SECONDS = integer(
    "VATS_LINK_TTL_SECONDS", DAY, 1, 366 * DAY, "how long a recording link works"
)
RINGING_EXPIRY_SECONDS = integer(
    "VATS_RINGING_EXPIRY_SECONDS", 15 * 60, 1, 30 * DAY, "a ringing call's card expiry"
)
IN_PROGRESS_EXPIRY_SECONDS = integer(
    "VATS_IN_PROGRESS_EXPIRY_SECONDS", 4 * 3600, 1, 30 * DAY, "an answered call's card expiry"
)
SWEEP_INTERVAL_SECONDS = number(
    "VATS_SWEEP_INTERVAL_SECONDS", 30, 3600, "how often core looks for expired cards"
)
STORAGE_CHECK_SECONDS = number(
    "VATS_STORAGE_CHECK_SECONDS", 5, 3600, "how often core pings storage, refreshes gauges"
)
CORE_TIMEOUT = number("VATS_CORE_TIMEOUT", 5, 3600, "deadline of gateway calls to core")
RECORD_TIMEOUT = number("VATS_RECORD_TIMEOUT", 600, DAY, "deadline of recording transfers")
WATCH_TIMEOUT = number("VATS_WATCH_TIMEOUT", 3600, DAY, "lifetime of one card stream")
HEALTH_TIMEOUT = number("VATS_HEALTH_TIMEOUT", 1, 3600, "deadline of the gateway's check of core")
SSE_KEEPALIVE = number("VATS_SSE_KEEPALIVE", 15, 3600, "seconds between SSE keepalive comments")
SHUTDOWN_GRACE = number(
    "VATS_SHUTDOWN_GRACE", 5, 3600, "seconds open requests get at the gateway's shutdown"
)

# Operations
LOG_LEVEL = choice(
    "VATS_LOG_LEVEL",
    "INFO",
    ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    "least severe level logged",
)

# Makes the storage work of every request that much slower, as a slow database would, so
# that the test suite can check deadlines end to end.
TEST_STORAGE_DELAY_MS = integer(
    "VATS_TEST_STORAGE_DELAY_MS", 0, 0, 60_000, "storage delay (tests only)", test_only=True
)
