-- wrk: the same order request again and again (one Idempotency-Key): every
-- answer is a replay of the stored 201. Environment: FG_TOKEN (a login token),
-- FG_ADMIN (passes the rate limits, as the load tester does), FG_PRODUCT, FG_KEY.
wrk.method = "POST"
wrk.path = "/api/orders"
wrk.body = string.format('{"product_id":%s,"quantity":1}', os.getenv("FG_PRODUCT"))
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("FG_TOKEN")
wrk.headers["Idempotency-Key"] = os.getenv("FG_KEY")
wrk.headers["Flashguard-Lab"] = os.getenv("FG_ADMIN")
