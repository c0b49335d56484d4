-- The hot path: charges (one-shot consumptions and two-phase holds) and the monthly cycle
-- counters that tell whether a charge's monthly credits would have expired.

ALTER TABLE accounts ADD COLUMN monthly_cycle BIGINT NOT NULL DEFAULT 0;
ALTER TABLE workspaces ADD COLUMN monthly_cycle BIGINT NOT NULL DEFAULT 0;

-- Hold operations share the caller's hold key; their records are stored as "<Operation>/<key>".
ALTER TABLE idempotency_records DROP CONSTRAINT idempotency_records_idempotency_key_check;
ALTER TABLE idempotency_records ADD CONSTRAINT idempotency_records_idempotency_key_check
    CHECK (length(idempotency_key) BETWEEN 1 AND 160);

CREATE TABLE charges (
    -- The workspace, or the account for personal-context charges: the distribution key.
    scope_id                  TEXT   NOT NULL,
    scope_kind                TEXT   NOT NULL CHECK (scope_kind IN ('workspace', 'personal')),
    charge_key                TEXT   NOT NULL CHECK (length(charge_key) BETWEEN 1 AND 128),
    account_id                TEXT   NOT NULL,
    state                     TEXT   NOT NULL CHECK (state IN ('held', 'captured', 'released', 'expired')),
    monthly_credits           BIGINT NOT NULL CHECK (monthly_credits >= 0),
    top_up_credits            BIGINT NOT NULL CHECK (top_up_credits >= 0),
    refunded_monthly_credits  BIGINT NOT NULL CHECK (refunded_monthly_credits BETWEEN 0 AND monthly_credits),
    refunded_top_up_credits   BIGINT NOT NULL CHECK (refunded_top_up_credits BETWEEN 0 AND top_up_credits),
    forfeited_credits         BIGINT NOT NULL CHECK (forfeited_credits >= 0),
    cycle                     BIGINT NOT NULL,
    created_at_ms             BIGINT NOT NULL,
    expires_at_ms             BIGINT NULL,
    PRIMARY KEY (scope_id, scope_kind, charge_key),
    CHECK (state <> 'held' OR expires_at_ms IS NOT NULL),
    CHECK (state = 'captured' OR (refunded_monthly_credits = 0 AND refunded_top_up_credits = 0))
);

CREATE INDEX charges_open_by_member ON charges (scope_id, scope_kind, account_id, created_at_ms) WHERE state = 'held';
CREATE INDEX charges_open_by_expiry ON charges (expires_at_ms) WHERE state = 'held';
