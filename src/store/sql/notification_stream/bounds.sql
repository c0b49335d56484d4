SELECT (SELECT last_position FROM notification_stream WHERE stream_id = 1),
(SELECT MIN(position) FROM notifications WHERE position IS NOT NULL)
