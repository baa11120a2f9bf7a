-- At least once, for real (docs/reliability.md): relays on several instances
-- claim outbox rows with a lease instead of publishing the same row twice, and
-- a paid order whose reward never arrived has its message published again, found
-- by its order number.
ALTER TABLE outbox ADD COLUMN order_no VARCHAR(64);
ALTER TABLE outbox ADD COLUMN claimed_by VARCHAR(64);
ALTER TABLE outbox ADD COLUMN claimed_until BIGINT;
CREATE INDEX outbox_order_idx ON outbox (order_no);

-- Defense switches and lab settings, shared by every instance (each reads them
-- every half second): a switch flipped on one instance acts on all of them.
CREATE TABLE switch_board (
    name        VARCHAR(64) NOT NULL PRIMARY KEY,
    value       BIGINT      NOT NULL,
    updated_at  BIGINT      NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
