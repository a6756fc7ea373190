"""The API node's local SQLite: the catalog index, users, player grants, its ledger index.

The catalog tables (``writers``, ``events``, ``recordings``, ``case_links``) are an index of the
archive and can be dropped and rebuilt from it at any time (``evidence-daemon reindex``);
``users``, ``grants`` and ``ledger`` (this node's own chain head) are not part of the catalog
and survive a reindex.
"""

from __future__ import annotations

from pathlib import Path

from ..state.db import LEDGER_INDEX_SCHEMA, Database
from .incidents import INCIDENT_SCHEMA, INCIDENT_TABLES
from .reviews import REVIEW_SCHEMA, REVIEW_TABLES

# Derived from the archive, emptied by reindex and rebuilt: the catalog proper, and the
# incident and review tables that follow the node's own events (incidents.py, reviews.py).
CATALOG_TABLES = ("case_links", "recordings", "events", "writers", *INCIDENT_TABLES,
                  *REVIEW_TABLES)

API_MIGRATIONS: tuple[str, ...] = (
    """
    -- One row per ledger writer (station or API node) seen in the archive: its public key and
    -- how far its chain has been read and checked (the poll watermark).
    CREATE TABLE writers (
        writer       TEXT PRIMARY KEY,
        public_key   TEXT,             -- PEM, as in keys/<writer>.pub
        fingerprint  TEXT,
        head_seq     INTEGER NOT NULL DEFAULT 0,
        head_hash    TEXT NOT NULL DEFAULT '0000000000000000000000000000000000000000000000000000000000000000',
        problem      TEXT,             -- why indexing this writer stopped, if it did
        updated_at   TEXT NOT NULL
    );

    -- Every ledger entry of every writer, as read from the archive. sig is the stored base64
    -- signature, verified = 1 when the signature and the prev link both checked at indexing.
    CREATE TABLE events (
        writer      TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        entry_hash  TEXT NOT NULL,
        prev        TEXT NOT NULL,
        time        TEXT NOT NULL,
        event       TEXT NOT NULL,
        recording   TEXT,
        actor       TEXT NOT NULL,
        details     TEXT NOT NULL,     -- JSON
        sig         TEXT NOT NULL,
        verified    INTEGER NOT NULL,
        problem     TEXT,
        PRIMARY KEY (writer, seq)
    );
    CREATE INDEX events_recording ON events (recording, time);
    CREATE INDEX events_actor ON events (actor, time);
    CREATE INDEX events_event ON events (event, time);

    -- One row per archived recording (an 'archived' event whose manifest checked out).
    -- sort_time is recorded_start in UTC (ISO 8601, +00:00), else archived_at. The search order.
    CREATE TABLE recordings (
        sha256           TEXT PRIMARY KEY,
        station          TEXT NOT NULL,
        device_id        TEXT,
        officer_id       TEXT,
        recorded_start   TEXT,
        recorded_end     TEXT,
        time_source      TEXT,
        timezone         TEXT,
        sort_time        TEXT NOT NULL,
        archive_deadline TEXT,
        archived_at      TEXT NOT NULL,
        compliance       TEXT NOT NULL,  -- on_time | late
        size_bytes       INTEGER NOT NULL,
        extension        TEXT NOT NULL,
        original_key     TEXT NOT NULL,
        manifest_key     TEXT NOT NULL,
        manifest_sha256  TEXT NOT NULL,
        manifest         TEXT NOT NULL,  -- JSON, as stored
        media            TEXT,           -- JSON ffprobe summary or NULL
        flags            TEXT NOT NULL DEFAULT '[]',
        flag_reasons     TEXT NOT NULL DEFAULT '{}',
        proxy_key        TEXT,
        proxy_sha256     TEXT,
        poster_key       TEXT,
        poster_sha256    TEXT,
        held             INTEGER NOT NULL DEFAULT 0,
        retain_until     TEXT,
        cases            TEXT NOT NULL DEFAULT '[]',
        notes            INTEGER NOT NULL DEFAULT 0,
        archived_by      TEXT NOT NULL,  -- writer of the 'archived' event
        archived_seq     INTEGER NOT NULL,
        indexed_at       TEXT NOT NULL
    );
    CREATE INDEX recordings_time ON recordings (sort_time, sha256);
    CREATE INDEX recordings_officer ON recordings (officer_id, sort_time);
    CREATE INDEX recordings_device ON recordings (device_id, sort_time);
    CREATE INDEX recordings_station ON recordings (station, sort_time);
    CREATE INDEX recordings_compliance ON recordings (compliance, sort_time);

    CREATE TABLE case_links (
        case_id  TEXT NOT NULL,
        sha256   TEXT NOT NULL,
        PRIMARY KEY (case_id, sha256)
    );
    CREATE INDEX case_links_sha256 ON case_links (sha256);

    -- Not catalog: kept across reindex.
    CREATE TABLE users (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL,    -- auditor | supervisor | officer | admin
        officer_id    TEXT,             -- for role officer: whose recordings they may see
        token_hash    TEXT NOT NULL UNIQUE,  -- SHA-256 of the bearer token
        created_at    TEXT NOT NULL,
        created_by    TEXT NOT NULL,
        revoked_at    TEXT,
        last_used_at  TEXT
    );

    -- A player link: one recorded access (its 'accessed' event) usable for grant_ttl_s, so
    -- a <video> element's many range requests are one access, not hundreds.
    CREATE TABLE grants (
        id            TEXT PRIMARY KEY,  -- random, URL-safe
        user          TEXT NOT NULL,
        recording     TEXT NOT NULL,
        kind          TEXT NOT NULL,     -- original | proxy | poster
        audit_seq     INTEGER NOT NULL,  -- this node's 'accessed' event
        created_at    TEXT NOT NULL,
        expires_at    TEXT NOT NULL
    );

    -- This node's own ledger index, as custody.ledger.LedgerWriter expects it.
    """ + LEDGER_INDEX_SCHEMA,
    # 2: flagged recordings are few: a partial index lets flag= searches walk only them
    """
    CREATE INDEX recordings_flagged ON recordings (sort_time, sha256) WHERE flags != '[]'
    """,
    # 3: incidents from dispatch records, their coverage, review samples (api/incidents.py)
    INCIDENT_SCHEMA + REVIEW_SCHEMA,
)


def open_api_database(path: Path) -> Database:
    return Database(path, migrations=API_MIGRATIONS, what="API catalog database")
