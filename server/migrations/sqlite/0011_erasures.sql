-- Erased case files (issue 16): a resident's personal data removed from the server at
-- their request or by the retention rule. Only the document's id, district, time,
-- eraser and reason stay, so no phone's old copy can make the document again.
CREATE TABLE erasures (
    doc      BLOB PRIMARY KEY,
    district BLOB NOT NULL,
    at       INTEGER NOT NULL,
    by_user  BLOB,
    reason   TEXT NOT NULL
) STRICT;
