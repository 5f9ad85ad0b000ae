-- Read-side projections of the resident case files: what the coordinator pages,
-- statistics and exports filter, count and export on. An append writes them in its
-- own transaction; `SqlStore::rebuild_projections` rewrites them from the documents.
-- Catalogs are not projected. Visit and follow-up ids are unique only within their
-- case file as far as the rules go, so their keys start with the resident.

CREATE TABLE resident_rows (
    id                BLOB PRIMARY KEY,    -- the case file's id
    district          BLOB NOT NULL,
    station           BLOB NOT NULL,
    name              TEXT NOT NULL,
    address           TEXT NOT NULL,
    phone             TEXT NOT NULL,
    birth_year        INTEGER,
    living_situation  TEXT,                -- a LivingSituation code
    emergency_contact TEXT NOT NULL,
    needs             TEXT NOT NULL,
    risk_level        TEXT,                -- a RiskLevel code
    visit_every_days  INTEGER,
    last_visit_at     INTEGER,             -- start of the latest live visit
    live_visits       INTEGER NOT NULL,    -- visits not tombstoned
    open_follow_ups   INTEGER NOT NULL,
    heads             BLOB NOT NULL        -- the document heads these rows show
) STRICT;
CREATE INDEX resident_rows_place ON resident_rows (district, station);
CREATE INDEX resident_rows_due ON resident_rows (station, last_visit_at);

CREATE TABLE visit_rows (
    resident          BLOB NOT NULL,
    id                BLOB NOT NULL,
    district          BLOB NOT NULL,
    station           BLOB NOT NULL,       -- the resident's station now
    volunteer         BLOB NOT NULL,       -- user id
    project           BLOB NOT NULL,
    unit              BLOB,
    started_at        INTEGER NOT NULL,    -- device clock, Unix ms
    ended_at          INTEGER NOT NULL,
    duration_minutes  INTEGER NOT NULL,    -- whole minutes, rounded down
    wellbeing         TEXT NOT NULL,       -- a Wellbeing code
    systolic          INTEGER,
    diastolic         INTEGER,
    blood_sugar_dmmol INTEGER,
    remarks           TEXT NOT NULL,
    notes             TEXT NOT NULL,
    follow_up_needed  INTEGER NOT NULL,    -- 0 or 1
    tombstoned        INTEGER NOT NULL,    -- 0 or 1
    review_status     TEXT NOT NULL,       -- 'pending' until reviewed
    reviewer          BLOB,                -- NULL until reviewed
    reviewed_at       INTEGER,
    review_comment    TEXT,
    hazards_found     INTEGER NOT NULL,
    hazards_fixed     INTEGER NOT NULL,    -- of those, fixed on the spot
    PRIMARY KEY (resident, id)
) STRICT;
CREATE INDEX visit_rows_id ON visit_rows (id);
CREATE INDEX visit_rows_district ON visit_rows (district, started_at);
CREATE INDEX visit_rows_station ON visit_rows (station, started_at);
CREATE INDEX visit_rows_volunteer ON visit_rows (volunteer, started_at);
CREATE INDEX visit_rows_project ON visit_rows (project, started_at);
CREATE INDEX visit_rows_review ON visit_rows (district, review_status, started_at);

-- One row per service given in a visit, in the visit's order.
CREATE TABLE visit_services (
    resident     BLOB NOT NULL,
    visit        BLOB NOT NULL,
    position     INTEGER NOT NULL,
    service_type BLOB NOT NULL,
    PRIMARY KEY (resident, visit, position)
) STRICT;
CREATE INDEX visit_services_type ON visit_services (service_type);

-- One row per hazard found in a visit, in the visit's order.
CREATE TABLE visit_hazards (
    resident      BLOB NOT NULL,
    visit         BLOB NOT NULL,
    position      INTEGER NOT NULL,
    hazard_type   BLOB NOT NULL,
    severity      TEXT NOT NULL,           -- a Severity code
    fixed_on_spot INTEGER NOT NULL,        -- 0 or 1
    note          TEXT NOT NULL,
    PRIMARY KEY (resident, visit, position)
) STRICT;
CREATE INDEX visit_hazards_type ON visit_hazards (hazard_type);

CREATE TABLE follow_up_rows (
    resident    BLOB NOT NULL,
    id          BLOB NOT NULL,
    district    BLOB NOT NULL,
    station     BLOB NOT NULL,
    visit       BLOB,                      -- the visit it was opened from
    title       TEXT NOT NULL,
    status      TEXT NOT NULL,             -- 'open' or 'closed'
    owner       BLOB,
    deadline    INTEGER,
    opened_by   BLOB NOT NULL,
    opened_at   INTEGER NOT NULL,
    closed_by   BLOB,
    closed_at   INTEGER,
    resolution  TEXT NOT NULL,
    comments    INTEGER NOT NULL,          -- how many
    PRIMARY KEY (resident, id)
) STRICT;
CREATE INDEX follow_up_rows_district ON follow_up_rows (district, status, deadline);
CREATE INDEX follow_up_rows_station ON follow_up_rows (station, status, deadline);
CREATE INDEX follow_up_rows_owner ON follow_up_rows (owner, status);
