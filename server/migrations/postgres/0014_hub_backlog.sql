-- What each station hub still holds for the district server, as it said at its last
-- call (issue 15): shown to coordinators on the hubs page, so that a hub whose outbox
-- does not drain is noticed.
ALTER TABLE hubs ADD COLUMN waiting BIGINT;
ALTER TABLE hubs ADD COLUMN oldest_waiting_at BIGINT;
