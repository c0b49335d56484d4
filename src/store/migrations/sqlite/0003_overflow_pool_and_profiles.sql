-- The enterprise overflow pool and product profiles (C1 third link, C4).
-- Every new table carries the workspace key in its primary key (DESIGN §5).

-- The pool's state, as JSON of the domain's OverflowPool: read and written with the workspace
-- row it belongs to, which every draw locks anyway. The credits it has lent out are a column,
-- because VerifyLedger adds them up in SQL.
ALTER TABLE workspaces ADD COLUMN overflow_pool TEXT NULL;
ALTER TABLE workspaces ADD COLUMN overflow_lent_credits INTEGER NOT NULL DEFAULT 0
    CHECK (overflow_lent_credits >= 0);
ALTER TABLE workspaces ADD COLUMN low_overflow_units INTEGER NOT NULL DEFAULT 0
    CHECK (low_overflow_units BETWEEN 0 AND 1000000000000);

-- Closed contract periods, kept for reports after a new period starts.
CREATE TABLE overflow_periods (
    workspace_id      TEXT   NOT NULL REFERENCES workspaces (workspace_id),
    cycle             INTEGER NOT NULL,
    period            TEXT   NOT NULL,
    quota_units       INTEGER NOT NULL,
    used_units        INTEGER NOT NULL,
    overage_units     INTEGER NOT NULL,
    started_at_ms     INTEGER NOT NULL,
    ended_at_ms       INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, cycle)
) STRICT;

-- What a charge drew from the overflow pool: credits as columns (VerifyLedger sums held
-- credits), units as JSON of the domain's OverflowTake.
ALTER TABLE charges ADD COLUMN overflow_credits INTEGER NOT NULL DEFAULT 0 CHECK (overflow_credits >= 0);
ALTER TABLE charges ADD COLUMN refunded_overflow_credits INTEGER NOT NULL DEFAULT 0
    CHECK (refunded_overflow_credits BETWEEN 0 AND overflow_credits);
ALTER TABLE charges ADD COLUMN overflow_take TEXT NULL;

-- Which link of the draw chain a movement belongs to, and the overflow units it moved: the
-- usage report adds these up.
ALTER TABLE journal_entries ADD COLUMN part TEXT NULL CHECK (part IN ('monthly', 'top_up', 'overflow'));
ALTER TABLE journal_entries ADD COLUMN overflow_units INTEGER NOT NULL DEFAULT 0 CHECK (overflow_units >= 0);
ALTER TABLE journal_entries ADD COLUMN overage_units INTEGER NOT NULL DEFAULT 0 CHECK (overage_units >= 0);
CREATE INDEX journal_entries_by_time ON journal_entries (ledger_scope_id, created_at_ms);

CREATE TABLE profiles (
    workspace_id      TEXT    NOT NULL REFERENCES workspaces (workspace_id),
    profile_id        TEXT    NOT NULL CHECK (length(profile_id) BETWEEN 1 AND 128),
    name              TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    pool_access       INTEGER NOT NULL,
    notify_on_assign  INTEGER NOT NULL,
    requires_consent  INTEGER NOT NULL,
    created_at_ms     INTEGER  NOT NULL,
    PRIMARY KEY (workspace_id, profile_id)
) STRICT;

CREATE TABLE profile_members (
    workspace_id  TEXT NOT NULL,
    profile_id    TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    PRIMARY KEY (workspace_id, profile_id, account_id),
    FOREIGN KEY (workspace_id, profile_id) REFERENCES profiles (workspace_id, profile_id) ON DELETE CASCADE,
    FOREIGN KEY (workspace_id, account_id) REFERENCES members (workspace_id, account_id) ON DELETE CASCADE
) STRICT;

CREATE INDEX profile_members_by_member ON profile_members (workspace_id, account_id);
