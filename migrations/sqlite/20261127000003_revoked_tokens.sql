-- Logout revokes a login token: its id is kept here until it would have expired
-- anyway; every instance mirrors the list in memory (the SQLite twin of the
-- Postgres migration of the same name).
CREATE TABLE revoked_tokens (
    jti         TEXT   PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
