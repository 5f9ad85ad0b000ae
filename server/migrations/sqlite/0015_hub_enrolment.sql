-- Enrolling a phone at a station hub while its uplink is down (issue 15).

-- A code issued for enrolling at a station's hub: the hub learns its hash from the
-- roster, and it lives longer than the 15 minutes of an ordinary code.
ALTER TABLE enrolment_codes ADD COLUMN station BLOB;
-- The key each hub signs the phones it enrolled with; the district server adopts a
-- device only on that signature (the hub's forward, or the phone itself).
ALTER TABLE hubs ADD COLUMN enrol_key BLOB;
-- The hub a device was enrolled at, if it was.
ALTER TABLE devices ADD COLUMN enrolled_at_hub BLOB;

-- On a hub: the codes of its station, as the roster last said, and which it used.
CREATE TABLE hub_phone_codes (
    code_hash  BLOB PRIMARY KEY,
    user_id    BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;

-- On a hub: the devices it enrolled, signed, until the district server adopts them.
CREATE TABLE hub_enrolments (
    device      BLOB PRIMARY KEY,
    certificate BLOB NOT NULL,
    enrolled_at INTEGER NOT NULL,
    answered_at INTEGER,
    answer      TEXT
) STRICT;

-- On a hub: changes the district server refused after the hub took them (kept in its
-- quarantine for a person). A phone whose copy holds only such changes beyond the
-- hub's starts its copy again (`not_in_record`).
CREATE TABLE hub_refused (
    doc  BLOB NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (doc, hash)
) STRICT;
