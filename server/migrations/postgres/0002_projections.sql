-- Read-side projections of the resident case files: what the coordinator pages,
-- statistics and exports filter, count and export on. An append writes them in its
-- own transaction; `SqlStore::rebuild_projections` rewrites them from the documents.
-- Catalogs are not projected. Visit and follow-up ids are unique only within their
-- case file as far as the rules go, so their keys start with the resident.

CREATE TABLE resident_rows (
    id                BYTEA PRIMARY KEY,   -- the case file's id
    district          BYTEA NOT NULL,
    station           BYTEA NOT NULL,
    name              TEXT NOT NULL,
    address           TEXT NOT NULL,
    phone             TEXT NOT NULL,
    birth_year        BIGINT,
    living_situation  TEXT,                -- a LivingSituation code
    emergency_contact TEXT NOT NULL,
    needs             TEXT NOT NULL,
    risk_level        TEXT,                -- a RiskLevel code
    visit_every_days  BIGINT,
    last_visit_at     BIGINT,              -- start of the latest live visit
    live_visits       BIGINT NOT NULL,     -- visits not tombstoned
    open_follow_ups   BIGINT NOT NULL,
    heads             BYTEA NOT NULL       -- the document heads these rows show
);
CREATE INDEX resident_rows_place ON resident_rows (district, station);
CREATE INDEX resident_rows_due ON resident_rows (station, last_visit_at);

CREATE TABLE visit_rows (
    resident          BYTEA NOT NULL,
    id                BYTEA NOT NULL,
    district          BYTEA NOT NULL,
    station           BYTEA NOT NULL,      -- the resident's station now
    volunteer         BYTEA NOT NULL,      -- user id
    project           BYTEA NOT NULL,
    unit              BYTEA,
    started_at        BIGINT NOT NULL,     -- device clock, Unix ms
    ended_at          BIGINT NOT NULL,
    duration_minutes  BIGINT NOT NULL,     -- whole minutes, rounded down
    wellbeing         TEXT NOT NULL,       -- a Wellbeing code
    systolic          BIGINT,
    diastolic         BIGINT,
    blood_sugar_dmmol BIGINT,
    remarks           TEXT NOT NULL,
    notes             TEXT NOT NULL,
    follow_up_needed  BOOLEAN NOT NULL,
    tombstoned        BOOLEAN NOT NULL,
    review_status     TEXT NOT NULL,       -- 'pending' until reviewed
    reviewer          BYTEA,               -- NULL until reviewed
    reviewed_at       BIGINT,
    review_comment    TEXT,
    hazards_found     BIGINT NOT NULL,
    hazards_fixed     BIGINT NOT NULL,     -- of those, fixed on the spot
    PRIMARY KEY (resident, id)
);
CREATE INDEX visit_rows_id ON visit_rows (id);
CREATE INDEX visit_rows_district ON visit_rows (district, started_at);
CREATE INDEX visit_rows_station ON visit_rows (station, started_at);
CREATE INDEX visit_rows_volunteer ON visit_rows (volunteer, started_at);
CREATE INDEX visit_rows_project ON visit_rows (project, started_at);
CREATE INDEX visit_rows_review ON visit_rows (district, review_status, started_at);

-- One row per service given in a visit, in the visit's order.
CREATE TABLE visit_services (
    resident     BYTEA NOT NULL,
    visit        BYTEA NOT NULL,
    position     BIGINT NOT NULL,
    service_type BYTEA NOT NULL,
    PRIMARY KEY (resident, visit, position)
);
CREATE INDEX visit_services_type ON visit_services (service_type);

-- One row per hazard found in a visit, in the visit's order.
CREATE TABLE visit_hazards (
    resident      BYTEA NOT NULL,
    visit         BYTEA NOT NULL,
    position      BIGINT NOT NULL,
    hazard_type   BYTEA NOT NULL,
    severity      TEXT NOT NULL,           -- a Severity code
    fixed_on_spot BOOLEAN NOT NULL,
    note          TEXT NOT NULL,
    PRIMARY KEY (resident, visit, position)
);
CREATE INDEX visit_hazards_type ON visit_hazards (hazard_type);

CREATE TABLE follow_up_rows (
    resident    BYTEA NOT NULL,
    id          BYTEA NOT NULL,
    district    BYTEA NOT NULL,
    station     BYTEA NOT NULL,
    visit       BYTEA,                     -- the visit it was opened from
    title       TEXT NOT NULL,
    status      TEXT NOT NULL,             -- 'open' or 'closed'
    owner       BYTEA,
    deadline    BIGINT,
    opened_by   BYTEA NOT NULL,
    opened_at   BIGINT NOT NULL,
    closed_by   BYTEA,
    closed_at   BIGINT,
    resolution  TEXT NOT NULL,
    comments    BIGINT NOT NULL,           -- how many
    PRIMARY KEY (resident, id)
);
CREATE INDEX follow_up_rows_district ON follow_up_rows (district, status, deadline);
CREATE INDEX follow_up_rows_station ON follow_up_rows (station, status, deadline);
CREATE INDEX follow_up_rows_owner ON follow_up_rows (owner, status);
