-- The notification stream (see the Postgres migration of the same name).

ALTER TABLE notifications ADD COLUMN position INTEGER NULL;
CREATE UNIQUE INDEX notifications_by_position ON notifications (position) WHERE position IS NOT NULL;
CREATE INDEX notifications_unpublished ON notifications (sequence) WHERE position IS NULL;

CREATE TABLE notification_stream (
    stream_id      INTEGER PRIMARY KEY CHECK (stream_id = 1),
    last_position  INTEGER NOT NULL CHECK (last_position >= 0)
) STRICT;
INSERT INTO notification_stream (stream_id, last_position) VALUES (1, 0);
