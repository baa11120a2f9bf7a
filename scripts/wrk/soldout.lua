-- wrk: new buyers of a sold-out product, a fresh Idempotency-Key per request:
-- every answer is a loser's 409 sold_out from the front door (no database work).
-- Environment: FG_TOKEN, FG_ADMIN, FG_PRODUCT.
dofile("scripts/wrk/fresh_keys.lua")

function init(args)
  wrk.method = "POST"
  wrk.path = "/api/orders"
  wrk.body = string.format('{"product_id":%s,"quantity":1}', os.getenv("FG_PRODUCT"))
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("FG_TOKEN")
  wrk.headers["Flashguard-Lab"] = os.getenv("FG_ADMIN")
end

function request()
  wrk.headers["Idempotency-Key"] = fresh_key("late")
  return wrk.format()
end
