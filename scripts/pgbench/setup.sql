-- Rows the pgbench order transaction needs (run after flashguard migrated the database).
INSERT INTO users (id, username, created_at) VALUES (900000001, 'pgbench', 0) ON CONFLICT DO NOTHING;
DELETE FROM orders WHERE user_id = 900000001;
DELETE FROM products WHERE name LIKE 'pgbench %';
INSERT INTO products (name, price_cents, stock, initial_stock, version, sale_starts_at)
SELECT 'pgbench ' || g, 100, 1000000000, 1000000000, 0, 0 FROM generate_series(1, 100) AS g;
