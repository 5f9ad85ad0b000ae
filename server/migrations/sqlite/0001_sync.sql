-- Documents as a compacted snapshot plus change chunks appended since.
CREATE TABLE documents (
    id          BLOB PRIMARY KEY,          -- 16-byte UUID
    district    BLOB NOT NULL,
    station     BLOB,                      -- NULL for a district's catalog
    snapshot    BLOB NOT NULL,             -- Automerge save()
    heads       BLOB NOT NULL,             -- sorted 32-byte change hashes, concatenated
    chunk_bytes INTEGER NOT NULL DEFAULT 0,-- bytes in change chunks since the snapshot
    updated_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX documents_place ON documents (district, station);

CREATE TABLE changes (
    doc   BLOB NOT NULL,
    seq   INTEGER NOT NULL,                -- the feed entry that added them
    bytes BLOB NOT NULL,                   -- raw Automerge changes, concatenated
    PRIMARY KEY (doc, seq)
) STRICT;

-- The feed: one entry per accepted batch; seq is the phones' cursor.
CREATE TABLE feed (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    doc         BLOB NOT NULL,
    hashes      BLOB NOT NULL,             -- the batch's change hashes, concatenated
    device      BLOB,                      -- NULL for the server's own changes
    user_id     BLOB,
    received_at INTEGER NOT NULL
) STRICT;
CREATE INDEX feed_doc ON feed (doc, seq);

CREATE TABLE quarantine (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    doc     BLOB NOT NULL,
    device  BLOB NOT NULL,
    user_id BLOB NOT NULL,
    code    TEXT NOT NULL,
    reason  TEXT NOT NULL,
    bytes   BLOB NOT NULL,                 -- postcard-encoded list of byte strings
    at      INTEGER NOT NULL
) STRICT;

-- What each device holds, as far as the server knows.
CREATE TABLE device_docs (
    device BLOB NOT NULL,
    doc    BLOB NOT NULL,
    PRIMARY KEY (device, doc)
) STRICT, WITHOUT ROWID;
