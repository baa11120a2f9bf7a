-- Payments, provider events, the outbox and rewards (the payment issue).
-- SQLite twin of migrations/postgres/20261126000002_payments.sql.

-- One row per charge attempt. A payment that is not FAILED is "active"; the
-- unique_index defense allows one active payment per order (guarded rows only,
-- so the lab can switch it off and watch double charges appear).
CREATE TABLE payments (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_no       TEXT    NOT NULL UNIQUE,
    order_no         TEXT    NOT NULL REFERENCES orders (order_no),
    user_id          BIGINT  NOT NULL,
    amount_cents     BIGINT  NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('PROCESSING', 'SUCCEEDED', 'FAILED')),
    provider_txn_id  TEXT,
    -- a success that arrived for an order already CLOSED: the money must go back
    needs_refund     BOOLEAN NOT NULL DEFAULT FALSE,
    guarded          BOOLEAN NOT NULL,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);
CREATE UNIQUE INDEX payments_order_active_uniq ON payments (order_no)
    WHERE guarded = 1 AND status <> 'FAILED';
CREATE INDEX payments_order_idx ON payments (order_no);

-- Every provider callback that was applied (or ignored), by event id. The
-- callback_dedup defense: one row per event id (guarded rows only).
CREATE TABLE payment_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT    NOT NULL,
    payment_no   TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    result       TEXT    NOT NULL CHECK (result IN ('applied', 'ignored')),
    guarded      BOOLEAN NOT NULL,
    received_at  BIGINT  NOT NULL
);
CREATE UNIQUE INDEX payment_events_event_uniq ON payment_events (event_id) WHERE guarded = 1;

-- Transactional outbox: the PAID transition writes its "order paid" message here
-- in the same transaction; a relay publishes it (at least once).
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id    TEXT   NOT NULL UNIQUE,
    topic         TEXT   NOT NULL,
    payload       TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    published_at  BIGINT
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;

-- The message_dedup defense: a consumer records each message id in the same
-- transaction as its effect.
CREATE TABLE processed_messages (
    consumer      TEXT   NOT NULL,
    message_id    TEXT   NOT NULL,
    processed_at  BIGINT NOT NULL,
    PRIMARY KEY (consumer, message_id)
);

-- Loyalty points awarded for paid orders (one row per award).
CREATE TABLE rewards (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    order_no    TEXT   NOT NULL,
    user_id     BIGINT NOT NULL,
    points      BIGINT NOT NULL,
    message_id  TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX rewards_order_idx ON rewards (order_no);
