-- Distribution (DESIGN §5): every table carries its account or workspace key, every primary key
-- and unique constraint includes it, foreign keys only join tables sharing it, and no key column
-- is ever updated. Amount columns mirror the domain: never negative, settings at most 10^12.

CREATE TABLE accounts (
    account_id                 TEXT    NOT NULL PRIMARY KEY
                                       CHECK (length(account_id) BETWEEN 1 AND 128),
    monthly_credits            BIGINT  NOT NULL CHECK (monthly_credits >= 0),
    top_up_credits             BIGINT  NOT NULL CHECK (top_up_credits >= 0),
    plan_monthly_credits       BIGINT  NULL CHECK (plan_monthly_credits BETWEEN 0 AND 1000000000000),
    plan_next_monthly_credits  BIGINT  NULL CHECK (plan_next_monthly_credits BETWEEN 0 AND 1000000000000),
    anchor_day_of_month        INTEGER NULL CHECK (anchor_day_of_month BETWEEN 1 AND 28),
    anchor_hour_utc            INTEGER NULL CHECK (anchor_hour_utc BETWEEN 0 AND 23),
    anchor_minute_utc          INTEGER NULL CHECK (anchor_minute_utc BETWEEN 0 AND 59),
    current_period             TEXT    NULL CHECK (current_period ~ '^[0-9]{4}-[0-9]{2}$'),
    period_started_at_ms       BIGINT  NULL,
    created_at_ms              BIGINT  NOT NULL,
    CHECK ((plan_monthly_credits IS NULL) = (current_period IS NULL)),
    CHECK ((anchor_day_of_month IS NULL) = (anchor_hour_utc IS NULL)
       AND (anchor_hour_utc IS NULL) = (anchor_minute_utc IS NULL))
);

CREATE TABLE workspaces (
    workspace_id                  TEXT    NOT NULL PRIMARY KEY
                                          CHECK (length(workspace_id) BETWEEN 1 AND 128),
    -- No foreign key to accounts: accounts are distributed by account, workspaces by workspace.
    owner_account_id              TEXT    NOT NULL,
    pool_size_credits             BIGINT  NOT NULL CHECK (pool_size_credits BETWEEN 0 AND 1000000000000),
    funded_pool_size_credits      BIGINT  NOT NULL CHECK (funded_pool_size_credits BETWEEN 0 AND 1000000000000),
    monthly_pool_funded           BOOLEAN NOT NULL,
    monthly_pool_credits          BIGINT  NOT NULL CHECK (monthly_pool_credits >= 0),
    top_up_pool_credits           BIGINT  NOT NULL CHECK (top_up_pool_credits >= 0),
    low_monthly_pool_credits      BIGINT  NOT NULL CHECK (low_monthly_pool_credits BETWEEN 0 AND 1000000000000),
    low_top_up_pool_credits       BIGINT  NOT NULL CHECK (low_top_up_pool_credits BETWEEN 0 AND 1000000000000),
    low_member_remaining_percent  INTEGER NOT NULL CHECK (low_member_remaining_percent BETWEEN 0 AND 100),
    created_at_ms                 BIGINT  NOT NULL
);

CREATE INDEX workspaces_by_owner ON workspaces (owner_account_id);

CREATE TABLE members (
    workspace_id               TEXT   NOT NULL REFERENCES workspaces (workspace_id),
    account_id                 TEXT   NOT NULL,
    role                       TEXT   NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'reviewer', 'client')),
    monthly_allowance_credits  BIGINT NOT NULL CHECK (monthly_allowance_credits BETWEEN 0 AND 1000000000000),
    monthly_used_credits       BIGINT NOT NULL CHECK (monthly_used_credits >= 0),
    top_up_allowance_credits   BIGINT NOT NULL CHECK (top_up_allowance_credits BETWEEN 0 AND 1000000000000),
    top_up_used_credits        BIGINT NOT NULL CHECK (top_up_used_credits >= 0),
    created_at_ms              BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, account_id),
    -- M1: reviewers and clients hold no allowance.
    CHECK (role IN ('owner', 'admin', 'editor')
           OR (monthly_allowance_credits = 0 AND top_up_allowance_credits = 0))
);

-- One workspace has exactly one owner member.
CREATE UNIQUE INDEX members_one_owner ON members (workspace_id) WHERE role = 'owner';

CREATE TABLE journal_entries (
    -- The workspace a movement touches, else the account: the distribution key.
    ledger_scope_id    TEXT   NOT NULL,
    entry_id           BIGINT GENERATED ALWAYS AS IDENTITY,
    from_bucket        TEXT   NOT NULL,
    from_owner_id      TEXT   NULL,
    to_bucket          TEXT   NOT NULL,
    to_owner_id        TEXT   NULL,
    amount_credits     BIGINT NOT NULL CHECK (amount_credits > 0),
    cause              TEXT   NOT NULL,
    reference          TEXT   NOT NULL,
    member_account_id  TEXT   NULL,
    created_at_ms      BIGINT NOT NULL,
    PRIMARY KEY (ledger_scope_id, entry_id),
    CHECK (from_bucket <> to_bucket OR from_owner_id IS DISTINCT FROM to_owner_id),
    CHECK ((from_owner_id IS NULL) = (from_bucket IN ('external', 'consumed', 'expired'))),
    CHECK ((to_owner_id IS NULL) = (to_bucket IN ('external', 'consumed', 'expired')))
);

CREATE TABLE idempotency_records (
    scope_id          TEXT   NOT NULL,
    scope_kind        TEXT   NOT NULL CHECK (scope_kind IN ('account', 'workspace')),
    idempotency_key   TEXT   NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 128),
    request           TEXT   NOT NULL,
    -- Written in the same transaction as the claim; never seen empty by another transaction.
    response          TEXT   NULL,
    created_at_ms     BIGINT NOT NULL,
    PRIMARY KEY (scope_id, scope_kind, idempotency_key)
);

CREATE INDEX idempotency_records_by_age ON idempotency_records (created_at_ms);
