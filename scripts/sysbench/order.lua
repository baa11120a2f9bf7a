-- The database work of one order per transaction on MySQL, as flashguard does
-- it there (the stock first: InnoDB's foreign-key check on the order would take
-- a shared lock on the product row, and two orders would deadlock on the stock
-- update). --mode:
--   hot        the conditional decrement on one row (the gate already refused
--              the losers), then the order
--   versioned  as version_lock does it: read the version, take the stock only
--              if it is unchanged, then the order (successes are counted from
--              the version column by bench.sh)
--   spread     the conditional decrement on one of 100 rows, then the order
-- Run by scripts/bench.sh with BENCH_DATABASE=mysql.
sysbench.cmdline.options = {
  mode = {"hot, versioned or spread", "hot"},
  first = {"id of the first of the 100 products (the hot one)", 0},
}

function thread_init()
  drv = sysbench.sql.driver()
  con = drv:connect()
end

function thread_done()
  con:disconnect()
end

local function product()
  if sysbench.opt.mode == "spread" then
    return sysbench.opt.first + sysbench.rand.uniform(0, 99)
  end
  return sysbench.opt.first
end

function event()
  local id = product()
  con:query("BEGIN")
  if sysbench.opt.mode == "versioned" then
    local row = con:query("SELECT version FROM products WHERE id = " .. id):fetch_row()
    con:query("UPDATE products SET stock = stock - 1, version = version + 1 WHERE id = " .. id
      .. " AND version = " .. row[1])
  else
    con:query("UPDATE products SET stock = stock - 1, version = version + 1 WHERE id = " .. id
      .. " AND stock >= 1")
  end
  con:query("INSERT INTO orders (order_no, user_id, product_id, quantity, amount_cents, status,"
    .. " idempotency_key, guarded, created_at, updated_at) VALUES (UUID(), 900000001, " .. id
    .. ", 1, 100, 'PENDING_PAYMENT', UUID(), TRUE, 0, 0)")
  con:query("COMMIT")
end
