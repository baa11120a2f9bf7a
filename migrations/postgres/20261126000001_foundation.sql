-- Foundation schema: users, the sale catalogue, orders and the idempotency-key table.
-- Timestamps are Unix epoch milliseconds (BIGINT) so that one set of queries runs
-- unchanged on Postgres and on the embedded SQLite database.

CREATE TABLE users (
    id          BIGSERIAL PRIMARY KEY,
    username    TEXT   NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- `stock` is what is left; `initial_stock` is what the sale started with, so the
-- audit can check conservation: initial_stock = stock + units in live orders.
-- `version` is the optimistic-lock counter of the version_lock defense.
CREATE TABLE products (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT   NOT NULL,
    price_cents     BIGINT NOT NULL CHECK (price_cents >= 0),
    stock           BIGINT NOT NULL,
    initial_stock   BIGINT NOT NULL,
    version         BIGINT NOT NULL DEFAULT 0,
    sale_starts_at  BIGINT
);

CREATE TABLE orders (
    id               BIGSERIAL PRIMARY KEY,
    order_no         TEXT    NOT NULL UNIQUE,
    user_id          BIGINT  NOT NULL REFERENCES users (id),
    product_id       BIGINT  NOT NULL REFERENCES products (id),
    quantity         BIGINT  NOT NULL CHECK (quantity > 0),
    amount_cents     BIGINT  NOT NULL,
    status           TEXT    NOT NULL,
    idempotency_key  TEXT    NOT NULL,
    -- TRUE when the unique_index defense was on for this insert.
    guarded          BOOLEAN NOT NULL,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);

-- The unique_index defense: one order per (user, idempotency key). It is partial
-- so that the lab can switch the defense off (rows inserted with guarded = FALSE
-- bypass it) and let the audit count the duplicates that appear.
CREATE UNIQUE INDEX orders_user_key_uniq ON orders (user_id, idempotency_key) WHERE guarded;
CREATE INDEX orders_user_idx ON orders (user_id);
CREATE INDEX orders_product_status_idx ON orders (product_id, status);

-- The idempotency_key defense: the source of truth for every key (Redis only
-- caches completed responses). `owner` identifies the request holding the lease.
CREATE TABLE idempotency_keys (
    user_id           BIGINT NOT NULL,
    idem_key          TEXT   NOT NULL,
    fingerprint       TEXT   NOT NULL,
    state             TEXT   NOT NULL CHECK (state IN ('in_progress', 'completed')),
    owner             TEXT   NOT NULL,
    lease_expires_at  BIGINT NOT NULL,
    response_status   BIGINT,
    content_type      TEXT,
    response_body     TEXT,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);
