-- Who read what (issue 16): every view of a resident's page, every export of visits and
-- every refused batch opened, with the reader, the time and the resident concerned.
-- Coordinators and admins read it on /web/access-log. It is append-only: the triggers
-- refuse to change or delete a row, whoever asks.
CREATE TABLE access_log (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    user_id  BLOB NOT NULL,
    district BLOB,
    action   TEXT NOT NULL,
    resident BLOB,
    detail   TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX access_log_district ON access_log (district, seq);
CREATE INDEX access_log_resident ON access_log (resident, seq);
CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log
BEGIN
    SELECT RAISE(ABORT, 'the access log is append-only');
END;
CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log
BEGIN
    SELECT RAISE(ABORT, 'the access log is append-only');
END;
