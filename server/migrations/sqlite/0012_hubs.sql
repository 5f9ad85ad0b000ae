-- Station hubs (issue 15): a small machine at a station that its phones sync with
-- when the uplink is down. A hub enrols with a one-time code, like a phone, and holds
-- its own rotating credential; it forwards its phones' sealed requests.
CREATE TABLE hub_codes (
    code_hash  BLOB PRIMARY KEY,
    station    BLOB NOT NULL REFERENCES stations (id),
    issued_by  BLOB NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    hub        BLOB
) STRICT;

CREATE TABLE hubs (
    id                    BLOB PRIMARY KEY,
    station               BLOB NOT NULL REFERENCES stations (id),
    name                  TEXT NOT NULL,
    enrolled_at           INTEGER NOT NULL,
    enrolled_by           BLOB NOT NULL,   -- who issued the code
    refresh_hash          BLOB NOT NULL UNIQUE,
    previous_refresh_hash BLOB,
    last_seen_at          INTEGER,
    revoked_at            INTEGER,
    revoked_by            BLOB
) STRICT;
CREATE INDEX hubs_station ON hubs (station);
