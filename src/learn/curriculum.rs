//! How the learning pages hang together (docs/teaching.md): the topic pages
//! that several lessons assume, the two paths through the lessons (concept
//! first, and in the order a request meets the defenses), and what each lesson
//! assumes the reader knows. Every stop ends up at the interview page.

use strum::{EnumIter, IntoEnumIterator, IntoStaticStr};

use crate::switches::Defense;
use crate::text::{Lang, Text, text};

/// A page of background that is not one defense's lesson.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Topic {
    /// Transactions, isolation levels, snapshot and current reads, locks.
    Transactions,
    /// 少卖: units wanted and never sold.
    Undersell,
    /// From one node to a cluster: hash slots and tags, the hot key and its
    /// buckets, failover loss, instances that die holding units.
    Cluster,
}

impl Topic {
    pub fn all() -> impl Iterator<Item = Topic> {
        Self::iter()
    }

    pub fn id(self) -> &'static str {
        self.into()
    }

    pub fn from_id(id: &str) -> Option<Self> {
        Self::all().find(|topic| topic.id() == id)
    }

    pub fn title(self) -> Text {
        match self {
            Self::Transactions => text(
                "事务、隔离级别与锁",
                "Transactions, isolation levels and locks",
            ),
            Self::Undersell => text(
                "少卖：想买的人没买到",
                "Undersell: units wanted, never sold",
            ),
            Self::Cluster => text("从单机到集群", "From one node to a cluster"),
        }
    }

    /// The `## name` sections of its page, in order.
    pub fn sections(self) -> &'static [&'static str] {
        match self {
            Self::Transactions => &[
                "intro",
                "transaction",
                "levels",
                "reads",
                "locks",
                "flashguard",
            ],
            Self::Undersell => &["intro", "causes", "audit"],
            Self::Cluster => &["intro", "slots", "hot_key", "failover", "instances"],
        }
    }
}

/// A page on a path through the material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Topic(Topic),
    Lesson(Defense),
    Interview,
}

impl Stop {
    /// The page's address (without the language).
    pub fn path(self) -> String {
        match self {
            Self::Topic(topic) => format!("/learn/topics/{}", topic.id()),
            Self::Lesson(defense) => format!("/learn/defenses/{}", defense.id()),
            Self::Interview => "/learn/interview".to_string(),
        }
    }

    pub fn title(self, lang: Lang) -> &'static str {
        match self {
            Self::Topic(topic) => lang.pick(&topic.title()),
            Self::Lesson(defense) => lang.pick(&defense.info().name),
            Self::Interview => lang.pick(&text("面试题", "Interview questions")),
        }
    }
}

/// Concept first: what the database guarantees, then the key table, locks,
/// callbacks and messages, and the cache in front of it all.
pub const CONCEPT_PATH: &[Stop] = &[
    Stop::Topic(Topic::Transactions),
    Stop::Lesson(Defense::UniqueIndex),
    Stop::Lesson(Defense::IdempotencyKey),
    Stop::Lesson(Defense::PopupKey),
    Stop::Lesson(Defense::ButtonDisable),
    Stop::Lesson(Defense::VersionLock),
    Stop::Lesson(Defense::OrderLock),
    Stop::Lesson(Defense::PaymentToken),
    Stop::Lesson(Defense::StateCheck),
    Stop::Lesson(Defense::CallbackDedup),
    Stop::Lesson(Defense::MessageDedup),
    Stop::Lesson(Defense::StockGate),
    Stop::Topic(Topic::Undersell),
    Stop::Topic(Topic::Cluster),
    Stop::Interview,
];

/// In the order a request meets the defenses, then the interview.
pub fn request_path() -> Vec<Stop> {
    Defense::all()
        .map(Stop::Lesson)
        .chain(std::iter::once(Stop::Interview))
        .collect()
}

/// The stop after `stop` on the concept path (the interview ends it).
pub fn next_on_concept_path(stop: Stop) -> Option<Stop> {
    let at = CONCEPT_PATH.iter().position(|on| *on == stop)?;
    CONCEPT_PATH.get(at + 1).copied()
}

/// What a lesson assumes the reader knows, each with its page.
pub fn assumes(defense: Defense) -> &'static [Stop] {
    use Defense as D;
    const TRANSACTIONS: Stop = Stop::Topic(Topic::Transactions);
    match defense {
        D::ButtonDisable => &[],
        D::PopupKey => &[Stop::Lesson(D::IdempotencyKey)],
        D::IdempotencyKey => &[TRANSACTIONS, Stop::Lesson(D::UniqueIndex)],
        D::UniqueIndex | D::VersionLock | D::StateCheck => &[TRANSACTIONS],
        D::StockGate => &[
            Stop::Lesson(D::IdempotencyKey),
            Stop::Lesson(D::VersionLock),
        ],
        D::PaymentToken => &[Stop::Lesson(D::IdempotencyKey)],
        D::OrderLock => &[TRANSACTIONS, Stop::Lesson(D::UniqueIndex)],
        D::CallbackDedup => &[
            TRANSACTIONS,
            Stop::Lesson(D::UniqueIndex),
            Stop::Lesson(D::StateCheck),
        ],
        D::MessageDedup => &[TRANSACTIONS, Stop::Lesson(D::CallbackDedup)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_concept_path_visits_every_lesson_and_topic_once_and_ends_at_the_interview() {
        for defense in Defense::all() {
            let visits = CONCEPT_PATH
                .iter()
                .filter(|stop| **stop == Stop::Lesson(defense))
                .count();
            assert_eq!(visits, 1, "{}", defense.id());
        }
        for topic in Topic::all() {
            assert!(CONCEPT_PATH.contains(&Stop::Topic(topic)), "{}", topic.id());
        }
        assert_eq!(CONCEPT_PATH.last(), Some(&Stop::Interview));
        assert_eq!(request_path().last(), Some(&Stop::Interview));
        assert_eq!(next_on_concept_path(Stop::Interview), None);
    }

    #[test]
    fn a_lesson_assumes_only_what_comes_before_it_on_the_concept_path() {
        let at = |stop: &Stop| CONCEPT_PATH.iter().position(|on| on == stop);
        for defense in Defense::all() {
            for assumed in assumes(defense) {
                assert!(
                    at(assumed) < at(&Stop::Lesson(defense)),
                    "{} assumes {assumed:?}, which comes later",
                    defense.id()
                );
            }
        }
    }
}
