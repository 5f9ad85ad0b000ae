-- A revoked phone seals what it never synced under its device's export key (issue
-- 12), made at enrolment and known only to the phone and the server; enrolled again,
-- it hands the export over once. Devices enrolled before this migration have no key:
-- a revoked one of them deletes its data as before.
ALTER TABLE devices ADD COLUMN export_key BLOB;
ALTER TABLE devices ADD COLUMN export_recovered_at INTEGER;
