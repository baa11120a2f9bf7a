-- wrk: new buyers of a sold-out product, a fresh Idempotency-Key per request:
-- every answer is a loser's 409 sold_out from the front door (no database work).
-- Environment: FG_TOKEN, FG_ADMIN, FG_PRODUCT.
-- `thread_id` is a global that setup() gives each thread (thread:set): a
-- `local` of the same name would hide it, and every thread would then send
-- the same keys (half of the answers replays, not refusals).
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function init(args)
  wrk.method = "POST"
  wrk.path = "/api/orders"
  wrk.body = string.format('{"product_id":%s,"quantity":1}', os.getenv("FG_PRODUCT"))
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("FG_TOKEN")
  wrk.headers["Flashguard-Lab"] = os.getenv("FG_ADMIN")
end

function request()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = string.format("late-%d-%d", thread_id, counter)
  return wrk.format()
end
