-- Rows the sysbench order transaction needs (run after flashguard migrated the
-- MySQL database): the buyer, and 100 products with stock that never runs out.
INSERT IGNORE INTO users (id, username, created_at) VALUES (900000001, 'sysbench', 0);
DELETE FROM orders WHERE user_id = 900000001;
DELETE FROM products WHERE name LIKE 'sysbench %';
INSERT INTO products (name, price_cents, stock, initial_stock, version, sale_starts_at)
WITH RECURSIVE g (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 100)
SELECT CONCAT('sysbench ', n), 100, 1000000000, 1000000000, 0, 0 FROM g;
