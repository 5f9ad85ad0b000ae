-- Who may do what: districts, stations, users, their assignments and devices.
-- Relational, never CRDT: devices learn what they need through sync responses.
CREATE TABLE districts (
    id         BLOB PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE stations (
    id         BLOB PRIMARY KEY,
    district   BLOB NOT NULL REFERENCES districts (id),
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (district, name)
) STRICT;

CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    login         TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('volunteer', 'station_staff', 'coordinator', 'admin')),
    district      BLOB REFERENCES districts (id),  -- NULL only for a bootstrap admin
    password_hash TEXT,                             -- argon2id; NULL: no password login
    disabled_at   INTEGER,
    created_at    INTEGER NOT NULL
) STRICT;

-- Station staff: the stations they cover.
CREATE TABLE staff_stations (
    user_id BLOB NOT NULL REFERENCES users (id),
    station BLOB NOT NULL REFERENCES stations (id),
    PRIMARY KEY (user_id, station)
) STRICT, WITHOUT ROWID;

-- Volunteers: the residents assigned to them.
CREATE TABLE assignments (
    user_id     BLOB NOT NULL REFERENCES users (id),
    resident    BLOB NOT NULL,
    assigned_by BLOB NOT NULL,
    assigned_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, resident)
) STRICT, WITHOUT ROWID;

-- One-time codes a phone exchanges for a device credential. Only hashes are kept.
CREATE TABLE enrolment_codes (
    code_hash  BLOB PRIMARY KEY,
    user_id    BLOB NOT NULL REFERENCES users (id),
    issued_by  BLOB NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    device     BLOB
) STRICT;

CREATE TABLE devices (
    id                    BLOB PRIMARY KEY,
    user_id               BLOB NOT NULL REFERENCES users (id),
    name                  TEXT NOT NULL,
    enrolled_at           INTEGER NOT NULL,
    refresh_hash          BLOB NOT NULL UNIQUE,  -- SHA-256 of the current refresh token
    previous_refresh_hash BLOB,                  -- the one before, until the new one is used
    last_seen_at          INTEGER,
    revoked_at            INTEGER,
    revoked_by            BLOB
) STRICT;
CREATE INDEX devices_user ON devices (user_id);

-- The Automerge actors registered to each device: nobody writes under another's name.
CREATE TABLE device_actors (
    actor  BLOB PRIMARY KEY,
    device BLOB NOT NULL REFERENCES devices (id)
) STRICT;
CREATE INDEX device_actors_device ON device_actors (device);
