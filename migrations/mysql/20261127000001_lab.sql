-- The lab's experiments (GET /api/lab/experiments) each buy from a product of
-- their own; this table names those products, so that the next experiment can
-- remove them and everything that hangs off them before it starts.
CREATE TABLE lab_products (
    product_id  BIGINT      NOT NULL PRIMARY KEY,
    experiment  VARCHAR(64) NOT NULL,
    created_at  BIGINT      NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
