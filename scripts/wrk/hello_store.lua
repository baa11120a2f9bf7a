-- wrk: the hello baseline plus one Redis round trip that stores an answer
-- under a new key (POST /redis/store of examples/hello.rs): the floor of a
-- sold-out answer to a new Idempotency-Key, which the contract stores. A
-- fresh key per request, headers and body the size of an order request's.
dofile("scripts/wrk/fresh_keys.lua")

function init(args)
  wrk.method = "POST"
  wrk.path = "/redis/store"
  wrk.body = '{"product_id":1,"quantity":1}'
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. string.rep("x", 200)
end

function request()
  wrk.headers["Idempotency-Key"] = fresh_key("store")
  return wrk.format()
end
