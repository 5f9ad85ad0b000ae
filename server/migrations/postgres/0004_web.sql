-- The coordinators' web pages: sign-in sessions, and the Automerge actor the server
-- writes as on behalf of each user's edits made on the web (reviews).

-- A signed-in browser. Only a hash of the cookie's token is kept, so a copy of the
-- database signs nobody in. The CSRF token is sent in every form of the session.
CREATE TABLE web_sessions (
    token_hash   BYTEA PRIMARY KEY,         -- SHA-256 of the cookie's token
    user_id      BYTEA NOT NULL REFERENCES users (id),
    csrf         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL          -- absolute: sign in again after it
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

-- One actor per user for the changes the server makes for them from the web. Actors
-- are 16 random bytes, like the ones enrolment registers to devices.
CREATE TABLE web_actors (
    user_id BYTEA PRIMARY KEY REFERENCES users (id),
    actor   BYTEA NOT NULL UNIQUE
);

-- The visit log pages through a district's or a station's visits newest first with a
-- keyset on (started_at, resident, id): indexes in exactly that order let a page stop
-- after fifty rows instead of sorting every visit. They replace the shorter ones.
CREATE INDEX visit_rows_district_log ON visit_rows (district, started_at, resident, id);
CREATE INDEX visit_rows_station_log ON visit_rows (station, started_at, resident, id);
DROP INDEX visit_rows_district;
DROP INDEX visit_rows_station;
