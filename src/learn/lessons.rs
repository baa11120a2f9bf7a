//! What each lesson shows besides its prose: the code (cut from this build), the
//! audit checks that prove the defense, and the two sequence diagrams (the race,
//! and the defense). The experiment that breaks it is in `lab::experiments`.

use super::diagrams::{Sequence, Step, bad, good, plain};
use super::excerpts::Cut;
use crate::switches::Defense;
use crate::text::{Text, text};

/// One piece of real code shown in a lesson.
#[derive(Debug, Clone, Copy)]
pub struct Excerpt {
    pub path: &'static str,
    pub cut: Cut,
    /// `rust`, `sql`, `lua` or `javascript`.
    pub language: &'static str,
    pub caption: Text,
}

const fn code(
    path: &'static str,
    name: &'static str,
    zh: &'static str,
    en: &'static str,
) -> Excerpt {
    Excerpt {
        path,
        cut: Cut::Marked(name),
        language: "rust",
        caption: text(zh, en),
    }
}

const fn sql(
    path: &'static str,
    start: &'static str,
    zh: &'static str,
    en: &'static str,
) -> Excerpt {
    Excerpt {
        path,
        cut: Cut::Statement(start),
        language: "sql",
        caption: text(zh, en),
    }
}

const fn js(name: &'static str, zh: &'static str, en: &'static str) -> Excerpt {
    Excerpt {
        path: "static/app.js",
        cut: Cut::Marked(name),
        language: "javascript",
        caption: text(zh, en),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Lesson {
    pub excerpts: &'static [Excerpt],
    /// The audit checks (`GET /api/audit`) that watch for the damage this
    /// defense prevents (what switching it off really shows is the lesson's
    /// `off` section: some defenses are hidden by the layers behind them).
    pub checks: &'static [&'static str],
    pub race: Sequence,
    pub defended: Sequence,
}

const CLIENT_SERVER_DB: &[Text] = &[
    text("客户端", "Client"),
    text("服务端", "Server"),
    text("数据库", "Database"),
];
const TWO_REQUESTS_DB: &[Text] = &[
    text("请求 A", "Request A"),
    text("请求 B", "Request B"),
    text("数据库", "Database"),
];
const PROVIDER_SERVER_DB: &[Text] = &[
    text("支付平台", "Provider"),
    text("服务端", "Server"),
    text("数据库", "Database"),
];
const USER_BROWSER_SERVER: &[Text] = &[
    text("用户", "User"),
    text("浏览器", "Browser"),
    text("服务端", "Server"),
];

const fn seq(actors: &'static [Text], steps: &'static [Step]) -> Sequence {
    Sequence { actors, steps }
}

/// The lesson of `defense` (every defense has one; a test checks).
pub fn lesson(defense: Defense) -> Option<Lesson> {
    LESSONS
        .iter()
        .find(|(of, _)| *of == defense)
        .map(|(_, lesson)| *lesson)
}

/// The lesson table: one entry per defense.
const LESSONS: &[(Defense, Lesson)] = &[
    (
        Defense::IdempotencyKey,
        Lesson {
            excerpts: &[
                code(
                    "src/defenses/idempotency_key.rs",
                    "idempotency_key::enter",
                    "入口：设置在途标记（并发的重复请求立即返回 409）；已提交的幂等键记录，由事务里的抢占步骤发现（重放或 422）",
                    "At the door: the in-flight mark (a concurrent repeat is 409 at once); the committed key row is found by the claim in the transaction (replay or 422)",
                ),
                code(
                    "src/defenses/idempotency_key.rs",
                    "idempotency_key::claim_in",
                    "幂等键记录与订单在同一个事务里：一次提交，崩溃时要么全部生效，要么全部不生效",
                    "The key row in the order's own transaction: one commit, all or nothing on a crash",
                ),
                code(
                    "src/defenses/idempotency_key.rs",
                    "idempotency_key::decide",
                    "幂等键表的判定规则：一个纯函数",
                    "The rules of the key table, a pure function",
                ),
                code(
                    "src/store/idempotency_keys.rs",
                    "idempotency_keys::insert_in_progress",
                    "决定竞态的那一条 SQL",
                    "The one statement that decides the race",
                ),
            ],
            checks: &["one_order_per_key", "no_stale_key_in_progress"],
            race: seq(
                CLIENT_SERVER_DB,
                &[
                    plain(0, 1, "POST /orders（键 K）", "POST /orders (key K)"),
                    plain(1, 2, "插入订单 #1", "INSERT order #1"),
                    bad(1, 0, "201……响应丢失，超时", "201 … response lost, timeout"),
                    plain(
                        0,
                        1,
                        "重试：POST /orders（键 K）",
                        "retry: POST /orders (key K)",
                    ),
                    bad(1, 2, "插入订单 #2：重复！", "INSERT order #2: duplicate!"),
                ],
            ),
            defended: seq(
                CLIENT_SERVER_DB,
                &[
                    plain(0, 1, "POST /orders（键 K）", "POST /orders (key K)"),
                    good(
                        1,
                        2,
                        "INSERT 键 K ON CONFLICT → 抢到",
                        "INSERT key K ON CONFLICT → won",
                    ),
                    plain(
                        1,
                        2,
                        "插入订单，保存 201 到键 K",
                        "INSERT order, store 201 with K",
                    ),
                    bad(1, 0, "201……响应丢失", "201 … response lost"),
                    plain(0, 1, "重试（键 K）", "retry (key K)"),
                    plain(1, 2, "键 K：已完成", "key K: completed"),
                    good(
                        1,
                        0,
                        "201 原样重放，没有第二单",
                        "201 replayed, no second order",
                    ),
                ],
            ),
        },
    ),
    (
        Defense::UniqueIndex,
        Lesson {
            excerpts: &[
                sql(
                    "migrations/postgres/20261126000001_foundation.sql",
                    "CREATE UNIQUE INDEX orders_user_key_uniq",
                    "唯一索引（部分索引，实验室可关）",
                    "The unique index (partial, so the lab can switch it off)",
                ),
                code(
                    "src/flows/orders/alone.rs",
                    "unique_index::try_place",
                    "先插订单；冲突就回滚，返回先成功的那一笔",
                    "Insert the order first; on a violation roll back and answer the winner",
                ),
                code(
                    "src/defenses/unique_index.rs",
                    "unique_index::on_violation",
                    "把唯一约束冲突转换成业务结果",
                    "A unique violation turned into an outcome",
                ),
                sql(
                    "migrations/mysql/20261126000001_foundation.sql",
                    "CREATE TABLE orders",
                    "MySQL 没有部分索引：生成列 guarded_key 加唯一索引",
                    "MySQL has no partial index: the generated column guarded_key under a unique index",
                ),
                code(
                    "src/store/orders.rs",
                    "orders::insert_one",
                    "插入一单：Postgres/SQLite 用 ON CONFLICT 和 RETURNING；MySQL 执行普通 INSERT，1062 就是答案，再把行读回来",
                    "One order row: ON CONFLICT and RETURNING on Postgres and SQLite; on MySQL a plain INSERT, error 1062 as the answer, the row read back",
                ),
                code(
                    "src/store/lab.rs",
                    "lab::check_then_insert",
                    "实验 check_then_insert_deadlock 的“先查”：对不存在的行加锁读，锁住的是间隙",
                    "The check of check_then_insert_deadlock: a locking read of a missing row locks the gap",
                ),
                code(
                    "src/lab/innodb.rs",
                    "innodb::buy_once",
                    "先查后插，还是先插后读：实验里一个买家的一次尝试",
                    "Check then insert, or insert then read: one buyer's attempt in the experiment",
                ),
                code(
                    "src/store/lab.rs",
                    "lab::touch_stock",
                    "实验 update_without_index：按无索引的列更新，锁住扫描过的每一行",
                    "update_without_index: an update by an unindexed column locks every row it scans",
                ),
            ],
            checks: &["one_order_per_key"],
            race: seq(
                TWO_REQUESTS_DB,
                &[
                    plain(
                        0,
                        2,
                        "有 (用户, K) 的订单吗？没有",
                        "order for (user, K)? none",
                    ),
                    plain(
                        1,
                        2,
                        "有 (用户, K) 的订单吗？没有",
                        "order for (user, K)? none",
                    ),
                    plain(0, 2, "INSERT 订单", "INSERT order"),
                    bad(1, 2, "INSERT 订单：第二笔！", "INSERT order: a second one!"),
                ],
            ),
            defended: seq(
                TWO_REQUESTS_DB,
                &[
                    plain(0, 2, "INSERT 订单 (用户, K)", "INSERT order (user, K)"),
                    good(
                        1,
                        2,
                        "INSERT 订单 (用户, K) → 唯一约束冲突",
                        "INSERT order (user, K) → unique violation",
                    ),
                    good(
                        1,
                        1,
                        "回滚，读出 A 的订单返回",
                        "roll back, answer A's order",
                    ),
                ],
            ),
        },
    ),
    (
        Defense::VersionLock,
        Lesson {
            excerpts: &[
                code(
                    "src/defenses/version_lock.rs",
                    "version_lock::take_stock",
                    "带校验的扣库存（版本号或条件扣减）；关掉时是读-改-写",
                    "Take stock guarded (version check or conditional decrement); switched off, read-modify-write",
                ),
                code(
                    "src/store/products.rs",
                    "products::take_stock_if_version",
                    "乐观锁的 SQL",
                    "The optimistic lock's SQL",
                ),
                code(
                    "src/store/products.rs",
                    "products::take_stock_if_enough",
                    "条件扣减的 SQL：不依赖之前读到的值，也不用重试",
                    "The conditional decrement's SQL: nothing from an earlier read, no retry",
                ),
                code(
                    "src/store/products.rs",
                    "products::batch_take",
                    "组提交的那一条 UPDATE：Postgres/SQLite 用 UPDATE … FROM (VALUES …)，MySQL 用多表 UPDATE … JOIN",
                    "The group commit's one UPDATE: UPDATE … FROM (VALUES …) on Postgres and SQLite, a multi-table UPDATE … JOIN on MySQL",
                ),
                code(
                    "src/flows/orders/alone.rs",
                    "version_lock::retry",
                    "冲突就重读、退避重试，有上限",
                    "On a conflict: re-read, back off, retry, bounded",
                ),
            ],
            checks: &["stock_conserved"],
            race: seq(
                TWO_REQUESTS_DB,
                &[
                    plain(0, 2, "读：库存 20", "read: stock 20"),
                    plain(1, 2, "读：库存 20", "read: stock 20"),
                    plain(0, 2, "写：库存 = 19", "write: stock = 19"),
                    bad(
                        1,
                        2,
                        "写：库存 = 19（丢了一次扣减）",
                        "write: stock = 19 (one sale lost)",
                    ),
                ],
            ),
            defended: seq(
                TWO_REQUESTS_DB,
                &[
                    plain(0, 2, "读：库存 20，版本 7", "read: stock 20, version 7"),
                    plain(1, 2, "读：库存 20，版本 7", "read: stock 20, version 7"),
                    plain(
                        0,
                        2,
                        "UPDATE … WHERE version = 7 → 1 行",
                        "UPDATE … WHERE version = 7 → 1 row",
                    ),
                    good(
                        1,
                        2,
                        "UPDATE … WHERE version = 7 → 0 行",
                        "UPDATE … WHERE version = 7 → 0 rows",
                    ),
                    good(
                        1,
                        2,
                        "重读版本 8，重试 → 1 行",
                        "re-read version 8, retry → 1 row",
                    ),
                ],
            ),
        },
    ),
    (
        Defense::StockGate,
        Lesson {
            excerpts: &[
                code(
                    "src/defenses/stock_gate.rs",
                    "stock_gate::admit",
                    "Redis 预扣：一次原子操作",
                    "The pre-deduction: one atomic claim",
                ),
                code(
                    "src/store/redis_kv.rs",
                    "redis::claim_and_decrement",
                    "Redis 里的 Lua 脚本：先拒重复，再扣减；归还只还一次",
                    "The Lua scripts in Redis: refuse the repeat, then decrement; give back once",
                ),
                code(
                    "src/flows/orders/front_door.rs",
                    "front_door::check",
                    "入口检查：先查本实例内存里的结果（本地缓存），再用一次 Redis 往返同时查幂等键和库存计数器",
                    "The front door: this instance's memory first (the local answer cache), then one Redis round trip for the key and the counter",
                ),
                code(
                    "src/defenses/stock_gate.rs",
                    "stock_gate::buckets",
                    "库存分桶（GATE_BUCKETS）：入口检查同时查询每个桶，全都不够才算售罄",
                    "Stock buckets (GATE_BUCKETS): the front door asks every bucket at once; sold out only when all are short",
                ),
            ],
            checks: &["stock_gate_matches_database"],
            race: seq(
                &[
                    text("一万个买家", "10,000 buyers"),
                    text("服务端", "Server"),
                    text("数据库", "Database"),
                ],
                &[
                    plain(0, 1, "一万个下单请求", "10,000 order requests"),
                    bad(
                        1,
                        2,
                        "一万个事务挤在一行库存上",
                        "10,000 transactions on one stock row",
                    ),
                    bad(
                        2,
                        0,
                        "九千九百个“售罄”来自数据库",
                        "9,900 \"sold out\" from the database",
                    ),
                ],
            ),
            defended: seq(
                &[
                    text("一万个买家", "10,000 buyers"),
                    text("Redis 预扣", "Redis pre-deduction"),
                    text("数据库", "Database"),
                ],
                &[
                    plain(0, 1, "Lua：重复？够吗？扣减", "Lua: repeat? enough? take"),
                    good(
                        1,
                        0,
                        "九千九百个“售罄”来自 Redis",
                        "9,900 \"sold out\" from Redis",
                    ),
                    good(
                        1,
                        2,
                        "只有抢到的一百个请求进数据库",
                        "only 100 winners reach the database",
                    ),
                ],
            ),
        },
    ),
    (
        Defense::PaymentToken,
        Lesson {
            excerpts: &[
                code(
                    "src/defenses/payment_token.rs",
                    "payment_token::consume",
                    "消费令牌：只成功一次",
                    "Consuming the token: it succeeds once",
                ),
                code(
                    "src/store/redis_kv.rs",
                    "redis::compare_and_delete",
                    "比较并删除（Lua）",
                    "Compare-and-delete (Lua)",
                ),
            ],
            checks: &["one_charge_per_order", "paid_orders_charged_once"],
            race: seq(
                &[
                    text("脚本", "Script"),
                    text("服务端", "Server"),
                    text("支付平台", "Provider"),
                ],
                &[
                    plain(0, 1, "支付（令牌 T，键 1）", "pay (token T, key 1)"),
                    plain(1, 2, "扣款 #1", "charge #1"),
                    plain(
                        0,
                        1,
                        "重放：支付（令牌 T，键 2）",
                        "replay: pay (token T, key 2)",
                    ),
                    bad(1, 2, "扣款 #2！", "charge #2!"),
                ],
            ),
            defended: seq(
                &[
                    text("浏览器", "Browser"),
                    text("服务端", "Server"),
                    text("Redis", "Redis"),
                ],
                &[
                    plain(0, 1, "打开支付弹窗", "open the pay popup"),
                    plain(1, 2, "SET 令牌 T（带 TTL）", "SET token T (TTL)"),
                    plain(0, 1, "支付（T）", "pay (T)"),
                    good(
                        1,
                        2,
                        "比较并删除 T → 1：可以支付",
                        "compare-and-delete T → 1: pay",
                    ),
                    plain(0, 1, "重放（T）", "replay (T)"),
                    good(
                        1,
                        2,
                        "比较并删除 T → 0：403",
                        "compare-and-delete T → 0: 403",
                    ),
                ],
            ),
        },
    ),
    (
        Defense::OrderLock,
        Lesson {
            excerpts: &[
                code(
                    "src/flows/payments.rs",
                    "order_lock::pay",
                    "一锁二判三更新",
                    "Lock, check, update",
                ),
                code(
                    "src/defenses/order_lock.rs",
                    "order_lock::acquire_release",
                    "SET NX PX 加锁；比较并删除解锁",
                    "SET NX PX to lock; compare-and-delete to unlock",
                ),
                code(
                    "src/store/redis_kv.rs",
                    "redis::compare_and_delete",
                    "解锁用的 Lua 脚本",
                    "The Lua script that unlocks",
                ),
            ],
            checks: &["one_charge_per_order", "paid_orders_charged_once"],
            race: seq(
                &[
                    text("标签页 A", "Tab A"),
                    text("标签页 B", "Tab B"),
                    text("数据库", "Database"),
                ],
                &[
                    plain(0, 2, "待支付？还没有支付记录", "pending? no payment yet"),
                    plain(1, 2, "待支付？还没有支付记录", "pending? no payment yet"),
                    plain(0, 2, "插入支付，扣款", "INSERT payment, charge"),
                    bad(
                        1,
                        2,
                        "插入支付，再扣一次！",
                        "INSERT payment, charge again!",
                    ),
                ],
            ),
            defended: seq(
                &[
                    text("标签页 A", "Tab A"),
                    text("标签页 B", "Tab B"),
                    text("Redis", "Redis"),
                    text("数据库", "Database"),
                ],
                &[
                    plain(0, 2, "SET lock NX PX → OK", "SET lock NX PX → OK"),
                    good(1, 2, "SET lock NX → 等待", "SET lock NX → wait"),
                    plain(
                        0,
                        3,
                        "判断：没有支付 → 插入，扣款",
                        "check: none → INSERT, charge",
                    ),
                    plain(0, 2, "比较并删除锁", "compare-and-delete the lock"),
                    plain(1, 2, "SET lock NX → OK", "SET lock NX → OK"),
                    good(
                        1,
                        3,
                        "判断：已有支付处理中 → 返回它",
                        "check: one is processing → answer it",
                    ),
                ],
            ),
        },
    ),
    (
        Defense::StateCheck,
        Lesson {
            excerpts: &[
                code(
                    "src/domain/status.rs",
                    "status::transitions",
                    "状态机：允许的流转",
                    "The state machine: the transitions allowed",
                ),
                code(
                    "src/defenses/state_check.rs",
                    "state_check::move_order",
                    "条件更新；关掉时是无条件写",
                    "A conditional update; switched off, a blind write",
                ),
                code(
                    "src/store/orders.rs",
                    "orders::move_status",
                    "条件更新的 SQL",
                    "The conditional update's SQL",
                ),
            ],
            checks: &["paid_orders_charged_once"],
            race: seq(
                PROVIDER_SERVER_DB,
                &[
                    plain(0, 1, "SUCCEEDED", "SUCCEEDED"),
                    plain(1, 2, "status = PAID", "status = PAID"),
                    plain(0, 1, "迟到的 FAILED", "late FAILED"),
                    bad(
                        1,
                        2,
                        "status = PENDING_PAYMENT：倒退！",
                        "status = PENDING_PAYMENT: backwards!",
                    ),
                ],
            ),
            defended: seq(
                PROVIDER_SERVER_DB,
                &[
                    plain(0, 1, "SUCCEEDED", "SUCCEEDED"),
                    plain(
                        1,
                        2,
                        "… WHERE status = 'PENDING_PAYMENT' → 1 行",
                        "… WHERE status = 'PENDING_PAYMENT' → 1 row",
                    ),
                    plain(0, 1, "迟到的 FAILED", "late FAILED"),
                    good(
                        1,
                        2,
                        "… WHERE status = 'PROCESSING' → 0 行：忽略",
                        "… WHERE status = 'PROCESSING' → 0 rows: ignored",
                    ),
                ],
            ),
        },
    ),
    (
        Defense::CallbackDedup,
        Lesson {
            excerpts: &[
                code(
                    "src/flows/payments.rs",
                    "callback_dedup::apply",
                    "业务处理和事件记录在同一个事务里",
                    "The effect and the event record in one transaction",
                ),
                code(
                    "src/defenses/callback_dedup.rs",
                    "callback_dedup::record_once",
                    "记录一次；重复就是唯一约束冲突",
                    "Record once; a repeat is a unique violation",
                ),
                sql(
                    "migrations/postgres/20261126000002_payments.sql",
                    "CREATE UNIQUE INDEX payment_events_event_uniq",
                    "事件 ID 上的唯一索引",
                    "The unique index on the event id",
                ),
                code(
                    "src/psp/alipay.rs",
                    "alipay::signed_string",
                    "支付宝：RSA2 签名的原文（去掉 sign、sign_type 和空值，按参数名排序）",
                    "Alipay: what RSA2 signs (all but sign, sign_type and empty values, sorted by name)",
                ),
                code(
                    "src/psp/alipay.rs",
                    "alipay::verify",
                    "支付宝：用支付宝公钥验签",
                    "Alipay: verified with Alipay's public key",
                ),
                code(
                    "src/routes/notifications.rs",
                    "alipay::receive",
                    "支付宝：先验签，再核对 app_id，最后只处理一次；接受就回 success",
                    "Alipay: verify, check the app_id, apply once; accepted is answered success",
                ),
                code(
                    "src/psp/wechatpay.rs",
                    "wechatpay::verify",
                    "微信支付：验 Wechatpay-Signature，并检查时间戳",
                    "WeChat Pay: Wechatpay-Signature verified, then the timestamp",
                ),
                code(
                    "src/psp/wechatpay.rs",
                    "wechatpay::decrypt",
                    "微信支付：用 APIv3 密钥解密 resource（AES-256-GCM）",
                    "WeChat Pay: the resource decrypted with the APIv3 key (AES-256-GCM)",
                ),
                code(
                    "src/flows/notifications.rs",
                    "notifications::apply_settlement",
                    "三个渠道殊途同归：核对支付和金额，再走同一个幂等步骤",
                    "Every channel ends here: the payment and the amount checked, then the same idempotent step",
                ),
                code(
                    "src/flows/notifications.rs",
                    "notifications::query_unsettled",
                    "主动查单：收不到通知时去问支付平台",
                    "Active query: asking the provider when no notification came",
                ),
            ],
            checks: &["events_applied_once"],
            race: seq(
                PROVIDER_SERVER_DB,
                &[
                    plain(0, 1, "事件 E（第 1 份）", "event E (copy 1)"),
                    plain(1, 2, "处理 E", "apply E"),
                    plain(0, 1, "事件 E（第 2 份，重试）", "event E (copy 2, a retry)"),
                    bad(1, 2, "再处理一次 E！", "apply E again!"),
                ],
            ),
            defended: seq(
                PROVIDER_SERVER_DB,
                &[
                    plain(0, 1, "事件 E（第 1 份）", "event E (copy 1)"),
                    plain(
                        1,
                        2,
                        "处理 + 插入事件 E（一个事务）",
                        "effect + INSERT event E (one transaction)",
                    ),
                    plain(0, 1, "事件 E（第 2 份）", "event E (copy 2)"),
                    good(
                        1,
                        2,
                        "插入 E → 唯一约束冲突，回滚",
                        "INSERT E → unique violation, roll back",
                    ),
                    good(
                        1,
                        0,
                        "200 duplicate：别再重试了",
                        "200 duplicate: stop retrying",
                    ),
                ],
            ),
        },
    ),
    (
        Defense::MessageDedup,
        Lesson {
            excerpts: &[
                code(
                    "src/flows/rewards.rs",
                    "message_dedup::award",
                    "积分和消息记录在同一个事务里",
                    "The points and the message record in one transaction",
                ),
                code(
                    "src/defenses/message_dedup.rs",
                    "message_dedup::first_delivery",
                    "只有第一次投递会生效",
                    "Only the first delivery has an effect",
                ),
                code(
                    "src/store/rewards.rs",
                    "rewards::record_processed",
                    "已处理消息表的 SQL",
                    "The SQL of the processed-messages table",
                ),
                code(
                    "src/store/redis_bus.rs",
                    "message_dedup::stream_receive",
                    "Redis Stream：先用 XAUTOCLAIM 接管没确认的，再用 XREADGROUP 读新的",
                    "Redis Stream: XAUTOCLAIM takes over what was never acknowledged, then XREADGROUP reads new entries",
                ),
                code(
                    "src/store/amqp_bus.rs",
                    "message_dedup::amqp_publish",
                    "RabbitMQ：持久消息，等到发布确认才算发出",
                    "RabbitMQ: a persistent message, sent only once the broker confirms it",
                ),
            ],
            checks: &["one_reward_per_order", "paid_orders_rewarded_once"],
            race: seq(
                &[
                    text("消息队列", "Broker"),
                    text("消费者", "Consumer"),
                    text("数据库", "Database"),
                ],
                &[
                    plain(0, 1, "订单已支付 M", "order paid M"),
                    plain(1, 2, "+199 积分", "+199 points"),
                    bad(1, 1, "确认前崩溃", "crash before the ack"),
                    plain(0, 1, "重新投递 M", "redeliver M"),
                    bad(1, 2, "再 +199 积分！", "+199 points again!"),
                ],
            ),
            defended: seq(
                &[
                    text("消息队列", "Broker"),
                    text("消费者", "Consumer"),
                    text("数据库", "Database"),
                ],
                &[
                    plain(0, 1, "订单已支付 M", "order paid M"),
                    plain(
                        1,
                        2,
                        "插入已处理 M + 积分（一个事务）",
                        "INSERT processed M + points (one tx)",
                    ),
                    bad(1, 1, "确认前崩溃", "crash before the ack"),
                    plain(0, 1, "重新投递 M", "redeliver M"),
                    good(1, 2, "M 已处理：直接跳过", "M already processed: no effect"),
                    good(1, 0, "确认", "ack"),
                ],
            ),
        },
    ),
    (
        Defense::ButtonDisable,
        Lesson {
            excerpts: &[js(
                "button_disable",
                "点击即置灰，响应回来后恢复",
                "Disabled on click, enabled again on the response",
            )],
            checks: &["suspected_double_submit"],
            race: seq(
                USER_BROWSER_SERVER,
                &[
                    plain(
                        0,
                        1,
                        "点击，80 毫秒后又点",
                        "click, click again 80 ms later",
                    ),
                    bad(1, 2, "发出两个 POST", "two POSTs sent"),
                ],
            ),
            defended: seq(
                USER_BROWSER_SERVER,
                &[
                    plain(0, 1, "点击", "click"),
                    good(1, 1, "按钮置灰", "button disabled"),
                    plain(1, 2, "一个 POST", "one POST"),
                    plain(2, 1, "响应", "response"),
                    good(1, 1, "按钮恢复", "button enabled"),
                ],
            ),
        },
    ),
    (
        Defense::PopupKey,
        Lesson {
            excerpts: &[
                js(
                    "popup_key",
                    "弹窗打开时生成键",
                    "The key is made when the popup opens",
                ),
                js(
                    "popup_key_submit",
                    "弹窗内每次提交复用它",
                    "Every submit inside the popup reuses it",
                ),
            ],
            checks: &["suspected_double_submit", "one_order_per_key"],
            race: seq(
                USER_BROWSER_SERVER,
                &[
                    plain(0, 1, "点击", "click"),
                    plain(1, 2, "POST（键 A）……超时", "POST (key A) … timeout"),
                    plain(0, 1, "再点一次", "click again"),
                    bad(
                        1,
                        2,
                        "POST（新键 B）：第二次操作！",
                        "POST (new key B): a second intent!",
                    ),
                ],
            ),
            defended: seq(
                USER_BROWSER_SERVER,
                &[
                    good(0, 1, "打开弹窗：生成键 K", "open the popup: key K made"),
                    plain(1, 2, "POST（键 K）……超时", "POST (key K) … timeout"),
                    plain(0, 1, "再点一次", "click again"),
                    plain(1, 2, "POST（还是键 K）", "POST (still key K)"),
                    good(2, 1, "原样重放：同一笔订单", "replayed: the same order"),
                ],
            ),
        },
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::excerpts::excerpt;

    #[test]
    fn every_defense_has_a_lesson_and_every_marker_is_in_the_source() {
        for defense in Defense::all() {
            let lesson =
                lesson(defense).unwrap_or_else(|| panic!("no lesson for {}", defense.id()));
            assert!(!lesson.excerpts.is_empty(), "{}", defense.id());
            for piece in lesson.excerpts {
                let code = excerpt(piece.path, piece.cut).unwrap_or_else(|| {
                    panic!(
                        "{}: {:?} missing in {}",
                        defense.id(),
                        piece.cut,
                        piece.path
                    )
                });
                assert!(
                    code.lines()
                        .any(|line| !line.trim().is_empty() && !line.trim().starts_with("//")),
                    "{}: {:?} has no code",
                    defense.id(),
                    piece.cut
                );
            }
            for sequence in [lesson.race, lesson.defended] {
                for step in sequence.steps {
                    assert!(step.from < sequence.actors.len() && step.to < sequence.actors.len());
                }
            }
        }
    }
}
