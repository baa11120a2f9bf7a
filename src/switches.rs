//! The defenses by id, the one table that describes each of them, and the switch
//! board that turns them on and off at run time (docs/design.md §2).
//!
//! A leaf module: everything that names a defense (the `Flashguard-Defense`
//! header, metrics, problem pages, the lab, the lessons) reads it from here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use strum::{EnumCount, EnumIter, EnumString, IntoEnumIterator, IntoStaticStr};

use crate::text::{Text, text};

/// The header that names the defense which produced an answer
/// (`Flashguard-Defense`; header names are case-insensitive, and HTTP/1.1 in
/// actix-web writes them in lower case).
pub const DEFENSE_HEADER: &str = "flashguard-defense";

/// Every defense this build implements, in the order a request meets them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    EnumIter,
    EnumCount,
    EnumString,
    IntoStaticStr,
)]
#[strum(serialize_all = "snake_case")]
pub enum Defense {
    ButtonDisable,
    PopupKey,
    IdempotencyKey,
    StockGate,
    UniqueIndex,
    VersionLock,
    PaymentToken,
    OrderLock,
    StateCheck,
    CallbackDedup,
    MessageDedup,
}

/// Where a defense acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Layer {
    Browser,
    Server,
    KeyStore,
    Database,
}

/// Everything the docs, the lab and the lessons say about one defense.
#[derive(Debug, Clone, Copy)]
pub struct DefenseInfo {
    pub name: Text,
    pub layer: Layer,
    /// The file that implements it.
    pub module: &'static str,
    /// What it prevents, in one line.
    pub summary: Text,
    /// The test (`file::function` under tests/api/) that switches it off and shows the anomaly.
    pub shown_off_by: &'static str,
    /// The test that runs the same attack with it on and shows none.
    pub shown_on_by: &'static str,
}

impl Defense {
    /// Every defense, in the order a request meets them.
    pub fn all() -> impl Iterator<Item = Defense> {
        Self::iter()
    }

    /// The id used in the admin API, the `Flashguard-Defense` header and metrics.
    pub fn id(self) -> &'static str {
        self.into()
    }

    pub fn from_id(id: &str) -> Option<Self> {
        id.parse().ok()
    }

    /// The defense table: one entry per defense, the only place these facts live.
    #[expect(
        clippy::too_many_lines,
        reason = "the defense table: one arm per defense, each a few lines of data (names, summaries, module, tests)"
    )]
    pub fn info(self) -> DefenseInfo {
        match self {
            Self::ButtonDisable => DefenseInfo {
                name: text("按钮置灰", "Button disable"),
                layer: Layer::Browser,
                module: "static/app.js",
                summary: text(
                    "点击后按钮立即置灰，直到收到响应：连点只发出一个请求。",
                    "The submit button is disabled from the click until the response: a double click sends one request.",
                ),
                shown_off_by: "browser::without_button_disable_the_server_catches_the_double_click_and_the_page_names_it",
                shown_on_by: "browser::a_fast_double_click_on_buy_makes_one_order",
            },
            Self::PopupKey => DefenseInfo {
                name: text("弹窗幂等键", "Key per popup"),
                layer: Layer::Browser,
                module: "static/app.js",
                summary: text(
                    "确认弹窗打开时生成幂等键，弹窗里的每次提交都复用它：重复点击算同一次操作。",
                    "The idempotency key is made when the confirm popup opens and reused by every submit in it: repeated clicks are one business action.",
                ),
                shown_off_by: "browser::without_both_browser_defenses_a_double_click_is_two_intents",
                shown_on_by: "browser::without_button_disable_the_server_catches_the_double_click_and_the_page_names_it",
            },
            Self::IdempotencyKey => DefenseInfo {
                name: text("幂等键（防重表）", "Idempotency key"),
                layer: Layer::Server,
                module: "src/defenses/idempotency_key.rs",
                summary: text(
                    "带某个幂等键的第一个请求执行业务，并保存响应；重复请求拿到同一份响应，并发的重复请求得到 409。",
                    "The first request with a key runs and its response is stored; a repeat gets the same response, a concurrent repeat gets 409.",
                ),
                shown_off_by: "defenses::without_idempotency_key_and_unique_index_duplicates_appear",
                shown_on_by: "defenses::the_idempotency_key_alone_stops_concurrent_duplicates",
            },
            Self::StockGate => DefenseInfo {
                name: text("Redis 库存预扣", "Stock pre-deduction"),
                layer: Layer::KeyStore,
                module: "src/defenses/stock_gate.rs",
                summary: text(
                    "一个原子脚本先拒绝同一幂等键的重复请求，库存够才预扣：只有抢到的请求才到数据库，售罄直接由 Redis 返回。",
                    "One atomic script refuses a repeat of the same key, then takes units in Redis only if enough are left: only the requests that got one reach the database.",
                ),
                shown_off_by: "stock_gate::with_the_gate_off_the_flash_sale_is_still_correct",
                shown_on_by: "stock_gate::losers_are_answered_at_the_gate_and_winners_buy_exactly_the_stock",
            },
            Self::UniqueIndex => DefenseInfo {
                name: text("唯一索引", "Unique index"),
                layer: Layer::Database,
                module: "src/defenses/unique_index.rs",
                summary: text(
                    "数据库对每个（用户，幂等键）组合只允许一笔订单：两个都通过了前面检查的请求，只有一个能插入。",
                    "The database allows one order per (user, idempotency key): of two requests that both passed the checks, one inserts.",
                ),
                shown_off_by: "defenses::without_idempotency_key_and_unique_index_duplicates_appear",
                shown_on_by: "defenses::the_unique_index_alone_stops_concurrent_duplicates",
            },
            Self::VersionLock => DefenseInfo {
                name: text("乐观锁（版本号）", "Version lock"),
                layer: Layer::Database,
                module: "src/defenses/version_lock.rs",
                summary: text(
                    "库存只能通过带校验的写入扣减——带上读到的版本号（乐观锁），或者用条件扣减 stock >= q——杜绝丢失更新和超卖。",
                    "Stock is only taken by a guarded update: the version it read (optimistic locking), or the conditional decrement stock >= q: no lost update, no oversell.",
                ),
                shown_off_by: "defenses::without_version_lock_updates_are_lost_and_stock_is_oversold",
                shown_on_by: "defenses::with_version_lock_the_same_race_sells_exactly_the_stock",
            },
            Self::PaymentToken => DefenseInfo {
                name: text("一次性支付令牌", "One-time payment token"),
                layer: Layer::KeyStore,
                module: "src/defenses/payment_token.rs",
                summary: text(
                    "打开支付弹窗时服务端发一个一次性令牌，支付时原子地比较并删除：重放的支付请求被拒绝。",
                    "The server issues a one-time token when the pay popup opens and consumes it atomically: a replayed pay request is refused.",
                ),
                shown_off_by: "payment_defenses::without_payment_token_a_replayed_pay_charges_again",
                shown_on_by: "payment_defenses::with_payment_token_the_replay_is_refused",
            },
            Self::OrderLock => DefenseInfo {
                name: text("订单锁（一锁二判三更新）", "Order lock"),
                layer: Layer::KeyStore,
                module: "src/defenses/order_lock.rs",
                summary: text(
                    "一锁二判三更新：先锁订单，再判断状态，最后更新；两个支付请求不会都看到“未支付”。",
                    "Lock the order, check its state, then update: two pay requests cannot both see \"unpaid\".",
                ),
                shown_off_by: "payment_defenses::without_order_lock_concurrent_pays_charge_twice",
                shown_on_by: "payment_defenses::with_order_lock_the_same_race_charges_once",
            },
            Self::StateCheck => DefenseInfo {
                name: text("状态机校验", "State check"),
                layer: Layer::Database,
                module: "src/defenses/state_check.rs",
                summary: text(
                    "状态只沿允许的方向变化，用条件更新一步完成：迟到的回调不能让订单倒退。",
                    "State moves only along allowed transitions, each one conditional update: a late callback cannot move an order back.",
                ),
                shown_off_by: "payment_defenses::without_state_check_a_late_failed_moves_a_paid_order_back",
                shown_on_by: "payment_defenses::with_state_check_a_late_failed_changes_nothing",
            },
            Self::CallbackDedup => DefenseInfo {
                name: text("回调去重", "Callback dedup"),
                layer: Layer::Database,
                module: "src/defenses/callback_dedup.rs",
                summary: text(
                    "每个支付平台事件 ID 只记录一次，和对应的业务处理在同一个事务里：重复回调只确认、不生效。",
                    "Each provider event id is recorded once, in the transaction of its effect: a redelivered callback is acknowledged, not applied.",
                ),
                shown_off_by: "payment_defenses::without_callback_dedup_an_event_is_applied_again",
                shown_on_by: "payment_defenses::with_callback_dedup_the_repeats_are_duplicates",
            },
            Self::MessageDedup => DefenseInfo {
                name: text("消息去重（防重复消费）", "Message dedup"),
                layer: Layer::Database,
                module: "src/defenses/message_dedup.rs",
                summary: text(
                    "消费者把消息 ID 和积分写在同一个事务里：消息按至少一次投递，即使被重复消费，积分也只发一次。",
                    "The consumer records the message id in the transaction of its effect: an at-least-once message rewards once.",
                ),
                shown_off_by: "rewards::without_message_dedup_a_redelivery_rewards_twice",
                shown_on_by: "rewards::each_paid_order_is_rewarded_once_despite_redelivery",
            },
        }
    }
}

/// The on/off state of every defense in this process, plus the lab's run-time
/// settings (the race window, tracing, how soon an unacknowledged message is
/// redelivered). All defenses start on.
#[derive(Debug)]
pub struct SwitchBoard {
    switches: [AtomicBool; Defense::COUNT],
    race_window_ms: AtomicU64,
    redeliver_after_ms: AtomicU64,
    trace: AtomicBool,
    stock_write: AtomicU8,
    group_commit: AtomicBool,
    /// Held while the shared board is written or read back, so that a read
    /// that started before a write never undoes it here.
    shared: tokio::sync::Mutex<()>,
}

/// The lab's run-time settings (`GET/PUT /api/admin/lab`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct LabSettings {
    /// Pause between a read and the write that depends on it, only where the
    /// defense that closes that race is off.
    pub race_window_ms: u64,
    /// Answers carry `Flashguard-Trace`: the path each request took.
    pub trace: bool,
    /// An unacknowledged "order paid" message is redelivered after this long.
    pub redeliver_after_ms: u64,
    /// How a guarded order takes its stock when it is placed on its own.
    pub stock_write: StockWrite,
    /// Orders of the same moment share one transaction (docs/design.md §2.3),
    /// with `stock_write` = `version_check` (the batch's one guarded update).
    pub group_commit: bool,
}

/// The two correct ways to take stock with `version_lock` on (the lesson
/// teaches both; the lab's `hot_row` experiment compares them).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StockWrite {
    /// `… WHERE id = $1 AND version = $2 AND stock >= q`: refused if the row
    /// changed since it was read (re-read and retry).
    #[default]
    VersionCheck,
    /// `… WHERE id = $1 AND stock >= q`: the update checks the current row
    /// itself; 0 rows means sold out, never "retry".
    ConditionalDecrement,
}

impl StockWrite {
    fn as_i64(self) -> i64 {
        match self {
            Self::VersionCheck => 0,
            Self::ConditionalDecrement => 1,
        }
    }

    fn from_i64(value: i64) -> Self {
        if value == 1 {
            Self::ConditionalDecrement
        } else {
            Self::VersionCheck
        }
    }
}

/// Everything on the board at one moment, to put back after a lab experiment.
#[derive(Debug, Clone)]
pub struct BoardState {
    switches: BTreeMap<&'static str, bool>,
    lab: LabSettings,
}

impl LabSettings {
    /// The settings as stored rows: `lab.<setting>` → its number.
    pub fn entries(&self) -> Vec<(String, i64)> {
        vec![
            ("lab.race_window_ms".into(), as_i64(self.race_window_ms)),
            ("lab.trace".into(), i64::from(self.trace)),
            (
                "lab.redeliver_after_ms".into(),
                as_i64(self.redeliver_after_ms),
            ),
            ("lab.stock_write".into(), self.stock_write.as_i64()),
            ("lab.group_commit".into(), i64::from(self.group_commit)),
        ]
    }
}

impl BoardState {
    /// Every switch and setting as stored rows: `defense.<id>` → 0 or 1, then
    /// the lab settings (docs/reliability.md: shared by every instance).
    pub fn entries(&self) -> Vec<(String, i64)> {
        let switches = self
            .switches
            .iter()
            .map(|(id, on)| (format!("defense.{id}"), i64::from(*on)));
        switches.chain(self.lab.entries()).collect()
    }
}

impl Default for SwitchBoard {
    fn default() -> Self {
        Self::new(Duration::ZERO, Duration::from_secs(5))
    }
}

impl SwitchBoard {
    pub fn new(race_window: Duration, redeliver_after: Duration) -> Self {
        Self {
            switches: std::array::from_fn(|_| AtomicBool::new(true)),
            race_window_ms: AtomicU64::new(duration_ms(race_window)),
            redeliver_after_ms: AtomicU64::new(duration_ms(redeliver_after)),
            trace: AtomicBool::new(false),
            stock_write: AtomicU8::new(0),
            group_commit: AtomicBool::new(true),
            shared: tokio::sync::Mutex::new(()),
        }
    }

    /// The turn to write the shared board or read it back (see `flows::shared`).
    pub async fn shared_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.shared.lock().await
    }

    pub fn lab_settings(&self) -> LabSettings {
        LabSettings {
            race_window_ms: self.race_window_ms.load(Ordering::SeqCst),
            trace: self.trace.load(Ordering::SeqCst),
            redeliver_after_ms: self.redeliver_after_ms.load(Ordering::SeqCst),
            stock_write: self.stock_write(),
            group_commit: self.group_commit(),
        }
    }

    pub fn set_lab_settings(&self, lab: LabSettings) {
        self.race_window_ms
            .store(lab.race_window_ms, Ordering::SeqCst);
        self.trace.store(lab.trace, Ordering::SeqCst);
        self.redeliver_after_ms
            .store(lab.redeliver_after_ms, Ordering::SeqCst);
        let stock_write = u8::try_from(lab.stock_write.as_i64()).unwrap_or(0);
        self.stock_write.store(stock_write, Ordering::SeqCst);
        self.group_commit.store(lab.group_commit, Ordering::SeqCst);
    }

    pub fn stock_write(&self) -> StockWrite {
        StockWrite::from_i64(i64::from(self.stock_write.load(Ordering::SeqCst)))
    }

    pub fn group_commit(&self) -> bool {
        self.group_commit.load(Ordering::SeqCst)
    }

    pub fn is_tracing(&self) -> bool {
        self.trace.load(Ordering::SeqCst)
    }

    pub fn redeliver_after(&self) -> Duration {
        Duration::from_millis(self.redeliver_after_ms.load(Ordering::SeqCst))
    }

    /// Every switch and lab setting as stored rows (see [`BoardState::entries`]).
    pub fn entries(&self) -> Vec<(String, i64)> {
        self.save().entries()
    }

    /// Applies one stored row; returns whether it changed anything here.
    pub fn apply(&self, name: &str, value: i64) -> bool {
        if let Some(defense) = name.strip_prefix("defense.").and_then(Defense::from_id) {
            let on = value != 0;
            let changed = self.is_on(defense) != on;
            if changed {
                self.set(defense, on);
            }
            return changed;
        }
        let mut lab = self.lab_settings();
        let number = u64::try_from(value).unwrap_or(0);
        match name {
            "lab.race_window_ms" => lab.race_window_ms = number,
            "lab.trace" => lab.trace = value != 0,
            "lab.redeliver_after_ms" => lab.redeliver_after_ms = number,
            "lab.stock_write" => lab.stock_write = StockWrite::from_i64(value),
            "lab.group_commit" => lab.group_commit = value != 0,
            _ => return false,
        }
        let changed = lab != self.lab_settings();
        self.set_lab_settings(lab);
        changed
    }

    /// Every switch and lab setting, as they are now.
    pub fn save(&self) -> BoardState {
        BoardState {
            switches: self.snapshot(),
            lab: self.lab_settings(),
        }
    }

    /// Puts back what [`SwitchBoard::save`] saw.
    pub fn restore(&self, saved: &BoardState) {
        for defense in Defense::all() {
            let on = saved.switches.get(defense.id()).copied().unwrap_or(true);
            if self.is_on(defense) != on {
                self.set(defense, on);
            }
        }
        self.set_lab_settings(saved.lab);
    }

    pub fn is_on(&self, defense: Defense) -> bool {
        self.switches[defense as usize].load(Ordering::SeqCst)
    }

    pub fn set(&self, defense: Defense, on: bool) {
        self.switches[defense as usize].store(on, Ordering::SeqCst);
        tracing::warn!(defense = defense.id(), on, "defense switched");
    }

    /// `{"idempotency_key": true, …}` in a stable order.
    pub fn snapshot(&self) -> BTreeMap<&'static str, bool> {
        Defense::all()
            .map(|defense| (defense.id(), self.is_on(defense)))
            .collect()
    }

    /// Teaching aid: a pause between a read and the write that depends on it,
    /// applied only where the defense that closes that race is off.
    pub fn race_window(&self) -> Duration {
        Duration::from_millis(self.race_window_ms.load(Ordering::SeqCst))
    }

    /// Sleeps for the race window when `defense` is off (never when it is on).
    pub async fn widen_race_unless(&self, defense: Defense) {
        let window = self.race_window();
        if !self.is_on(defense) && !window.is_zero() {
            crate::trace::step(format!(
                "race window {} ms ({} off)",
                window.as_millis(),
                defense.id()
            ));
            tokio::time::sleep(window).await;
        }
    }
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_all_start_on() {
        let board = SwitchBoard::default();
        for defense in Defense::all() {
            assert_eq!(Defense::from_id(defense.id()), Some(defense));
            assert!(board.is_on(defense));
        }
        board.set(Defense::UniqueIndex, false);
        assert!(!board.is_on(Defense::UniqueIndex));
        assert!(!board.snapshot()["unique_index"]);
        assert_eq!(Defense::from_id("nope"), None);
        assert_eq!(Defense::all().count(), 11);
    }

    #[test]
    fn every_server_defense_lives_in_a_module_named_after_it() {
        for defense in Defense::all() {
            let info = defense.info();
            if info.layer == Layer::Browser {
                assert_eq!(info.module, "static/app.js");
            } else {
                assert_eq!(info.module, format!("src/defenses/{}.rs", defense.id()));
            }
        }
    }
}
