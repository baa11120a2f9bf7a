-- Logout revokes a login token: its id is kept here until it would have expired
-- anyway; every instance mirrors the list in memory (docs/reliability.md).
CREATE TABLE revoked_tokens (
    jti         VARCHAR(128) NOT NULL PRIMARY KEY,
    expires_at  BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
