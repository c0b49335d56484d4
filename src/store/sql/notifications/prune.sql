DELETE FROM notifications WHERE position IS NOT NULL AND created_at_ms < $1
