UPDATE notification_stream SET last_position = last_position + $1 WHERE stream_id = 1
