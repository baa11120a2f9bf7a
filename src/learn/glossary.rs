//! The term table: every term the learning material uses, Chinese ↔ English,
//! with what it means — and, for some, the Chinese variants the texts must not
//! use, so that one idea has one name everywhere (docs/teaching.md). The
//! glossary page shows it; tests walk every Chinese text against it.

use crate::text::{Text, text};

/// One term.
#[derive(Debug, Clone, Copy)]
pub struct Term {
    pub term: Text,
    pub meaning: Text,
    /// Chinese words the texts must not use for this term.
    pub not_zh: &'static [&'static str],
}

const fn term(
    zh: &'static str,
    en: &'static str,
    meaning_zh: &'static str,
    meaning_en: &'static str,
) -> Term {
    Term {
        term: text(zh, en),
        meaning: text(meaning_zh, meaning_en),
        not_zh: &[],
    }
}

impl Term {
    const fn instead_of(mut self, variants: &'static [&'static str]) -> Self {
        self.not_zh = variants;
        self
    }
}

/// Pages where a banned variant may appear once, to introduce it as the same
/// thing as the term (幂等号 is what many notes call the 幂等键).
pub const INTRODUCED_ON: &[&str] = &["/learn", "/learn/glossary"];

/// The term table, in the order a learner meets the terms.
pub const GLOSSARY: &[Term] = &[
    term("幂等（幂等性）", "idempotent (idempotency)", "同一个请求发一次和发多次，对服务端的效果相同（响应可以不同）", "repeating a request has the same effect on the server as sending it once (the responses may differ)"),
    term("天然幂等", "naturally idempotent", "按 RFC 9110 定义就是幂等的方法：GET、HEAD、OPTIONS、TRACE、PUT、DELETE。幂等不等于并发安全：两个不同的 PUT 仍会丢失更新，要用 If-Match/ETag", "idempotent by RFC 9110's definition: GET, HEAD, OPTIONS, TRACE, PUT, DELETE. Not the same as safe under concurrency: two different PUTs still lose an update without If-Match/ETag"),
    term("幂等键", "idempotency key", "客户端为一次业务操作生成的唯一标识，这次操作的每次重试都带着它；很多资料叫它“幂等号”", "the client's unique id for one business action, carried by every retry of it")
        .instead_of(&["幂等号"]),
    term("幂等键表（防重表）", "key table (dedup table)", "记录每个幂等键和它的最终响应；用一条原子插入抢占键", "records each key and its final response; a key is claimed by one atomic insert"),
    term("响应", "response", "服务端对请求的回复：状态码、响应头、响应体", "the server's reply to a request: status, headers, body")
        .instead_of(&["应答"]),
    term("重放", "replay", "把保存下来的状态码和响应体原样再返回一次", "sending the stored status and body again, unchanged"),
    term("在途标记", "in-flight mark", "Redis 里的 SET NX 标记：同一个键的并发重复请求立刻得到 409", "a SET NX mark in Redis: a concurrent repeat of the key gets 409 at once"),
    term("租约", "lease", "一个键最多处于“处理中”多久；持有者死了，过期后由重试接手", "how long a key may stay in progress; if its holder dies, a retry takes over once it ends"),
    term("保留期", "retention", "已完成的响应能被重放多久（本站是 24 小时）", "how long a finished response is replayed (24 hours here)"),
    term("唯一索引", "unique index", "数据库保证某组值只出现一次，在写入的那一刻检查", "the database guarantees a set of values appears once, checked at the moment of the write"),
    term("唯一约束冲突", "unique violation", "插入撞上唯一索引：PostgreSQL 的 23505，MySQL 的 1062", "an insert hitting a unique index: PostgreSQL 23505, MySQL 1062"),
    term("事务", "transaction", "一组写入要么一起提交，要么都不生效", "writes that commit together or not at all"),
    term("隔离级别", "isolation level", "读已提交（PostgreSQL 默认）、可重复读（InnoDB 默认）、可串行化", "READ COMMITTED (PostgreSQL's default), REPEATABLE READ (InnoDB's default), SERIALIZABLE"),
    term("快照读", "snapshot read", "普通 SELECT 读快照，不加锁（读已提交下每条语句一个快照，可重复读下整个事务一个）", "a plain SELECT reads a snapshot, without locks (one per statement under READ COMMITTED, one per transaction under REPEATABLE READ)"),
    term("当前读", "current read (locking read)", "UPDATE、DELETE、SELECT … FOR UPDATE 读最新提交的版本并加锁", "UPDATE, DELETE and SELECT … FOR UPDATE read the latest committed version and lock it"),
    term("行锁", "row lock", "UPDATE 锁住它改的行（InnoDB 可重复读下是它扫描过的每一行），直到事务结束", "an UPDATE locks the rows it changes (in InnoDB at REPEATABLE READ: every row it scans) until the transaction ends"),
    term("共享锁 / 排他锁", "shared lock / exclusive lock", "共享锁之间相互兼容（InnoDB 检查外键时，就在父表里被引用的那一行上加共享锁），排他锁和同一行上的其他共享锁、排他锁都冲突（UPDATE 加的就是排他锁）", "shared locks are compatible with each other (InnoDB takes one on the parent row to check a foreign key); an exclusive lock conflicts with any other shared or exclusive lock on the same row (an UPDATE takes one)"),
    term("间隙锁", "gap lock", "InnoDB 可重复读下锁住索引记录之间的间隙，阻止插入", "InnoDB, REPEATABLE READ: locks the gap between index entries against inserts"),
    term("死锁", "deadlock", "两个事务各自拿着对方要的锁、互相等待；InnoDB 发现后回滚其中一个（错误 1213），由应用重试", "two transactions each hold a lock the other waits for; InnoDB notices and rolls one back (error 1213), and the application retries"),
    term("生成列", "generated column", "由同一行的其他列算出来的列；MySQL 没有部分索引，就在生成列上建唯一索引来代替部分索引", "a column computed from the others of its row; MySQL, which has no partial index, puts a unique index on one instead"),
    term("乐观锁", "optimistic locking", "写入时校验读到的版本号，冲突就重试；读和写之间不持锁，但写入本身照样加行锁", "the write checks the version it read and retries on a conflict; no lock between read and write, but the write itself takes the row lock"),
    term("版本号", "version number", "每次写入加一的计数器，乐观锁的依据", "a counter bumped on every write, the basis of optimistic locking"),
    term("悲观锁", "pessimistic locking", "SELECT … FOR UPDATE：读的时候就加锁，持有到事务结束", "SELECT … FOR UPDATE: lock at the read, hold until the transaction ends"),
    term("条件扣减", "conditional decrement", "UPDATE … SET stock = stock - 1 WHERE id = ? AND stock >= 1，再看影响行数：秒杀扣库存的标准写法", "UPDATE … SET stock = stock - 1 WHERE id = ? AND stock >= 1, then check the affected rows: the flash-sale way to take stock"),
    term("条件更新", "conditional update", "UPDATE … WHERE status = 原状态：检查和修改是同一步", "UPDATE … WHERE status = the state it comes from: the check and the change in one step"),
    term("丢失更新", "lost update", "两个读-改-写互相覆盖", "two read-modify-writes overwrite each other"),
    term("超卖", "oversell", "卖出的数量超过库存", "selling more units than exist"),
    term("少卖", "undersell", "有人想买，库存却没卖出去", "units that buyers wanted stay unsold"),
    term("热点行", "hot row", "所有请求都要写的同一行，比如秒杀商品的库存行", "one row every request writes, like a flash-sale product's stock"),
    term("组提交", "group commit", "同一时刻到达的写入共用一个事务、一次提交（应用层把多笔订单合成一批，不是 MySQL binlog 的组提交）", "writes arriving at the same moment share one transaction and one commit (here: orders batched by the application, not the database's own WAL/binlog group commit)"),
    term("Redis 库存预扣", "stock pre-deduction (stock_gate)", "先在 Redis 里扣库存，只让抢到的请求去数据库", "taking units in Redis first, so that only the requests that got one reach the database")
        .instead_of(&["闸门"]),
    term("本地缓存", "local cache", "进程自己内存里的一层缓存，挡在 Redis 前面；这里存的是已完成的请求结果，落到同一实例的重复请求不用再往返 Redis。每个实例各有一份，所以失效方式要专门设计（这里靠轮询共享开关表，最多滞后一个刷新周期）", "a cache in the process's own memory, in front of Redis; here it holds completed answers, so a repeat reaching the same instance needs no Redis round trip. Every instance has its own, so invalidation across instances must be designed (here: polling the shared switch board, up to one refresh period late)"),
    term("多级缓存", "multi-level cache", "本地缓存在前、Redis 在后、数据库兜底的分层读取", "layered reads: process memory first, then Redis, the database last"),
    term("抢到 / 没抢到的请求", "winners / losers of a sale", "预扣到库存的请求，和被告知售罄的请求", "requests that took a unit, and those told sold out")
        .instead_of(&["输家", "赢家"]),
    term("对账", "reconciliation", "拿两份记录互相核对并修正差异：Redis 计数器对数据库，支付记录对平台账单", "comparing two records and fixing what differs: the Redis counter with the database, payments with the provider's bill"),
    term("哈希槽", "hash slot", "Redis Cluster 把 key 分到 16384 个槽里（CRC16(key) mod 16384），每个主节点负责其中一部分", "Redis Cluster puts every key in one of 16,384 slots (CRC16(key) mod 16384); each master serves a subset"),
    term("哈希标签", "hash tag", "key 里第一对花括号之间的非空部分：有它时只按它算槽，让一个脚本的 key 落在同一个槽", "the non-empty part between a key's first braces: only it decides the slot, so that one script's keys share a slot"),
    term("库存分桶", "stock buckets", "把一个热点库存计数器拆成放在不同槽里的 N 个 key，分摊到多个节点；每个桶都空了才算售罄", "a hot counter split into N keys in different slots, so over several nodes; sold out only once every bucket is empty"),
    term("主从切换", "failover", "主节点挂掉后从节点被提升为主节点；复制是异步的，最后几次写入可能丢失", "a replica promoted when its master fails; replication is asynchronous, so the last writes can be lost"),
    term("心跳", "heartbeat", "每个实例定时写入的存活记录；连续几次缺失，就认为它挂了", "a record each instance writes on a timer; when several are missed, it is taken for dead"),
    term("分布式锁", "distributed lock", "跨进程的互斥锁，如 Redis 的 SET NX PX", "a lock across processes, e.g. Redis SET NX PX"),
    term("看门狗", "watchdog", "持有者活着时自动给锁续期（Redisson 默认 30 秒）", "renews a lock while its holder is alive (Redisson: 30 s by default)"),
    term("防护令牌", "fencing token", "每次授予锁时递增的数字，存储端拒绝更小数字的写入", "a number that grows with every lock grant; the storage refuses writes with an older one"),
    term("一锁二判三更新", "lock, check, update", "先加锁，再判断状态，最后更新", "take the lock, check the state, then update"),
    term("一次性令牌", "one-time token", "服务端签发、只能用一次的令牌；重复使用会被拒绝", "a server-issued token that works once; a repeat is refused"),
    term("状态机", "state machine", "状态和它们之间允许的流转", "states and the transitions allowed between them"),
    term("回调（异步通知）", "callback (asynchronous notification, webhook)", "支付平台异步告诉商户支付结果，至少送达一次", "the provider reporting the outcome asynchronously, at least once"),
    term("验签", "signature verification", "确认通知确实来自支付平台、未被篡改：支付宝用支付宝公钥验 RSA2，微信支付用平台公钥验 SHA256 with RSA，Stripe 式回调用共享密钥验 HMAC", "checking that a notification really comes from the provider, unchanged: RSA2 with Alipay's public key, SHA256-with-RSA with WeChat Pay's platform key, an HMAC with a shared secret for Stripe-style webhooks"),
    term("主动查单", "active order query", "收不到回调时主动向支付平台查询支付结果", "asking the provider for a payment's outcome when no callback came"),
    term("至少一次", "at-least-once", "消息可能重复投递，但不会丢", "a message may arrive twice but is never lost"),
    term("恰好一次", "exactly-once", "也常叫“精确一次”。消息队列到你的数据库之间做不到；靠至少一次加幂等消费实现同样的效果", "not possible from a broker into your database; at-least-once plus an idempotent consumer gives the same effect"),
    term("重复消费", "duplicate consumption", "同一条消息被处理了两次", "one message processed twice"),
    term("本地消息表（事务性 outbox）", "transactional outbox (local message table)", "消息和状态变更写在同一个事务里，事后再发布", "the message is written in the transaction of the state change and published afterwards"),
    term("事务消息", "transactional message (RocketMQ)", "先发消费者不可见的半消息，本地事务后再提交或回滚；Broker 收不到结果就回查", "a half message invisible to consumers, committed or rolled back after the local transaction; the broker checks back if it hears neither"),
    term("发布确认", "publisher confirm (RabbitMQ)", "broker 对已发布消息回复 basic.ack：可路由的消息，所有目标队列都接收后才确认（持久化消息进持久化队列须先落盘，仲裁队列须多数副本收到）；路由不到的消息也会确认，mandatory 时先回 basic.return。收到 ack 之前、或收到 basic.nack，生产者都应视为未送达", "the broker's basic.ack for a published message: for a routed one, once every queue has accepted it (a persistent message in a durable queue: written to disk; a quorum queue: a majority of replicas); an unroutable one is acked too, after basic.return if it was mandatory. Until the ack, or after a basic.nack, the publisher counts it as not taken"),
    term("手动确认（ack）", "manual acknowledgement (ack)", "消费者处理完成后才发送 basic.ack；通道或连接断开时，未确认的消息回到队列重新投递，带 redelivered 标记", "the consumer sends basic.ack after its work; when its channel or connection closes, what it had not acknowledged goes back to the queue and is delivered again, flagged redelivered"),
    term("预取（prefetch）", "prefetch (basic.qos)", "broker 同时投递给一个消费者、尚未确认的消息数上限（由 basic.qos 设置）", "how many unacknowledged messages the broker hands one consumer at most"),
    term("死信队列", "dead-letter queue (DLQ)", "处理不了的消息转去的队列，等待人工排查。RabbitMQ 里，队列配了死信交换机（x-dead-letter-exchange 或 policy）时，被拒绝且不重新入队、TTL 过期、超出长度上限被挤掉、或超过仲裁队列投递上限的消息，会被重新发布到死信交换机，再路由到死信队列；没配就直接丢弃", "where messages that cannot be handled go to wait for a person. In RabbitMQ, if the queue has a dead-letter exchange (x-dead-letter-exchange or a policy), a message rejected without requeue, expired by its TTL, dropped by a length limit, or past a quorum queue's delivery limit is republished there; without one it is discarded"),
    term("防抖", "debounce", "事件停下 N 毫秒后才执行一次", "run once, after the events stop for N ms"),
    term("节流", "throttle", "每 N 毫秒最多执行一次", "run at most once every N ms"),
    term("秒杀", "flash sale", "限时限量抢购，瞬时高并发", "a time-limited sale of few units under a burst of traffic"),
    term("Redis", "Redis", "本站的缓存和协调存储；嵌入模式下由进程内语义相同的实现代替", "the cache and coordinator here; the embedded default uses an in-process store with the same semantics")
        .instead_of(&["键存储"]),
];

/// Every Chinese word the texts must not use, with the term it stands for.
pub fn banned_zh() -> impl Iterator<Item = (&'static str, &'static Term)> {
    GLOSSARY
        .iter()
        .flat_map(|term| term.not_zh.iter().map(move |variant| (*variant, term)))
}

/// The first thing wrong with a Chinese text, if any: a banned variant, a
/// label written twice in a row ("防线 防线"), Markdown emphasis left raw, or
/// an English word in italics.
pub fn check_zh(text: &str) -> Option<String> {
    if let Some((variant, term)) = banned_zh().find(|(variant, _)| text.contains(variant)) {
        return Some(format!("「{variant}」: say「{}」", term.term.zh));
    }
    if text.contains("**") {
        return Some("raw ** (Markdown emphasis that did not render)".into());
    }
    doubled_label(text).map(|label| format!("「{label}」 twice in a row"))
}

/// A run of Chinese characters repeated right after a space: "审计 审计".
fn doubled_label(text: &str) -> Option<String> {
    let words: Vec<&str> = text.split(|c: char| c.is_whitespace()).collect();
    words
        .windows(2)
        .find(|pair| {
            pair[0] == pair[1]
                && pair[0].chars().count() >= 2
                && pair[0]
                    .chars()
                    .all(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
        })
        .map(|pair| pair[0].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checks_catch_what_they_are_for() {
        assert!(check_zh("把应答存起来").is_some());
        assert!(check_zh("防线 防线").is_some());
        assert!(check_zh("**粗体**没渲染").is_some());
        assert_eq!(check_zh("把响应存起来，审计通过"), None);
    }

    #[test]
    fn no_term_bans_its_own_name() {
        for term in GLOSSARY {
            for variant in term.not_zh {
                assert!(!term.term.zh.contains(variant), "{}", term.term.zh);
            }
        }
    }
}
