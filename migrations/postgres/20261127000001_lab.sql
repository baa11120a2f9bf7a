-- The lab's experiments (GET /api/lab/experiments) each buy from a product of
-- their own; this table names those products, so that the next experiment can
-- remove them and everything that hangs off them before it starts.
CREATE TABLE lab_products (
    product_id  BIGINT PRIMARY KEY,
    experiment  TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);
