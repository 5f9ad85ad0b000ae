-- A station hub's own tables (issue 15). Empty on a district server.

-- Small values the hub keeps: its cursor on the district server's feed.
CREATE TABLE hub_state (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

-- The documents the district server has delivered to this hub (what it believes the
-- hub holds), as a phone's held set.
CREATE TABLE hub_mirrored (
    doc BLOB PRIMARY KEY
) STRICT;

-- The keys the station's phones prove themselves with to this hub.
CREATE TABLE hub_device_keys (
    device BLOB PRIMARY KEY,
    key    BLOB NOT NULL
) STRICT;

-- Every request with uploads a phone sent this hub, byte for byte with its seal, in
-- the order received, until the district server has taken it.
CREATE TABLE hub_outbox (
    id           INTEGER PRIMARY KEY,
    device       BLOB NOT NULL,
    received_at  INTEGER NOT NULL,
    body         BLOB NOT NULL,
    seal         BLOB NOT NULL,
    docs         BLOB NOT NULL,   -- postcard of the documents whose uploads the hub took
    attempts     INTEGER NOT NULL DEFAULT 0,
    forwarded_at INTEGER,           -- when the district server answered for it
    outcome      BLOB               -- postcard of its ForwardResult
) STRICT;
CREATE INDEX hub_outbox_pending ON hub_outbox (id) WHERE forwarded_at IS NULL;
CREATE INDEX hub_outbox_device ON hub_outbox (device, id);
