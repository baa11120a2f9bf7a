//! Every problem code the API can answer with, defined once: HTTP status, title
//! and explanation in Chinese and English, the defense behind it, `Retry-After`,
//! and whether the idempotency key stores it as the request's outcome
//! (docs/design.md §4). The error type, the problem pages and the docs all read
//! this table; a test walks it so that no code is left without its page.

use strum::{EnumIter, EnumString, IntoEnumIterator, IntoStaticStr};

use crate::switches::Defense;
use crate::text::{Text, text};

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, EnumString, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ProblemCode {
    IdempotencyKeyMissing,
    IdempotencyKeyInvalid,
    IdempotencyKeyReused,
    RequestInProgress,
    MalformedBody,
    InvalidQuantity,
    InvalidUsername,
    InvalidRequest,
    ProductNotFound,
    OrderNotFound,
    NotFound,
    SoldOut,
    SaleNotStarted,
    BusyRetry,
    Unauthorized,
    TokenExpired,
    TokenRevoked,
    AdminUnauthorized,
    PaymentTokenMissing,
    PaymentTokenInvalid,
    OrderLocked,
    OrderClosed,
    SignatureInvalid,
    SignatureExpired,
    MerchantMismatch,
    AmountMismatch,
    PaymentUnknown,
    ResourceUndecryptable,
    UnknownDefense,
    ExperimentRunning,
    ExperimentUnavailable,
    SimulationRunning,
    DependencyUnavailable,
    RateLimited,
    MethodNotAllowed,
    RequestTimeout,
    PayloadTooLarge,
    InternalError,
}

/// What one problem code means.
#[derive(Debug, Clone, Copy)]
pub struct ProblemSpec {
    pub status: u16,
    pub title: Text,
    pub explanation: Text,
    /// The defense whose work this answer is (its lesson explains it), if any.
    pub defense: Option<Defense>,
    /// Seconds to put in `Retry-After`, for answers that invite a retry.
    pub retry_after_secs: Option<u64>,
    /// An outcome of the business: stored with the idempotency key and replayed.
    /// Every other problem stores nothing, so that the client's retry can succeed.
    pub stored_with_key: bool,
}

const fn spec(status: u16, title: Text, explanation: Text) -> ProblemSpec {
    ProblemSpec {
        status,
        title,
        explanation,
        defense: None,
        retry_after_secs: None,
        stored_with_key: false,
    }
}

impl ProblemSpec {
    const fn by(mut self, defense: Defense) -> Self {
        self.defense = Some(defense);
        self
    }

    const fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_secs = Some(seconds);
        self
    }

    const fn stored(mut self) -> Self {
        self.stored_with_key = true;
        self
    }
}

/// The codes as an OpenAPI string enum, from this table (nothing to keep in step).
impl utoipa::PartialSchema for ProblemCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A stable problem code; /learn/problems/<code> explains it.",
            ))
            .enum_values(Some(Self::all().map(Self::as_str)))
            .into()
    }
}

impl utoipa::ToSchema for ProblemCode {}

impl ProblemCode {
    pub fn all() -> impl Iterator<Item = ProblemCode> {
        Self::iter()
    }

    /// The stable snake_case code of the problem body.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn from_code(code: &str) -> Option<Self> {
        code.parse().ok()
    }

    /// `/learn/problems/<code>`: the page that explains it.
    pub fn type_uri(self) -> String {
        format!("/learn/problems/{}", self.as_str())
    }

    /// The problem table.
    #[expect(
        clippy::too_many_lines,
        reason = "the problem table: one arm per problem code, each a few lines of data (status, titles and explanations in two languages)"
    )]
    pub fn spec(self) -> ProblemSpec {
        use Defense as D;
        match self {
            Self::IdempotencyKeyMissing => spec(
                400,
                text("缺少 Idempotency-Key 请求头", "Idempotency-Key header missing"),
                text(
                    "下单和支付这类会产生副作用的 POST 必须带 Idempotency-Key：每次业务操作（每打开一次确认弹窗）一个键。没有它，服务端分不清这是重试还是一次新的购买。",
                    "Placing an order and paying change state, so they must carry an Idempotency-Key header: one key per business action (one opening of the confirm popup). Without it the server cannot tell a retry from a new purchase.",
                ),
            )
            ,
            Self::IdempotencyKeyInvalid => spec(
                400,
                text("Idempotency-Key 格式不对", "Idempotency-Key malformed"),
                text(
                    "幂等键是 1 到 255 个可见 ASCII 字符（Stripe 的上限）。用 UUID 就很好。",
                    "An idempotency key is 1 to 255 visible ASCII characters (Stripe's limit). A UUID is a good choice.",
                ),
            )
            ,
            Self::IdempotencyKeyReused => spec(
                422,
                text("同一个幂等键配了不同的请求", "Idempotency-Key reused with another request"),
                text(
                    "服务端记下了第一次用这个键时请求的指纹（方法、路径、规范化的请求体）。同一个键换了请求体是客户端的 bug：新的业务操作要用新的键。",
                    "The server stored a fingerprint (method, path, canonical body) of the first request sent with this key. The same key with another body is a client bug: a new intent needs a new key.",
                ),
            )
            .by(D::IdempotencyKey),
            Self::RequestInProgress => spec(
                409,
                text("同一个请求还在处理中", "Same request still in progress"),
                text(
                    "这个幂等键的第一个请求还没处理完。等 Retry-After 秒后用同一个键重试，就会拿到保存下来的响应。",
                    "The first request with this key is still running. Wait Retry-After seconds and retry with the same key: you will get the stored answer.",
                ),
            )
            .by(D::IdempotencyKey)
            .retry_after(1),
            Self::MalformedBody => spec(
                400,
                text("请求体格式不对", "Malformed request body"),
                text(
                    "请求体不是合法的 JSON，或者字段结构不符合接口要求。什么都没保存，所以同一个键改好请求体后还能用。",
                    "The body is not JSON of the expected shape. Nothing was stored, so the same key can be used again with a correct body.",
                ),
            ),
            Self::InvalidQuantity => spec(
                400,
                text("购买数量无效", "Invalid quantity"),
                text(
                    "秒杀每单数量是 1 到 10 的整数。",
                    "Quantity must be a whole number from 1 to 10 per order in this flash sale.",
                ),
            ),
            Self::InvalidUsername => spec(
                400,
                text("用户名无效", "Invalid username"),
                text(
                    "演示用户名是 1 到 64 个可见字符，不含空格。",
                    "A demo username is 1 to 64 visible characters, without spaces.",
                ),
            ),
            Self::InvalidRequest => spec(
                400,
                text("请求参数无效", "Invalid request"),
                text(
                    "请求里有字段超出范围，detail 说明是哪一个。",
                    "A field of the request is out of range; the detail says which.",
                ),
            ),
            Self::ProductNotFound => spec(
                404,
                text("商品不存在", "Product not found"),
                text(
                    "没有这个 id 的商品。幂等键下什么都没保存。",
                    "There is no product with this id. Nothing was stored with the key.",
                ),
            ),
            Self::OrderNotFound => spec(
                404,
                text("订单不存在", "Order not found"),
                text(
                    "你的订单里没有这一笔。别人的订单对你不可见（也是 404，不泄露它是否存在）。",
                    "There is no such order among yours. Other users' orders are not visible (also 404, so their existence does not leak).",
                ),
            ),
            Self::NotFound => spec(
                404,
                text("找不到", "Not found"),
                text("这个地址上什么都没有。", "There is nothing at this address."),
            ),
            Self::SoldOut => spec(
                409,
                text("已售罄", "Sold out"),
                text(
                    "库存没了。这是业务结果：它和幂等键一起保存，同一个键的每次重试都会拿到同样的响应。Redis 库存预扣开着时，售罄直接由 Redis 返回，不碰数据库。只有一种例外：剩下的库存还被正在下单的请求占着（它们失败了库存会回来）时，请求先等它们结束，最多 1 秒；过了 1 秒仍被占着（比如某个实例卡住或挂了），这时的售罄带 Retry-After: 1，不保存，同一个键稍后重试可能买到。",
                    "The stock is gone. This is an outcome of the business: it is stored with the idempotency key and replayed to every retry of that key. With the stock pre-deduction on, sold out is answered from Redis without touching the database. One exception: while the last units are still held by orders being placed (if one fails, its unit comes back), the request first waits for them, at most a second; if they are still held after that (a frozen or dead instance), the answer carries Retry-After: 1 and is not stored, so a later retry with the same key may buy.",
                ),
            )
            .by(D::StockGate)
            .stored(),
            Self::SaleNotStarted => spec(
                409,
                text("秒杀还没开始", "Sale not started"),
                text(
                    "这个商品的秒杀还没到开始时间，什么都没保存：开始后用同一个键重试即可。",
                    "The sale of this product has not started yet. Nothing was stored: retry with the same key once it starts.",
                ),
            ),
            Self::BusyRetry => spec(
                503,
                text("库存行太忙，请重试", "Busy, retry"),
                text(
                    "版本号校验在热点库存行上一再冲突，重试次数用完了。什么都没保存：等 Retry-After 秒后用同一个键重试。（条件扣减不需要重试，不会返回这个错误。）",
                    "The version check lost the race on a hot stock row too many times. Nothing was stored: retry with the same key after Retry-After. (The conditional decrement never retries, so it never answers this.)",
                ),
            )
            .by(D::VersionLock)
            .retry_after(1),
            Self::Unauthorized => spec(
                401,
                text("需要登录", "Login required"),
                text(
                    "先 POST /api/login 登录，再用 'Authorization: Bearer <token>' 带上令牌。令牌由服务端签名，无法伪造。",
                    "Log in with POST /api/login and send the token as 'Authorization: Bearer <token>'. Tokens are signed by the server and cannot be forged.",
                ),
            ),
            Self::TokenExpired => spec(
                401,
                text("登录令牌已过期", "Login token expired"),
                text(
                    "登录令牌带有过期时间（LOGIN_TOKEN_TTL_SECS），过期后不再有效。重新登录拿一个新令牌。",
                    "A login token carries an expiry (LOGIN_TOKEN_TTL_SECS) and is refused after it. Log in again for a new one.",
                ),
            ),
            Self::TokenRevoked => spec(
                401,
                text("登录令牌已注销", "Login token revoked"),
                text(
                    "这个令牌已经通过 POST /api/logout 注销了；注销在所有实例上都生效。重新登录拿一个新令牌。",
                    "This token was revoked by POST /api/logout, on every instance. Log in again for a new one.",
                ),
            ),
            Self::AdminUnauthorized => spec(
                401,
                text("需要管理员令牌", "Admin token required"),
                text(
                    "管理接口需要 'Authorization: Bearer <ADMIN_TOKEN>'。没有设置 ADMIN_TOKEN 时，服务启动时随机生成一个，写在 data/generated-secrets.env 里。",
                    "The admin API needs 'Authorization: Bearer <ADMIN_TOKEN>'. When ADMIN_TOKEN is unset the server generates one at start and writes it to data/generated-secrets.env.",
                ),
            ),
            Self::PaymentTokenMissing => spec(
                400,
                text("缺少支付令牌", "Payment token missing"),
                text(
                    "支付请求必须带 Payment-Token 请求头：打开支付弹窗时向 POST /api/orders/{order_no}/payment-token 要一个一次性令牌。",
                    "A pay request must carry a Payment-Token header: open the payment popup, which asks POST /api/orders/{order_no}/payment-token for a one-time token.",
                ),
            )
            .by(D::PaymentToken),
            Self::PaymentTokenInvalid => spec(
                403,
                text("支付令牌被拒绝", "Payment token refused"),
                text(
                    "令牌已用过、已过期，或者不是发给这个用户和这笔订单的。一次性令牌只能用一次：重放的支付请求到这里就停了，不会再扣一次钱。重新打开支付弹窗拿新令牌。",
                    "The token was used, expired, or not issued for this user and order. A one-time token works once: a replayed pay request stops here and charges nothing. Reopen the payment popup for a new token.",
                ),
            )
            .by(D::PaymentToken),
            Self::OrderLocked => spec(
                409,
                text("订单正被另一个支付请求锁住", "Order locked by another payment request"),
                text(
                    "另一个支付请求拿着这笔订单的锁（一锁二判三更新的“一锁”），等了一会儿还没释放。稍后重试：那时会看到它创建的支付。",
                    "Another pay request holds this order's lock (the \"lock\" of lock, check, update) and did not release it in time. Retry shortly: you will then see the payment it created.",
                ),
            )
            .by(D::OrderLock)
            .retry_after(1),
            Self::OrderClosed => spec(
                409,
                text("订单已关闭", "Order closed"),
                text(
                    "已超过支付时限，订单已关闭，库存已退回。状态只能向前走：关闭的订单不能再支付。",
                    "The payment window passed: the order is closed and its stock returned. State only moves forward: a closed order cannot be paid.",
                ),
            )
            .by(D::StateCheck)
            .stored(),
            Self::SignatureInvalid => spec(
                401,
                text("回调签名无效", "Callback signature invalid"),
                text(
                    "回调的签名缺失、格式不对，或者与内容不符。服务端在相信任何内容之前先验签，伪造的回调到这里就被拦下。三种渠道各有各的签名：银行卡渠道是 Stripe 式的 PSP-Signature 请求头（用共享密钥对时间戳和请求体做 HMAC-SHA256，常量时间比较）；支付宝是表单里的 sign 参数（RSA2，用支付宝公钥验）；微信支付是 Wechatpay-Signature 请求头（SHA256 with RSA，用 Wechatpay-Serial 指明的平台公钥验，序列号不对也算无效）。详见回调去重一课。",
                    "The callback's signature is missing, malformed, or does not match what was signed. The server verifies it before believing anything, so a forged callback stops here. Each channel signs its own way: the card channel's Stripe-style PSP-Signature header (an HMAC-SHA256 of timestamp and body with a shared secret, compared in constant time); Alipay's sign parameter in the form (RSA2, verified with Alipay's public key); WeChat Pay's Wechatpay-Signature header (SHA256 with RSA, verified with the platform key that Wechatpay-Serial names — another serial is invalid too). See the callback dedup lesson.",
                ),
            ),
            Self::SignatureExpired => spec(
                401,
                text("回调签名过期", "Callback signature expired"),
                text(
                    "签名里的时间戳（PSP-Signature 的 t，或者 Wechatpay-Timestamp）和现在相差超过 300 秒。截获的回调不能过后再重放。（支付宝的异步通知不会因为“太旧”被拒绝——支付宝自己就会在约 25 小时内反复重发；它的重放靠 notify_id 去重和状态校验来挡。）",
                    "The signed timestamp (PSP-Signature's t, or Wechatpay-Timestamp) is more than 300 seconds away from now. A captured callback cannot be replayed later. (An Alipay notification is not refused for its age — Alipay itself redelivers for about 25 hours; a replay of it is stopped by the notify_id dedup and the state check.)",
                ),
            ),
            Self::MerchantMismatch => spec(
                400,
                text("通知不是发给这个商户的", "Notification for another merchant"),
                text(
                    "签名没问题，但通知里的 app_id 不是本商户的（ALIPAY_APP_ID）。支付宝要求商户核对 app_id：验签只能证明通知来自支付宝，证明不了它说的是你的交易。什么都没改，支付宝收不到 success，会再发。",
                    "The signature verifies, but the notification's app_id is not this merchant's (ALIPAY_APP_ID). Alipay tells merchants to check it: a signature proves the notification comes from Alipay, not that it is about your trade. Nothing was changed; Alipay does not hear success and sends it again.",
                ),
            ),
            Self::AmountMismatch => spec(
                400,
                text("通知里的金额和支付记录不符", "Amount does not match the payment"),
                text(
                    "通知报告的金额（支付宝的 total_amount 以元为单位，微信支付的 amount.total 以分为单位）和这笔支付的金额不一样。绝不能照单全收：什么都没改，平台会再发，差异留给对账处理。",
                    "The amount the notification reports (Alipay's total_amount in yuan, WeChat Pay's amount.total in fen) differs from the payment's. It is never taken on trust: nothing was changed, the provider sends it again, and reconciliation names the difference.",
                ),
            ),
            Self::PaymentUnknown => spec(
                400,
                text("没有这笔支付", "No such payment"),
                text(
                    "通知里的商户订单号（out_trade_no）不是本渠道的任何一笔支付，或者通知里的平台交易号（支付宝的 trade_no、微信支付的 transaction_id）不是平台当初给这笔支付的那个。什么都没改，平台收不到“已收到”，会再发。",
                    "The notification's out_trade_no is none of this channel's payments, or its trade number (Alipay's trade_no, WeChat Pay's transaction_id) is not the one the provider gave this payment. Nothing was changed; the provider does not hear \"received\" and sends it again.",
                ),
            ),
            Self::ResourceUndecryptable => spec(
                400,
                text("resource 解密失败", "Resource does not decrypt"),
                text(
                    "微信支付通知里的 resource 用 APIv3 密钥以 AEAD_AES_256_GCM 加密；密文或认证标签被改过、或者密钥不对，解密就会失败（GCM 会校验完整性）。什么都没改，返回 4xx 和 {\"code\":\"FAIL\"}，微信支付会再发。",
                    "A WeChat Pay notification's resource is encrypted with AEAD_AES_256_GCM under the APIv3 key; a changed ciphertext or tag, or a wrong key, fails to decrypt (GCM checks integrity). Nothing was changed; the answer is a 4xx with {\"code\":\"FAIL\"}, and WeChat Pay sends it again.",
                ),
            ),
            Self::UnknownDefense => spec(
                400,
                text("未知的防线", "Unknown defense"),
                text(
                    "管理接口只认识 GET /api/admin/defenses 列出的防线。",
                    "The admin API only knows the defenses listed by GET /api/admin/defenses.",
                ),
            ),
            Self::ExperimentRunning => spec(
                409,
                text("另一个实验或模拟正在运行", "An experiment or a simulation is running"),
                text(
                    "实验和模拟器都会临时切换全局的防线开关，所以同一时间只能跑一个：另一个实验（不超过 10 秒）或一次模拟（不超过 2 分钟）正在运行。等它结束再试。",
                    "Experiments and the simulator switch the defenses of the whole server for a while, so one runs at a time: another experiment (within 10 seconds) or a simulation (within 2 minutes) is running. Try again when it ends.",
                ),
            )
            .retry_after(5),
            Self::SimulationRunning => spec(
                409,
                text("已有模拟或实验在运行", "A simulation or an experiment is running"),
                text(
                    "模拟器在服务端对自己跑一场秒杀，期间会按请求切换全局的防线开关，所以和实验一样，同一时间只能跑一个。正在运行的那一次结束后（买家登录加负载最长 2 分钟，负载本身最长 60 秒；之后恢复开关、做审计）再开始；打开 /lab/simulator 可以看到它的进度（页面会接上正在运行的那一次）。",
                    "The simulator runs a flash sale against this server and switches the defenses of the whole server as asked, so, like the experiments, one runs at a time. Start again when the current run ends (the buyers' logins and the load take at most 2 minutes, the load itself at most 60 seconds; then the switches are put back and the audit is read); /lab/simulator shows its progress (the page follows the run in progress).",
                ),
            )
            .retry_after(5),
            Self::ExperimentUnavailable => spec(
                409,
                text("这个实验不能在这个数据库上跑", "Experiment not available on this database"),
                text(
                    "有的实验只在一种数据库引擎上才有意义：check_then_insert_deadlock 和 update_without_index 演示的是 InnoDB 在 REPEATABLE READ 下的间隙锁和行锁，只在 MySQL 上运行（GET /api/lab/experiments 里的 engines 字段会写明）。Postgres 的 SELECT … FOR UPDATE 不锁不存在的行，UPDATE 也只锁它改到的行，所以看不到这两种现象。用 DATABASE_URL=mysql://… 启动 flashguard 再试。",
                    "Some experiments only mean something on one engine: check_then_insert_deadlock and update_without_index show InnoDB's gap and row locks at REPEATABLE READ, and run on MySQL only (their engines member in GET /api/lab/experiments says so). Postgres' SELECT … FOR UPDATE locks no missing row and its UPDATE locks only the rows it changes, so neither effect appears there. Start flashguard with DATABASE_URL=mysql://… and run it again.",
                ),
            ),
            Self::DependencyUnavailable => spec(
                503,
                text("依赖的服务不可用", "A dependency is unavailable"),
                text(
                    "数据库、Redis 或 RabbitMQ 没有及时响应（dependency 字段说明是哪一个）。服务端在限定时间内就放弃了，不会让请求一直挂着：每次等待各有上限，整个请求还有一个总的截止时间（REQUEST_DEADLINE_MS，默认 2.5 秒）。什么都没保存，过 Retry-After 秒后用同一个键重试。Redis 挂了时照常下单（幂等键表在数据库里），但支付会被拒绝，因为一次性令牌和订单锁在 Redis 里。",
                    "The database, Redis or RabbitMQ did not answer in time (the dependency member says which). The server gave up within a bound instead of hanging — each wait has its own, and the whole request one deadline (REQUEST_DEADLINE_MS, 2.5 s by default); nothing was stored: retry with the same key after Retry-After seconds. With Redis down, orders are still served (the key table is in the database); paying is refused, because the one-time token and the order lock live in Redis.",
                ),
            )
            .retry_after(1),
            Self::RateLimited => spec(
                429,
                text("请求太频繁", "Too many requests"),
                text(
                    "登录按客户端 IP 限流，写请求按用户和 IP 限流（令牌桶，允许短时突发）。等 Retry-After 秒再试；同一个幂等键重试是安全的。压测时可以把 RATE_LIMIT_* 设为 0 关掉限流。",
                    "Logins are limited per client IP, writes per user and per IP (a token bucket that allows short bursts). Wait Retry-After seconds and retry; retrying with the same idempotency key is safe. For load tests, set the RATE_LIMIT_* variables to 0.",
                ),
            ),
            Self::MethodNotAllowed => spec(
                405,
                text("不支持这个方法", "Method not allowed"),
                text(
                    "这个地址存在，但不接受这个 HTTP 方法；Allow 头列出它接受的方法。",
                    "This address exists but does not take this HTTP method; the Allow header lists the ones it takes.",
                ),
            ),
            Self::RequestTimeout => spec(
                408,
                text("请求体来得太慢", "Request body too slow"),
                text(
                    "写请求的请求体必须在 REQUEST_BODY_TIMEOUT_SECS 秒内完整到达，慢慢发的请求体会被切断，不会占着连接。什么都没保存，可以重试。",
                    "A write's body must arrive whole within REQUEST_BODY_TIMEOUT_SECS seconds; a body that trickles in is cut instead of holding a connection. Nothing was stored: retry.",
                ),
            ),
            Self::PayloadTooLarge => spec(
                413,
                text("请求体太大", "Payload too large"),
                text(
                    "请求体最多 64 KiB。",
                    "A request body is at most 64 KiB.",
                ),
            ),
            Self::InternalError => spec(
                500,
                text("服务器内部错误", "Internal error"),
                text(
                    "服务端出错了。幂等键下什么都没保存，所以重试可能成功。",
                    "The server failed. Nothing was stored with the key, so a retry can succeed.",
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_every_code_is_explained_in_both_languages() {
        for code in ProblemCode::all() {
            assert_eq!(ProblemCode::from_code(code.as_str()), Some(code));
            let spec = code.spec();
            assert!((400..600).contains(&spec.status), "{code:?}");
            for text in [spec.title, spec.explanation] {
                assert!(!text.zh.is_empty() && !text.en.is_empty(), "{code:?}");
            }
        }
        assert_eq!(ProblemCode::SoldOut.as_str(), "sold_out");
        assert_eq!(ProblemCode::from_code("nope"), None);
    }
}
