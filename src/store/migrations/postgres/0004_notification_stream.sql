-- The notification stream. `sequence` is taken before commit, so transactions can commit out of
-- its order; stream positions are instead handed out after commit, by one publisher at a time
-- (an advisory lock), densely and in the order it finds the committed events.

ALTER TABLE notifications ADD COLUMN position BIGINT NULL;
CREATE UNIQUE INDEX notifications_by_position ON notifications (position) WHERE position IS NOT NULL;
CREATE INDEX notifications_unpublished ON notifications (sequence) WHERE position IS NULL;

-- The last position ever handed out, kept when old events are pruned (to tell a cursor that
-- fell behind retention from one that is simply up to date).
CREATE TABLE notification_stream (
    stream_id      SMALLINT PRIMARY KEY CHECK (stream_id = 1),
    last_position  BIGINT   NOT NULL CHECK (last_position >= 0)
);
INSERT INTO notification_stream (stream_id, last_position) VALUES (1, 0);
