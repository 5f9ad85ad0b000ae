-- Closed case files (issue 16): a resident who moved away, is in hospital or died.
-- `documents.closed` keeps closed files out of what phones hold; the resident rows
-- carry the closure for the lists. Written from the document with every append
-- (`server rebuild-projections` rewrites them).
ALTER TABLE documents ADD COLUMN closed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE resident_rows ADD COLUMN closed_reason TEXT;
ALTER TABLE resident_rows ADD COLUMN closed_note TEXT;
ALTER TABLE resident_rows ADD COLUMN closed_at INTEGER;
ALTER TABLE resident_rows ADD COLUMN closed_by BLOB;
