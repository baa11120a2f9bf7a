//! The terms a learner of this topic searches for, Chinese ↔ English.

use crate::text::{Text, text};

/// (term, what it means), both in both languages.
pub const GLOSSARY: &[(Text, Text)] = &[
    (
        text("幂等性", "idempotency"),
        text(
            "同一操作执行多次与执行一次效果相同",
            "doing it many times has the effect of doing it once",
        ),
    ),
    (
        text("天然幂等", "naturally idempotent"),
        text(
            "GET、整体 PUT、DELETE：重复执行本身无害",
            "GET, a PUT of a whole state, DELETE: repeats are harmless by definition",
        ),
    ),
    (
        text("幂等键 / 幂等号", "idempotency key"),
        text(
            "客户端为一次业务动作生成的唯一标识",
            "the client's unique id for one business action",
        ),
    ),
    (
        text("防重 / 防重表", "deduplication / dedup table"),
        text(
            "记录已处理的请求或事件，拒绝第二次",
            "a record of what was processed, refusing it a second time",
        ),
    ),
    (
        text("唯一索引", "unique index"),
        text(
            "数据库层面保证某组值只出现一次",
            "the database guarantees a set of values appears once",
        ),
    ),
    (
        text("乐观锁", "optimistic lock"),
        text(
            "写入时校验读到的版本号，冲突则重试",
            "the write checks the version it read; a conflict retries",
        ),
    ),
    (
        text("版本号", "version number"),
        text(
            "每次写入加一的计数器，乐观锁的依据",
            "a counter bumped on every write, the basis of optimistic locking",
        ),
    ),
    (
        text("悲观锁", "pessimistic lock"),
        text(
            "SELECT … FOR UPDATE，先锁再改",
            "SELECT … FOR UPDATE: lock first, then change",
        ),
    ),
    (
        text("超卖", "oversell"),
        text("卖出的数量超过库存", "selling more units than exist"),
    ),
    (
        text("丢失更新", "lost update"),
        text(
            "两个读-改-写互相覆盖",
            "two read-modify-writes overwrite each other",
        ),
    ),
    (
        text("库存预扣", "stock pre-deduction (gate)"),
        text(
            "在缓存里先扣名额，只放赢家进数据库",
            "taking units in the cache first, only winners reach the database",
        ),
    ),
    (
        text("分布式锁", "distributed lock"),
        text(
            "跨进程的互斥锁，如 Redis SET NX PX",
            "a lock across processes, e.g. Redis SET NX PX",
        ),
    ),
    (
        text("一锁二判三更新", "lock, check, update"),
        text(
            "先加锁，再判断状态，最后更新",
            "take the lock, check the state, then update",
        ),
    ),
    (
        text("一次性令牌", "one-time token"),
        text(
            "服务端签发、只能消费一次的令牌",
            "a server-issued token that can be consumed once",
        ),
    ),
    (
        text("状态机", "state machine"),
        text(
            "状态与允许的流转",
            "states and the transitions allowed between them",
        ),
    ),
    (
        text("条件更新", "conditional update"),
        text(
            "UPDATE … WHERE status = 旧状态",
            "UPDATE … WHERE status = the state it comes from",
        ),
    ),
    (
        text("回调", "callback (webhook)"),
        text(
            "支付平台异步通知结果",
            "the provider reporting the outcome asynchronously",
        ),
    ),
    (
        text("验签", "signature verification"),
        text(
            "用共享密钥校验回调未被伪造",
            "checking with a shared secret that a callback is genuine",
        ),
    ),
    (
        text("至少一次", "at-least-once"),
        text(
            "消息可能重复投递，但不会丢",
            "a message may arrive twice but is never lost",
        ),
    ),
    (
        text("重复消费", "duplicate consumption"),
        text("同一条消息被处理了两次", "one message processed twice"),
    ),
    (
        text("事务性发件箱", "transactional outbox"),
        text(
            "消息与状态变更写在同一事务里",
            "the message is written in the transaction of the state change",
        ),
    ),
    (
        text("秒杀", "flash sale"),
        text(
            "限时限量抢购，瞬时高并发",
            "a time-limited sale of few units under a burst of traffic",
        ),
    ),
];
