-- Station hubs (issue 15): a small machine at a station that its phones sync with
-- when the uplink is down. A hub enrols with a one-time code, like a phone, and holds
-- its own rotating credential; it forwards its phones' sealed requests.
CREATE TABLE hub_codes (
    code_hash  BYTEA PRIMARY KEY,
    station    BYTEA NOT NULL REFERENCES stations (id),
    issued_by  BYTEA NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    hub        BYTEA
);

CREATE TABLE hubs (
    id                    BYTEA PRIMARY KEY,
    station               BYTEA NOT NULL REFERENCES stations (id),
    name                  TEXT NOT NULL,
    enrolled_at           BIGINT NOT NULL,
    enrolled_by           BYTEA NOT NULL,   -- who issued the code
    refresh_hash          BYTEA NOT NULL UNIQUE,
    previous_refresh_hash BYTEA,
    last_seen_at          BIGINT,
    revoked_at            BIGINT,
    revoked_by            BYTEA
);
CREATE INDEX hubs_station ON hubs (station);
