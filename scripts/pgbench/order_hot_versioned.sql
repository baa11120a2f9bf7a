-- The database work of one order on the hot row as flashguard's version_lock
-- does it (乐观锁): read stock and version, insert the order, take the stock only
-- if the version is still the one read, commit. Under concurrency some attempts
-- find the version changed and take nothing; bench.sh counts the successes from
-- the version column (each success bumps it once).
BEGIN;
SELECT stock, version FROM products WHERE id = :hot \gset
INSERT INTO orders (order_no, user_id, product_id, quantity, amount_cents, status, idempotency_key, guarded, created_at, updated_at)
VALUES (md5(random()::text || clock_timestamp()::text), 900000001, :hot, 1, 100, 'PENDING_PAYMENT', md5(random()::text || clock_timestamp()::text), TRUE, 0, 0);
UPDATE products SET stock = stock - 1, version = version + 1 WHERE id = :hot AND version = :version;
COMMIT;
