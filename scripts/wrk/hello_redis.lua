-- wrk: the hello baseline plus one Redis round trip (POST /redis of
-- examples/hello.rs), with a body and headers the size of an order request's.
wrk.method = "POST"
wrk.path = "/redis"
wrk.body = '{"product_id":1,"quantity":1}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. string.rep("x", 200)
wrk.headers["Idempotency-Key"] = "hello-baseline"
