-- The resident list (issue 12) searches and flags residents whose profile holds
-- conflicting values. Rows written before this migration say 0 until their next
-- change or `server rebuild-projections`; `server check` lists the ones that differ.
ALTER TABLE resident_rows ADD COLUMN profile_conflicts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX resident_rows_name ON resident_rows (district, name);
