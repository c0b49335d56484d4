-- Stream positions are handed out after commit, in one place: the publisher holding the
-- notification_stream row (lock.postgres.sql) numbers every committed, unpublished event in
-- write order.
UPDATE notifications SET position = $1 + pending.rank
FROM (SELECT scope_id AS pending_scope, sequence AS pending_sequence,
             row_number() OVER (ORDER BY sequence) AS rank
      FROM notifications WHERE position IS NULL) AS pending
WHERE notifications.scope_id = pending.pending_scope AND notifications.sequence = pending.pending_sequence
