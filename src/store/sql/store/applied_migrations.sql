-- The migrations sqlx recorded as applied.
SELECT version FROM _sqlx_migrations WHERE success
