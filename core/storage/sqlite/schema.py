"""The SQLite store's schema and its forward migrations, applied at every start.

The version lives in `PRAGMA user_version`. A migration, once released, is never
edited: a later change is a new migration appended to MIGRATIONS.
"""

from __future__ import annotations

import dataclasses
import sqlite3

# "vats" in ASCII, in the file header: tells our database from any other SQLite file.
APPLICATION_ID = 0x76617473


class SchemaError(RuntimeError):
    """The database cannot be used by this version of the code."""


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    script: str


# Datetimes are integer milliseconds since the epoch (UTC); lists that are only
# ever read whole are JSON text, and what is searched by is in indexed columns
# or child tables.
INITIAL_SCHEMA = """
CREATE TABLE sequences (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE departments (
    department_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE employees (
    employee_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    telephony INTEGER NOT NULL
);
CREATE INDEX employees_with_telephony ON employees(employee_id) WHERE telephony = 1;

CREATE TABLE groups (
    group_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    members TEXT NOT NULL
);

CREATE TABLE channels (
    channel_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    department_id INTEGER NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    enabled INTEGER NOT NULL,
    pbx_users TEXT NOT NULL
);

CREATE TABLE tokens (
    token_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    employee_id INTEGER,
    description TEXT NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX tokens_active ON tokens(created_at, token_id) WHERE revoked_at IS NULL;

CREATE TABLE contacts (
    contact_id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    phone_e164 TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    name TEXT NOT NULL
);

CREATE TABLE tickets (
    ticket_id INTEGER PRIMARY KEY,
    call_id INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    department_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    executor_id INTEGER,
    contact_id INTEGER,
    comments TEXT NOT NULL
);

CREATE TABLE calls (
    call_id INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL,
    direction TEXT NOT NULL,
    phone TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    pbx_call_id TEXT,
    user_id INTEGER,
    pbx_user_id TEXT,
    audience TEXT NOT NULL,
    viewers TEXT NOT NULL,
    history TEXT NOT NULL,
    answered_at INTEGER,
    ended_at INTEGER,
    expired INTEGER NOT NULL,
    version INTEGER NOT NULL,
    ticket_id INTEGER NOT NULL,
    contact_id INTEGER,
    phone_e164 TEXT NOT NULL,
    phone_key TEXT NOT NULL
);
CREATE UNIQUE INDEX calls_by_pbx_call_id ON calls(channel_id, pbx_call_id)
    WHERE pbx_call_id IS NOT NULL;
CREATE INDEX calls_newest ON calls(created_at, call_id);
CREATE INDEX calls_by_channel ON calls(channel_id, created_at, call_id);
CREATE INDEX calls_by_phone ON calls(phone_key, created_at, call_id);
CREATE INDEX calls_by_status ON calls(status, created_at, call_id);
CREATE INDEX calls_by_direction ON calls(direction, created_at, call_id);
CREATE INDEX calls_stale ON calls(status, expired, updated_at);

-- The employees a call concerns (its audience and the employee it is bound
-- to), for the history's employee filter in creation order.
CREATE TABLE call_employees (
    employee_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    call_id INTEGER NOT NULL,
    PRIMARY KEY (employee_id, created_at, call_id)
) WITHOUT ROWID;

-- Who sees the call's card now.
CREATE TABLE call_viewers (
    employee_id INTEGER NOT NULL,
    call_id INTEGER NOT NULL,
    PRIMARY KEY (employee_id, call_id)
) WITHOUT ROWID;

CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL,
    view TEXT NOT NULL,
    card_events TEXT NOT NULL
);
CREATE INDEX events_by_time ON events(at);

-- The employees an event has a card event for: their card streams replay it.
CREATE TABLE event_cards (
    employee_id INTEGER NOT NULL,
    seq INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
    PRIMARY KEY (employee_id, seq)
) WITHOUT ROWID;
CREATE INDEX event_cards_by_seq ON event_cards(seq);

CREATE TABLE idempotency (
    channel_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    reply TEXT NOT NULL,
    PRIMARY KEY (channel_id, key)
);
CREATE INDEX idempotency_by_time ON idempotency(created_at);

CREATE TABLE recordings (
    recording_id TEXT PRIMARY KEY,
    channel_id INTEGER NOT NULL,
    format TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    duration_seconds REAL,
    file_name TEXT NOT NULL,
    call_id INTEGER
);
-- Also finds the recordings no call took: their call_id IS NULL.
CREATE INDEX recordings_by_call ON recordings(call_id, created_at);
"""

# Nearly every stored call is final, yet the expiry sweeper and the card
# snapshot only look at live ones: an index of the live calls alone stays a few
# entries long and costs nothing when a final call is written.
LIVE_CALLS_INDEX = """
DROP INDEX calls_stale;
CREATE INDEX calls_live ON calls(status, expired, updated_at)
    WHERE status IN ('ringing', 'in-progress');
"""

# Missed callbacks, one open per phone on a channel, listed in `position` order within their
# state (the first miss of an open one, the resolution of a resolved one, newest first), for
# everyone and by who may see them; and the answered calls by end time, for the day's figures.
CALLBACKS = """
CREATE TABLE callbacks (
    callback_id INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL,
    phone_key TEXT NOT NULL,
    phone TEXT NOT NULL,
    phone_e164 TEXT NOT NULL,
    contact_id INTEGER,
    first_missed_at INTEGER NOT NULL,
    last_missed_at INTEGER NOT NULL,
    last_call_id INTEGER NOT NULL,
    last_status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    audience TEXT NOT NULL,
    state TEXT NOT NULL,
    position INTEGER NOT NULL,
    resolved_at INTEGER,
    resolution TEXT,
    resolved_by_employee_id INTEGER,
    resolved_by_call_id INTEGER,
    resolved_by_token_id TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE UNIQUE INDEX callbacks_open_by_phone ON callbacks(channel_id, phone_key)
    WHERE state = 'open';
CREATE INDEX callbacks_in_order ON callbacks(state, position, callback_id);
CREATE INDEX callbacks_by_channel ON callbacks(channel_id, state, position, callback_id);

CREATE TABLE callback_viewers (
    employee_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    position INTEGER NOT NULL,
    callback_id INTEGER NOT NULL,
    PRIMARY KEY (employee_id, state, position, callback_id)
) WITHOUT ROWID;
CREATE INDEX callback_viewers_by_callback ON callback_viewers(callback_id);

CREATE INDEX calls_answered_by_end ON calls(ended_at)
    WHERE ended_at IS NOT NULL AND answered_at IS NOT NULL;
"""

# Tokens may expire; stream tickets are redeemed once by whichever core sees them; the
# audit log is append-only, refused any change or removal by the database itself.
AUDIT_AND_TICKETS = """
ALTER TABLE tokens ADD COLUMN expires_at INTEGER;

CREATE TABLE stream_tickets (
    ticket_hash TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    role TEXT NOT NULL,
    employee_id INTEGER,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX stream_tickets_by_expiry ON stream_tickets(expires_at);

CREATE TABLE audit_entries (
    entry_id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    action TEXT NOT NULL,
    token_id TEXT NOT NULL,
    role TEXT NOT NULL,
    employee_id INTEGER,
    address TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX audit_by_action ON audit_entries(action, entry_id);
CREATE INDEX audit_by_token ON audit_entries(token_id, entry_id);
CREATE INDEX audit_by_employee ON audit_entries(employee_id, entry_id);
CREATE INDEX audit_by_time ON audit_entries(at, entry_id);
CREATE TRIGGER audit_entries_never_change BEFORE UPDATE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are never changed');
END;
CREATE TRIGGER audit_entries_never_removed BEFORE DELETE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are never removed');
END;
"""

# The employees an event has a card event for, as one row per event and bucket of employee
# ids (employee_id >> EMPLOYEE_BUCKET_SHIFT) holding those of the bucket: a card stream's
# replay reads its bucket's rows. Keyed by employee alone, each employee's newest rows sat on
# a page of their own, and an event for 1,000 employees wrote about 600 of them; it now
# writes one a bucket. The shift is part of the stored format: changing it takes a migration.
EMPLOYEE_BUCKET_SHIFT = 6
EVENT_CARDS_BY_BUCKET = f"""
CREATE TABLE event_audience (
    bucket INTEGER NOT NULL,
    seq INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
    employee_ids TEXT NOT NULL,
    PRIMARY KEY (bucket, seq)
) WITHOUT ROWID;
CREATE INDEX event_audience_by_seq ON event_audience(seq);
INSERT INTO event_audience (bucket, seq, employee_ids)
    SELECT bucket, seq, json_group_array(employee_id)
    FROM (
        SELECT employee_id >> {EMPLOYEE_BUCKET_SHIFT} AS bucket, seq, employee_id
        FROM event_cards ORDER BY seq, employee_id
    )
    GROUP BY bucket, seq;
DROP TABLE event_cards;
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the initial schema", INITIAL_SCHEMA),
    Migration(2, "index only the live calls for expiry", LIVE_CALLS_INDEX),
    Migration(3, "missed callbacks and the answered calls by end time", CALLBACKS),
    Migration(4, "token expiry, stream tickets and the audit log", AUDIT_AND_TICKETS),
    Migration(5, "the card events' employees by bucket of ids", EVENT_CARDS_BY_BUCKET),
)

LATEST_VERSION = MIGRATIONS[-1].version


def version_of(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def migrate(connection: sqlite3.Connection, target: int = LATEST_VERSION) -> int:
    """Bring the database up to `target` (the latest by default) and return its version.

    Each migration runs in its own transaction with the version bump, so a
    failure leaves the database at the last version that fully applied.
    Nothing is dropped but what a migration replaces.
    """
    _check_ours(connection)
    current = version_of(connection)
    if current > LATEST_VERSION:
        raise SchemaError(
            f"the database has schema version {current}, newer than this version of "
            f"vats-bridge knows ({LATEST_VERSION}); run a newer vats-bridge or restore "
            "a backup made by this one"
        )
    for migration in MIGRATIONS:
        if current < migration.version <= target:
            try:
                # executescript commits any open transaction first, so the
                # transaction is part of the script itself.
                connection.executescript(
                    "BEGIN IMMEDIATE;\n"
                    f"{migration.script}\n"
                    f"PRAGMA application_id = {APPLICATION_ID};\n"
                    f"PRAGMA user_version = {migration.version};\n"
                    "COMMIT;"
                )
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            current = migration.version
    return current


def _check_ours(connection: sqlite3.Connection) -> None:
    application_id = int(connection.execute("PRAGMA application_id").fetchone()[0])
    if application_id == APPLICATION_ID:
        return
    if application_id == 0 and version_of(connection) == 0:
        tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables == 0:
            return  # a new, empty database
    raise SchemaError("the file is an SQLite database of another application")
