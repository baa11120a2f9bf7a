-- 主动查单 (issue 18, review): the query job asks first about the payments it
-- asked about least recently, so that payments the provider does not answer
-- cannot hold the head of the queue and starve the others.
ALTER TABLE payments ADD COLUMN queried_at BIGINT;

-- The job's scan (PROCESSING payments older than the query window) and 对账's
-- day of payments.
CREATE INDEX payments_status_created_idx ON payments (status, created_at);
CREATE INDEX payments_created_idx ON payments (created_at);
