-- Enrolling a phone at a station hub while its uplink is down (issue 15).

-- A code issued for enrolling at a station's hub: the hub learns its hash from the
-- roster, and it lives longer than the 15 minutes of an ordinary code.
ALTER TABLE enrolment_codes ADD COLUMN station BYTEA;
-- The key each hub signs the phones it enrolled with; the district server adopts a
-- device only on that signature (the hub's forward, or the phone itself).
ALTER TABLE hubs ADD COLUMN enrol_key BYTEA;
-- The hub a device was enrolled at, if it was.
ALTER TABLE devices ADD COLUMN enrolled_at_hub BYTEA;

-- On a hub: the codes of its station, as the roster last said, and which it used.
CREATE TABLE hub_phone_codes (
    code_hash  BYTEA PRIMARY KEY,
    user_id    BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);

-- On a hub: the devices it enrolled, signed, until the district server adopts them.
CREATE TABLE hub_enrolments (
    device      BYTEA PRIMARY KEY,
    certificate BYTEA NOT NULL,
    enrolled_at BIGINT NOT NULL,
    answered_at BIGINT,
    answer      TEXT
);

-- On a hub: changes the district server refused after the hub took them (kept in its
-- quarantine for a person). A phone whose copy holds only such changes beyond the
-- hub's starts its copy again (`not_in_record`).
CREATE TABLE hub_refused (
    doc  BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (doc, hash)
);
