-- Documents as a compacted snapshot plus change chunks appended since.
CREATE TABLE documents (
    id          BYTEA PRIMARY KEY,         -- 16-byte UUID
    district    BYTEA NOT NULL,
    station     BYTEA,                     -- NULL for a district's catalog
    snapshot    BYTEA NOT NULL,            -- Automerge save()
    heads       BYTEA NOT NULL,            -- sorted 32-byte change hashes, concatenated
    chunk_bytes BIGINT NOT NULL DEFAULT 0, -- bytes in change chunks since the snapshot
    updated_at  BIGINT NOT NULL
);
CREATE INDEX documents_place ON documents (district, station);

CREATE TABLE changes (
    doc   BYTEA NOT NULL,
    seq   BIGINT NOT NULL,                 -- the feed entry that added them
    bytes BYTEA NOT NULL,                  -- raw Automerge changes, concatenated
    PRIMARY KEY (doc, seq)
);

-- The feed: one entry per accepted batch; seq is the phones' cursor. Appends take a
-- transaction-scoped advisory lock before inserting, so sequence numbers become
-- visible in commit order and a reader never skips a late commit.
CREATE TABLE feed (
    seq         BIGSERIAL PRIMARY KEY,
    doc         BYTEA NOT NULL,
    hashes      BYTEA NOT NULL,            -- the batch's change hashes, concatenated
    device      BYTEA,                     -- NULL for the server's own changes
    user_id     BYTEA,
    received_at BIGINT NOT NULL
);
CREATE INDEX feed_doc ON feed (doc, seq);

CREATE TABLE quarantine (
    id      BIGSERIAL PRIMARY KEY,
    doc     BYTEA NOT NULL,
    device  BYTEA NOT NULL,
    user_id BYTEA NOT NULL,
    code    TEXT NOT NULL,
    reason  TEXT NOT NULL,
    bytes   BYTEA NOT NULL,                -- postcard-encoded list of byte strings
    at      BIGINT NOT NULL
);

-- What each device holds, as far as the server knows.
CREATE TABLE device_docs (
    device BYTEA NOT NULL,
    doc    BYTEA NOT NULL,
    PRIMARY KEY (device, doc)
);
