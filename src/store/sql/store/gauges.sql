-- What the metrics sampler reports: open holds, and when the oldest unpublished event committed.
SELECT (SELECT COUNT(*) FROM charges WHERE state = 'held'),
(SELECT MIN(created_at_ms) FROM notifications WHERE position IS NULL)
