-- Payment channels (issue 18): how each payment is made — card, alipay or
-- wechatpay — so that its notification is read in its own format and the
-- provider is queried through its own API.
ALTER TABLE payments ADD COLUMN channel VARCHAR(16) NOT NULL DEFAULT 'card';

-- The mock provider's own books (支付平台的账): one row per charge it accepted,
-- as the provider records it. It stands for the provider's side: flashguard's
-- flows never read it except through the provider's query and bill
-- (主动查单, 对账); it lives in this database only because the mock has no
-- store of its own, and every instance must see the same books.
CREATE TABLE mock_provider_charges (
    payment_no    VARCHAR(64)  NOT NULL PRIMARY KEY,
    order_no      VARCHAR(64)  NOT NULL,
    channel       VARCHAR(16)  NOT NULL,
    trade_no      VARCHAR(128) NOT NULL,
    amount_cents  BIGINT       NOT NULL,
    status        VARCHAR(32)  NOT NULL,
    charged_at    BIGINT       NOT NULL,
    KEY mock_provider_charges_day_idx (charged_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
