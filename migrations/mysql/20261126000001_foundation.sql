-- Foundation schema, MySQL/InnoDB dialect (docs/mysql.md): users, the sale
-- catalogue, orders and the idempotency-key table. Timestamps are Unix epoch
-- milliseconds (BIGINT), as on the other engines.
--
-- Every table is utf8mb4 with the binary collation: MySQL's default collations
-- compare case-insensitively, which would make the idempotency keys "abc" and
-- "ABC" collide in a unique index. Text is VARCHAR, never TEXT: an InnoDB index
-- needs a length, and sqlx's Any driver reads MySQL's TEXT columns as bytes.
-- Foreign keys are table constraints (MySQL ignores a REFERENCES written on the
-- column).

CREATE TABLE users (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username    VARCHAR(255) NOT NULL UNIQUE,
    created_at  BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- `stock` is what is left; `initial_stock` is what the sale started with, so the
-- audit can check conservation: initial_stock = stock + units in live orders.
-- `version` is the optimistic-lock counter of the version_lock defense.
CREATE TABLE products (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name            VARCHAR(100) NOT NULL,
    price_cents     BIGINT NOT NULL CHECK (price_cents >= 0),
    stock           BIGINT NOT NULL,
    initial_stock   BIGINT NOT NULL,
    version         BIGINT NOT NULL DEFAULT 0,
    sale_starts_at  BIGINT
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE orders (
    id               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    order_no         VARCHAR(64)  NOT NULL UNIQUE,
    user_id          BIGINT       NOT NULL,
    product_id       BIGINT       NOT NULL,
    quantity         BIGINT       NOT NULL CHECK (quantity > 0),
    amount_cents     BIGINT       NOT NULL,
    status           VARCHAR(32)  NOT NULL,
    idempotency_key  VARCHAR(255) NOT NULL,
    -- TRUE when the unique_index defense was on for this insert.
    guarded          BOOLEAN      NOT NULL,
    created_at       BIGINT       NOT NULL,
    updated_at       BIGINT       NOT NULL,
    -- The unique_index defense, the MySQL way: Postgres and SQLite have a
    -- partial unique index (… WHERE guarded); MySQL has none, so this column is
    -- the key when the row is guarded and NULL otherwise, and a unique index on
    -- it ignores the NULLs. Rows inserted with the defense off bypass it, and the
    -- audit counts the duplicates that appear.
    guarded_key      VARCHAR(255) AS (IF(guarded, idempotency_key, NULL)) STORED,
    UNIQUE KEY orders_user_key_uniq (user_id, guarded_key),
    KEY orders_user_idx (user_id),
    KEY orders_product_status_idx (product_id, status),
    FOREIGN KEY (user_id) REFERENCES users (id),
    FOREIGN KEY (product_id) REFERENCES products (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The idempotency_key defense: the source of truth for every key (Redis only
-- caches completed responses). `owner` identifies the request holding the lease.
CREATE TABLE idempotency_keys (
    user_id           BIGINT       NOT NULL,
    idem_key          VARCHAR(255) NOT NULL,
    fingerprint       VARCHAR(128) NOT NULL,
    state             VARCHAR(32)  NOT NULL CHECK (state IN ('in_progress', 'completed')),
    owner             VARCHAR(64)  NOT NULL,
    lease_expires_at  BIGINT       NOT NULL,
    response_status   BIGINT,
    content_type      VARCHAR(255),
    -- the stored answer: JSON of an order, a payment or a problem (a few hundred bytes)
    response_body     VARCHAR(12000),
    created_at        BIGINT       NOT NULL,
    expires_at        BIGINT       NOT NULL,
    PRIMARY KEY (user_id, idem_key),
    KEY idempotency_keys_expiry_idx (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
