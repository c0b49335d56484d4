-- Billing cycles: when the scheduler renews an anchored account next, and the transactional
-- outbox that notifications are written to in the same transaction as their cause.

ALTER TABLE accounts ADD COLUMN next_renewal_at_ms BIGINT NULL;
CREATE INDEX accounts_due_for_renewal ON accounts (next_renewal_at_ms) WHERE next_renewal_at_ms IS NOT NULL;

CREATE TABLE notifications (
    -- The account concerned (the owner, for workspace events): the distribution key.
    account_id         TEXT   NOT NULL,
    sequence           BIGINT GENERATED ALWAYS AS IDENTITY,
    kind               TEXT   NOT NULL CHECK (kind IN ('low_balance', 'renewal_failed', 'renewal_succeeded',
                                                       'overage_started', 'member_assigned_to_profile',
                                                       'reservation_expired')),
    workspace_id       TEXT   NULL,
    member_account_id  TEXT   NULL,
    payload            TEXT   NOT NULL,
    created_at_ms      BIGINT NOT NULL,
    PRIMARY KEY (account_id, sequence)
);

CREATE INDEX notifications_by_sequence ON notifications (sequence);
