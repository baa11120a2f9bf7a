-- wrk: the hello baseline plus one Redis round trip that stores an answer
-- under a new key (POST /redis/store of examples/hello.rs): the floor of a
-- sold-out answer to a new Idempotency-Key, which the contract stores. A
-- fresh key per request, headers and body the size of an order request's.
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function init(args)
  wrk.method = "POST"
  wrk.path = "/redis/store"
  wrk.body = '{"product_id":1,"quantity":1}'
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. string.rep("x", 200)
end

function request()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = string.format("store-%d-%d", thread_id, counter)
  return wrk.format()
end
