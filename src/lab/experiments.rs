//! The experiments of the lab: for each server-side defense, a bounded attack
//! that produces its anomaly when the defense is off and none when it is on.
//! The layers that would hide the anomaly are off in both runs, so each
//! experiment isolates one defense (docs/design.md §6).
//!
//! A second kind compares correct *variants* of a defense instead of switching
//! it off: `hot_row` runs the same hot-row sale with the version check, the
//! conditional decrement and the group commit; none of them oversells, and the
//! anomaly counted is the cost (retries).

use crate::domain::Channel;
use crate::store::db::Backend;
use crate::switches::{Defense, StockWrite};
use crate::text::{Text, text};

/// Which attack an experiment runs (see `attacks.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// 20 identical requests at once: one user, one key.
    DoubleSubmit,
    /// 30 buyers race for 10 units.
    Oversell,
    /// 60 buyers on 10 units: how many losers reach the database.
    LosersToDatabase,
    /// One pay request replayed with its used token and a new key.
    TokenReplay,
    /// 10 tabs pay one order at once, each with its own token and key.
    TwoTabsPay,
    /// SUCCEEDED, then a late FAILED for the same payment.
    LateFailed,
    /// One provider event delivered five times.
    CallbackRedelivery,
    /// Three paid orders whose reward messages are redelivered.
    MessageRedelivery,
    /// 100 buyers at once on 50 units of one row, the stock written one way.
    HotRow,
    /// 8 buyers of one key: check then insert, or insert first (InnoDB).
    CheckThenInsert,
    /// An update of one product by a column without an index, and another
    /// product's update beside it (InnoDB).
    UpdateWithoutIndex,
}

/// One correct way of doing what an experiment compares.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    pub id: &'static str,
    pub title: Text,
    /// How a guarded order takes its stock in this variant.
    pub stock_write: StockWrite,
    /// Whether the orders of a moment share one transaction.
    pub group_commit: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Experiment {
    pub id: &'static str,
    pub defense: Defense,
    pub title: Text,
    /// What `anomalies` counts.
    pub anomaly: Text,
    /// Layers switched off in both runs because they would hide the anomaly.
    pub hidden: &'static [Defense],
    /// The race window the attack needs (0: none).
    pub race_window_ms: u64,
    pub attack: Attack,
    /// Correct variants to compare (run with `{"variant": id}`); empty for an
    /// experiment run with the defense off and on.
    pub variants: &'static [Variant],
    /// The payment channels it can run in (`{"channel": …}`), the first by default.
    pub channels: &'static [Channel],
    /// The engines it runs on; empty: every engine.
    pub engines: &'static [Backend],
}

const CARD: &[Channel] = &[Channel::Card];

/// The ways of taking stock on a hot row that `hot_row` compares.
const HOT_ROW_VARIANTS: &[Variant] = &[
    Variant {
        id: "version_check",
        title: text(
            "版本号校验，一单一个事务",
            "Version check, one order per transaction",
        ),
        stock_write: StockWrite::VersionCheck,
        group_commit: false,
    },
    Variant {
        id: "conditional_decrement",
        title: text(
            "条件扣减，一单一个事务",
            "Conditional decrement, one order per transaction",
        ),
        stock_write: StockWrite::ConditionalDecrement,
        group_commit: false,
    },
    Variant {
        id: "group_commit",
        title: text("版本号校验 + 组提交", "Version check with group commit"),
        stock_write: StockWrite::VersionCheck,
        group_commit: true,
    },
];

pub const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        id: "double_submit_key",
        defense: Defense::IdempotencyKey,
        title: text(
            "同一个幂等键并发提交 20 次",
            "20 concurrent submits with one idempotency key",
        ),
        anomaly: text(
            "同一次业务操作多出来的订单数",
            "extra orders for one intent",
        ),
        hidden: &[Defense::UniqueIndex, Defense::StockGate],
        race_window_ms: 0,
        attack: Attack::DoubleSubmit,
        variants: &[],
        channels: CARD,
        engines: &[],
    },
    Experiment {
        id: "double_submit_index",
        defense: Defense::UniqueIndex,
        title: text(
            "幂等键检查关闭时的并发重复提交",
            "Concurrent duplicates with the key check off",
        ),
        anomaly: text(
            "同一（用户，幂等键）组合多出来的订单数",
            "extra orders for one (user, key)",
        ),
        hidden: &[Defense::IdempotencyKey, Defense::StockGate],
        race_window_ms: 0,
        attack: Attack::DoubleSubmit,
        variants: &[],
        channels: CARD,
        engines: &[],
    },
    Experiment {
        id: "oversell",
        defense: Defense::VersionLock,
        title: text("30 个买家抢 10 件", "30 buyers race for 10 units"),
        anomaly: text(
            "丢失的库存扣减（超卖的件数）",
            "lost stock updates (units oversold)",
        ),
        hidden: &[Defense::StockGate],
        race_window_ms: 200,
        attack: Attack::Oversell,
        variants: &[],
        channels: CARD,
        engines: &[],
    },
    Experiment {
        id: "hot_row",
        defense: Defense::VersionLock,
        title: text(
            "热点行：100 个买家同时抢 50 件，三种扣库存写法",
            "A hot row: 100 buyers at once for 50 units, three ways to take stock",
        ),
        anomaly: text(
            "重试次数（版本号冲突）；三种写法都不会超卖",
            "retries (version conflicts); no variant oversells",
        ),
        hidden: &[Defense::StockGate],
        race_window_ms: 0,
        attack: Attack::HotRow,
        variants: HOT_ROW_VARIANTS,
        channels: CARD,
        engines: &[],
    },
    Experiment {
        id: "losers_to_database",
        defense: Defense::StockGate,
        title: text(
            "60 个买家抢 10 件：没抢到的请求去哪儿了？",
            "60 buyers on 10 units: where do the losers go?",
        ),
        anomaly: text(
            "没抢到却打到数据库的请求（售罄由数据库返回）",
            "losers that reached the database (sold out answered by it)",
        ),
        hidden: &[],
        race_window_ms: 0,
        attack: Attack::LosersToDatabase,
        variants: &[],
        channels: CARD,
        engines: &[],
    },
    Experiment {
        id: "token_replay",
        defense: Defense::PaymentToken,
        title: text(
            "用过的支付令牌换个幂等键重放",
            "A used payment token replayed with a new key",
        ),
        anomaly: text("同一订单多出来的扣款", "extra charges for one order"),
        hidden: &[Defense::StateCheck, Defense::UniqueIndex],
        race_window_ms: 0,
        attack: Attack::TokenReplay,
        variants: &[],
        channels: CARD,
        engines: &[],
    },
    Experiment {
        id: "two_tabs_pay",
        defense: Defense::OrderLock,
        title: text(
            "10 个标签页同时支付同一笔订单",
            "10 tabs pay one order at once",
        ),
        anomaly: text("同一订单多出来的支付", "extra payments for one order"),
        hidden: &[Defense::UniqueIndex],
        race_window_ms: 200,
        attack: Attack::TwoTabsPay,
        variants: &[],
        channels: CARD,
        engines: &[],
    },
    Experiment {
        id: "late_failed",
        defense: Defense::StateCheck,
        title: text(
            "成功之后迟到的 FAILED 回调",
            "A late FAILED after the SUCCEEDED",
        ),
        anomaly: text(
            "被拉回未支付的已支付订单",
            "paid orders moved back to unpaid",
        ),
        hidden: &[],
        race_window_ms: 0,
        attack: Attack::LateFailed,
        variants: &[],
        channels: &[Channel::Card, Channel::Alipay],
        engines: &[],
    },
    Experiment {
        id: "callback_redelivery",
        defense: Defense::CallbackDedup,
        title: text(
            "同一个支付事件回调 5 次",
            "One provider event delivered five times",
        ),
        anomaly: text("事件被重复处理的次数", "extra times the event was applied"),
        hidden: &[Defense::StateCheck],
        race_window_ms: 0,
        attack: Attack::CallbackRedelivery,
        variants: &[],
        channels: &[Channel::Card, Channel::Alipay, Channel::Wechatpay],
        engines: &[],
    },
    Experiment {
        id: "message_redelivery",
        defense: Defense::MessageDedup,
        title: text(
            "积分消费者确认前崩溃，消息重投",
            "The rewards consumer crashes before its ack; the message comes again",
        ),
        anomaly: text("多发的积分", "extra rewards"),
        hidden: &[],
        race_window_ms: 0,
        attack: Attack::MessageRedelivery,
        variants: &[],
        channels: CARD,
        engines: &[],
    },
    Experiment {
        id: "check_then_insert_deadlock",
        defense: Defense::UniqueIndex,
        title: text(
            "先查后插：8 个请求同时 SELECT … FOR UPDATE 一行不存在的记录再 INSERT（InnoDB）",
            "Check then insert: 8 requests SELECT … FOR UPDATE a missing row, then INSERT it (InnoDB)",
        ),
        anomaly: text(
            "死锁次数（错误 1213，事务被回滚后重试）",
            "deadlocks (error 1213: the transaction rolled back and retried)",
        ),
        hidden: &[],
        race_window_ms: 0,
        attack: Attack::CheckThenInsert,
        variants: &[],
        channels: CARD,
        engines: MYSQL,
    },
    Experiment {
        id: "update_without_index",
        defense: Defense::UniqueIndex,
        title: text(
            "WHERE 条件用不上索引的 UPDATE，和另一件商品的 UPDATE（InnoDB）",
            "An UPDATE whose WHERE uses no index, beside another product's UPDATE (InnoDB)",
        ),
        anomaly: text(
            "被挡住的另一件商品的更新（等锁超时，错误 1205）",
            "updates of another product blocked (lock wait timeout, error 1205)",
        ),
        hidden: &[],
        race_window_ms: 0,
        attack: Attack::UpdateWithoutIndex,
        variants: &[],
        channels: CARD,
        engines: MYSQL,
    },
];

const MYSQL: &[Backend] = &[Backend::Mysql];

impl Experiment {
    /// Whether it runs on `backend`.
    pub fn runs_on(&self, backend: Backend) -> bool {
        self.engines.is_empty() || self.engines.contains(&backend)
    }

    /// One of its variants, by id.
    pub fn variant(&self, id: &str) -> Option<&'static Variant> {
        self.variants.iter().find(|variant| variant.id == id)
    }
}

pub fn find(id: &str) -> Option<&'static Experiment> {
    EXPERIMENTS.iter().find(|experiment| experiment.id == id)
}

/// The experiments that show `defense` (none for the browser defenses).
pub fn for_defense(defense: Defense) -> Vec<&'static Experiment> {
    EXPERIMENTS
        .iter()
        .filter(|experiment| experiment.defense == defense)
        .collect()
}
