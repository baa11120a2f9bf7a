-- wrk: a fresh Idempotency-Key per request, unique across wrk's threads
-- (loaded with dofile by soldout.lua and hello_store.lua; bench.sh runs wrk
-- from the repository's root).
-- `thread_id` is a global that setup() gives each thread (thread:set): a
-- `local` of the same name would hide it, and every thread would then send
-- the same keys (half of the answers replays, not refusals).
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

-- The next key of this thread: "<prefix>-<thread>-<n>".
function fresh_key(prefix)
  counter = counter + 1
  return string.format("%s-%d-%d", prefix, thread_id, counter)
end
