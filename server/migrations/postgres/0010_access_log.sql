-- Who read what (issue 16): every view of a resident's page, every export of visits and
-- every refused batch opened, with the reader, the time and the resident concerned.
-- Coordinators and admins read it on /web/access-log. It is append-only: the triggers
-- refuse to change, delete or truncate rows, whoever asks.
CREATE TABLE access_log (
    seq      BIGSERIAL PRIMARY KEY,
    at       BIGINT NOT NULL,
    user_id  BYTEA NOT NULL,
    district BYTEA,
    action   TEXT NOT NULL,
    resident BYTEA,
    detail   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX access_log_district ON access_log (district, seq);
CREATE INDEX access_log_resident ON access_log (resident, seq);
CREATE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the access log is append-only';
END
$$;
CREATE TRIGGER access_log_no_change BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION access_log_append_only();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only();
