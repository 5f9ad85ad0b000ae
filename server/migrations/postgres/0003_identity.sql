-- Who may do what: districts, stations, users, their assignments and devices.
-- Relational, never CRDT: devices learn what they need through sync responses.
CREATE TABLE districts (
    id         BYTEA PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE stations (
    id         BYTEA PRIMARY KEY,
    district   BYTEA NOT NULL REFERENCES districts (id),
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (district, name)
);

CREATE TABLE users (
    id            BYTEA PRIMARY KEY,
    login         TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('volunteer', 'station_staff', 'coordinator', 'admin')),
    district      BYTEA REFERENCES districts (id),  -- NULL only for a bootstrap admin
    password_hash TEXT,                             -- argon2id; NULL: no password login
    disabled_at   BIGINT,
    created_at    BIGINT NOT NULL
);

-- Station staff: the stations they cover.
CREATE TABLE staff_stations (
    user_id BYTEA NOT NULL REFERENCES users (id),
    station BYTEA NOT NULL REFERENCES stations (id),
    PRIMARY KEY (user_id, station)
);

-- Volunteers: the residents assigned to them.
CREATE TABLE assignments (
    user_id     BYTEA NOT NULL REFERENCES users (id),
    resident    BYTEA NOT NULL,
    assigned_by BYTEA NOT NULL,
    assigned_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, resident)
);

-- One-time codes a phone exchanges for a device credential. Only hashes are kept.
CREATE TABLE enrolment_codes (
    code_hash  BYTEA PRIMARY KEY,
    user_id    BYTEA NOT NULL REFERENCES users (id),
    issued_by  BYTEA NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    device     BYTEA
);

CREATE TABLE devices (
    id                    BYTEA PRIMARY KEY,
    user_id               BYTEA NOT NULL REFERENCES users (id),
    name                  TEXT NOT NULL,
    enrolled_at           BIGINT NOT NULL,
    refresh_hash          BYTEA NOT NULL UNIQUE,  -- SHA-256 of the current refresh token
    previous_refresh_hash BYTEA,                  -- the one before, until the new one is used
    last_seen_at          BIGINT,
    revoked_at            BIGINT,
    revoked_by            BYTEA
);
CREATE INDEX devices_user ON devices (user_id);

-- The Automerge actors registered to each device: nobody writes under another's name.
CREATE TABLE device_actors (
    actor  BYTEA PRIMARY KEY,
    device BYTEA NOT NULL REFERENCES devices (id)
);
CREATE INDEX device_actors_device ON device_actors (device);
