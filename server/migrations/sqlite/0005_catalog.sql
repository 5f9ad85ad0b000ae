-- The district catalogs as rows, for the coordinator pages' filters and statistics
-- (a visit's unit belongs to an alliance; names in both languages). Written with every
-- append of a catalog document, in its transaction, like the other projections.
CREATE TABLE catalog_rows (
    district BLOB NOT NULL,
    kind     TEXT NOT NULL,      -- a CatalogKind code: stations, alliances, units, …
    id       BLOB NOT NULL,
    name     TEXT NOT NULL,
    name_en  TEXT NOT NULL,
    parent   BLOB,               -- a unit's or project's alliance
    archived INTEGER NOT NULL,   -- 0 or 1
    PRIMARY KEY (district, kind, id)
) STRICT;
CREATE INDEX catalog_rows_parent ON catalog_rows (parent);
