-- The district catalogs as rows, for the coordinator pages' filters and statistics
-- (a visit's unit belongs to an alliance; names in both languages). Written with every
-- append of a catalog document, in its transaction, like the other projections.
CREATE TABLE catalog_rows (
    district BYTEA NOT NULL,
    kind     TEXT NOT NULL,      -- a CatalogKind code: stations, alliances, units, …
    id       BYTEA NOT NULL,
    name     TEXT NOT NULL,
    name_en  TEXT NOT NULL,
    parent   BYTEA,              -- a unit's or project's alliance
    archived BOOLEAN NOT NULL,
    PRIMARY KEY (district, kind, id)
);
CREATE INDEX catalog_rows_parent ON catalog_rows (parent);
