-- Payments, provider events, the outbox and rewards (the payment issue),
-- MySQL/InnoDB dialect (docs/mysql.md).

-- One row per charge attempt. A payment that is not FAILED is "active"; the
-- unique_index defense allows one active payment per order (guarded rows only,
-- so the lab can switch it off and watch double charges appear). MySQL has no
-- partial index: `active_order_no` is the order number while the payment is
-- guarded and active, NULL otherwise, and its unique index ignores the NULLs.
CREATE TABLE payments (
    id               BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    payment_no       VARCHAR(64) NOT NULL UNIQUE,
    order_no         VARCHAR(64) NOT NULL,
    user_id          BIGINT      NOT NULL,
    amount_cents     BIGINT      NOT NULL,
    status           VARCHAR(32) NOT NULL CHECK (status IN ('PROCESSING', 'SUCCEEDED', 'FAILED')),
    provider_txn_id  VARCHAR(128),
    -- a success that arrived for an order already CLOSED: the money must go back
    needs_refund     BOOLEAN     NOT NULL DEFAULT FALSE,
    guarded          BOOLEAN     NOT NULL,
    created_at       BIGINT      NOT NULL,
    updated_at       BIGINT      NOT NULL,
    active_order_no  VARCHAR(64) AS (IF(guarded AND status <> 'FAILED', order_no, NULL)) STORED,
    UNIQUE KEY payments_order_active_uniq (active_order_no),
    KEY payments_order_idx (order_no),
    FOREIGN KEY (order_no) REFERENCES orders (order_no)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every provider callback that was applied (or ignored), by event id. The
-- callback_dedup defense: one row per event id (guarded rows only; the same
-- generated-column way as above).
CREATE TABLE payment_events (
    id                BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id          VARCHAR(128) NOT NULL,
    payment_no        VARCHAR(64)  NOT NULL,
    status            VARCHAR(32)  NOT NULL,
    result            VARCHAR(32)  NOT NULL CHECK (result IN ('applied', 'ignored')),
    guarded           BOOLEAN      NOT NULL,
    received_at       BIGINT       NOT NULL,
    guarded_event_id  VARCHAR(128) AS (IF(guarded, event_id, NULL)) STORED,
    UNIQUE KEY payment_events_event_uniq (guarded_event_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Transactional outbox: the PAID transition writes its "order paid" message here
-- in the same transaction; a relay publishes it (at least once). Postgres and
-- SQLite index the unpublished rows only (… WHERE published_at IS NULL); here
-- the index leads with published_at, so the unpublished rows sit together, in
-- id order. (A generated column cannot read an AUTO_INCREMENT id in MySQL.)
CREATE TABLE outbox (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    message_id    VARCHAR(128) NOT NULL UNIQUE,
    topic         VARCHAR(64)  NOT NULL,
    payload       VARCHAR(4000) NOT NULL,
    created_at    BIGINT       NOT NULL,
    published_at  BIGINT,
    KEY outbox_unpublished_idx (published_at, id) COMMENT 'partial: (id) WHERE published_at IS NULL'
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The message_dedup defense: a consumer records each message id in the same
-- transaction as its effect.
CREATE TABLE processed_messages (
    consumer      VARCHAR(64)  NOT NULL,
    message_id    VARCHAR(128) NOT NULL,
    processed_at  BIGINT       NOT NULL,
    PRIMARY KEY (consumer, message_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Loyalty points awarded for paid orders (one row per award).
CREATE TABLE rewards (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    order_no    VARCHAR(64)  NOT NULL,
    user_id     BIGINT       NOT NULL,
    points      BIGINT       NOT NULL,
    message_id  VARCHAR(128) NOT NULL,
    created_at  BIGINT       NOT NULL,
    KEY rewards_order_idx (order_no)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
