-- Erased case files (issue 16): a resident's personal data removed from the server at
-- their request or by the retention rule. Only the document's id, district, time,
-- eraser and reason stay, so no phone's old copy can make the document again.
CREATE TABLE erasures (
    doc      BYTEA PRIMARY KEY,
    district BYTEA NOT NULL,
    at       BIGINT NOT NULL,
    by_user  BYTEA,
    reason   TEXT NOT NULL
);
