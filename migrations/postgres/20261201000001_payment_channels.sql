-- Payment channels (issue 18): how each payment is made — card, alipay or
-- wechatpay — so that its notification is read in its own format and the
-- provider is queried through its own API.
ALTER TABLE payments ADD COLUMN channel TEXT NOT NULL DEFAULT 'card';

-- The mock provider's own books (支付平台的账): one row per charge it accepted,
-- as the provider records it. It stands for the provider's side: flashguard's
-- flows never read it except through the provider's query and bill
-- (主动查单, 对账); it lives in this database only because the mock has no
-- store of its own, and every instance must see the same books.
CREATE TABLE mock_provider_charges (
    payment_no    TEXT   PRIMARY KEY,
    order_no      TEXT   NOT NULL,
    channel       TEXT   NOT NULL,
    trade_no      TEXT   NOT NULL,
    amount_cents  BIGINT NOT NULL,
    status        TEXT   NOT NULL,
    charged_at    BIGINT NOT NULL
);
CREATE INDEX mock_provider_charges_day_idx ON mock_provider_charges (charged_at);
