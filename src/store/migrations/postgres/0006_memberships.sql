-- Memberships are numbered per workspace, so an account removed and added again starts a new
-- membership whose usage an earlier membership's refunds cannot lower. Rows from before this
-- migration are all membership 0 and keep matching each other.
ALTER TABLE workspaces ADD COLUMN memberships BIGINT NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN membership BIGINT NOT NULL DEFAULT 0;
ALTER TABLE charges ADD COLUMN membership BIGINT NOT NULL DEFAULT 0;
