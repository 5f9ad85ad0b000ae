-- Refused uploads reach a coordinator (issue 12): each quarantined batch belongs to the
-- district of the user whose device sent it, and waits for a person's decision
-- (accepted into the record, or dismissed with a note that reaches the phone). The
-- device-and-time index bounds each device's quarantine per day.
ALTER TABLE quarantine ADD COLUMN district BLOB;
ALTER TABLE quarantine ADD COLUMN decision TEXT CHECK (decision IN ('accepted', 'dismissed'));
ALTER TABLE quarantine ADD COLUMN decided_by BLOB;
ALTER TABLE quarantine ADD COLUMN decided_at INTEGER;
ALTER TABLE quarantine ADD COLUMN note TEXT;
ALTER TABLE quarantine ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
UPDATE quarantine SET district = (SELECT district FROM users WHERE users.id = quarantine.user_id),
                      size = length(bytes);
CREATE INDEX quarantine_device ON quarantine (device, at);
CREATE INDEX quarantine_district ON quarantine (district, id);

-- A phone states its clock with every sync: how far it runs ahead (+) or behind (-)
-- the server's, as last seen, for the devices page.
ALTER TABLE devices ADD COLUMN clock_skew_ms INTEGER;
