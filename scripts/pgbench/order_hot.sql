-- The database work of one order on the hot row, as flashguard does it with the
-- stock gate on (the gate already refused the losers): insert the order, take the
-- stock with a conditional decrement, commit.
BEGIN;
INSERT INTO orders (order_no, user_id, product_id, quantity, amount_cents, status, idempotency_key, guarded, created_at, updated_at)
VALUES (md5(random()::text || clock_timestamp()::text), 900000001, :hot, 1, 100, 'PENDING_PAYMENT', md5(random()::text || clock_timestamp()::text), TRUE, 0, 0);
UPDATE products SET stock = stock - 1, version = version + 1 WHERE id = :hot AND stock >= 1;
COMMIT;
