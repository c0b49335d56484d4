SELECT last_position FROM notification_stream WHERE stream_id = 1
