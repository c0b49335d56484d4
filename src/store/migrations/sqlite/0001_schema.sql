-- The embedded store: the same tables and CHECK constraints as Postgres, in SQLite's dialect.
-- One process owns the file, so the distribution rules of the Postgres schema do not apply; the
-- journal and outbox use SQLite's own increasing row ids.

CREATE TABLE accounts (
    account_id                 TEXT    NOT NULL PRIMARY KEY CHECK (length(account_id) BETWEEN 1 AND 128),
    monthly_credits            INTEGER NOT NULL CHECK (monthly_credits >= 0),
    top_up_credits             INTEGER NOT NULL CHECK (top_up_credits >= 0),
    plan_monthly_credits       INTEGER NULL CHECK (plan_monthly_credits BETWEEN 0 AND 1000000000000),
    plan_next_monthly_credits  INTEGER NULL CHECK (plan_next_monthly_credits BETWEEN 0 AND 1000000000000),
    anchor_day_of_month        INTEGER NULL CHECK (anchor_day_of_month BETWEEN 1 AND 28),
    anchor_hour_utc            INTEGER NULL CHECK (anchor_hour_utc BETWEEN 0 AND 23),
    anchor_minute_utc          INTEGER NULL CHECK (anchor_minute_utc BETWEEN 0 AND 59),
    current_period             TEXT    NULL CHECK (current_period GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]'),
    period_started_at_ms       INTEGER NULL,
    monthly_cycle              INTEGER NOT NULL DEFAULT 0,
    next_renewal_at_ms         INTEGER NULL,
    created_at_ms              INTEGER NOT NULL,
    CHECK ((plan_monthly_credits IS NULL) = (current_period IS NULL)),
    CHECK ((anchor_day_of_month IS NULL) = (anchor_hour_utc IS NULL)
       AND (anchor_hour_utc IS NULL) = (anchor_minute_utc IS NULL))
) STRICT;
CREATE INDEX accounts_due_for_renewal ON accounts (next_renewal_at_ms) WHERE next_renewal_at_ms IS NOT NULL;

CREATE TABLE workspaces (
    workspace_id                  TEXT    NOT NULL PRIMARY KEY CHECK (length(workspace_id) BETWEEN 1 AND 128),
    owner_account_id              TEXT    NOT NULL REFERENCES accounts (account_id),
    pool_size_credits             INTEGER NOT NULL CHECK (pool_size_credits BETWEEN 0 AND 1000000000000),
    funded_pool_size_credits      INTEGER NOT NULL CHECK (funded_pool_size_credits BETWEEN 0 AND 1000000000000),
    monthly_pool_funded           INTEGER NOT NULL CHECK (monthly_pool_funded IN (0, 1)),
    monthly_pool_credits          INTEGER NOT NULL CHECK (monthly_pool_credits >= 0),
    top_up_pool_credits           INTEGER NOT NULL CHECK (top_up_pool_credits >= 0),
    monthly_cycle                 INTEGER NOT NULL DEFAULT 0,
    low_monthly_pool_credits      INTEGER NOT NULL CHECK (low_monthly_pool_credits BETWEEN 0 AND 1000000000000),
    low_top_up_pool_credits       INTEGER NOT NULL CHECK (low_top_up_pool_credits BETWEEN 0 AND 1000000000000),
    low_member_remaining_percent  INTEGER NOT NULL CHECK (low_member_remaining_percent BETWEEN 0 AND 100),
    created_at_ms                 INTEGER NOT NULL
) STRICT;
CREATE INDEX workspaces_by_owner ON workspaces (owner_account_id);

CREATE TABLE members (
    workspace_id               TEXT    NOT NULL REFERENCES workspaces (workspace_id),
    account_id                 TEXT    NOT NULL REFERENCES accounts (account_id),
    role                       TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'reviewer', 'client')),
    monthly_allowance_credits  INTEGER NOT NULL CHECK (monthly_allowance_credits BETWEEN 0 AND 1000000000000),
    monthly_used_credits       INTEGER NOT NULL CHECK (monthly_used_credits >= 0),
    top_up_allowance_credits   INTEGER NOT NULL CHECK (top_up_allowance_credits BETWEEN 0 AND 1000000000000),
    top_up_used_credits        INTEGER NOT NULL CHECK (top_up_used_credits >= 0),
    created_at_ms              INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, account_id),
    CHECK (role IN ('owner', 'admin', 'editor')
           OR (monthly_allowance_credits = 0 AND top_up_allowance_credits = 0))
) STRICT;
CREATE UNIQUE INDEX members_one_owner ON members (workspace_id) WHERE role = 'owner';

CREATE TABLE journal_entries (
    entry_id           INTEGER PRIMARY KEY AUTOINCREMENT,
    ledger_scope_id    TEXT    NOT NULL,
    from_bucket        TEXT    NOT NULL,
    from_owner_id      TEXT    NULL,
    to_bucket          TEXT    NOT NULL,
    to_owner_id        TEXT    NULL,
    amount_credits     INTEGER NOT NULL CHECK (amount_credits > 0),
    cause              TEXT    NOT NULL,
    reference          TEXT    NOT NULL,
    member_account_id  TEXT    NULL,
    created_at_ms      INTEGER NOT NULL,
    CHECK (from_bucket <> to_bucket OR from_owner_id IS NOT to_owner_id),
    CHECK ((from_owner_id IS NULL) = (from_bucket IN ('external', 'consumed', 'expired'))),
    CHECK ((to_owner_id IS NULL) = (to_bucket IN ('external', 'consumed', 'expired')))
) STRICT;
CREATE INDEX journal_entries_by_scope ON journal_entries (ledger_scope_id, entry_id);

CREATE TABLE idempotency_records (
    scope_id          TEXT    NOT NULL,
    scope_kind        TEXT    NOT NULL CHECK (scope_kind IN ('account', 'workspace')),
    idempotency_key   TEXT    NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 160),
    request           TEXT    NOT NULL,
    response          TEXT    NULL,
    created_at_ms     INTEGER NOT NULL,
    PRIMARY KEY (scope_id, scope_kind, idempotency_key)
) STRICT;
CREATE INDEX idempotency_records_by_age ON idempotency_records (created_at_ms);

CREATE TABLE charges (
    scope_id                  TEXT    NOT NULL,
    scope_kind                TEXT    NOT NULL CHECK (scope_kind IN ('workspace', 'personal')),
    charge_key                TEXT    NOT NULL CHECK (length(charge_key) BETWEEN 1 AND 128),
    account_id                TEXT    NOT NULL,
    state                     TEXT    NOT NULL CHECK (state IN ('held', 'captured', 'released', 'expired')),
    monthly_credits           INTEGER NOT NULL CHECK (monthly_credits >= 0),
    top_up_credits            INTEGER NOT NULL CHECK (top_up_credits >= 0),
    refunded_monthly_credits  INTEGER NOT NULL CHECK (refunded_monthly_credits BETWEEN 0 AND monthly_credits),
    refunded_top_up_credits   INTEGER NOT NULL CHECK (refunded_top_up_credits BETWEEN 0 AND top_up_credits),
    forfeited_credits         INTEGER NOT NULL CHECK (forfeited_credits >= 0),
    cycle                     INTEGER NOT NULL,
    created_at_ms             INTEGER NOT NULL,
    expires_at_ms             INTEGER NULL,
    PRIMARY KEY (scope_id, scope_kind, charge_key),
    CHECK (state <> 'held' OR expires_at_ms IS NOT NULL),
    CHECK (state = 'captured' OR (refunded_monthly_credits = 0 AND refunded_top_up_credits = 0))
) STRICT;
CREATE INDEX charges_open_by_member ON charges (scope_id, scope_kind, account_id, created_at_ms) WHERE state = 'held';
CREATE INDEX charges_open_by_expiry ON charges (expires_at_ms) WHERE state = 'held';

CREATE TABLE notifications (
    sequence           INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id         TEXT    NOT NULL,
    kind               TEXT    NOT NULL CHECK (kind IN ('low_balance', 'renewal_failed', 'renewal_succeeded',
                                                        'overage_started', 'member_assigned_to_profile',
                                                        'reservation_expired')),
    workspace_id       TEXT    NULL,
    member_account_id  TEXT    NULL,
    payload            TEXT    NOT NULL,
    created_at_ms      INTEGER NOT NULL
) STRICT;
