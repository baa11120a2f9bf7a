//! flashguard: a flash-sale order backend that shows, under real concurrency,
//! every defense that keeps an API idempotent, and lets you switch each one off.
//!
//! The design is docs/design.md. The defenses are listed, with their modules and
//! the tests that show each one on and off, in [`switches::Defense::info`]. The
//! layers run one way (docs/design.md §3.1): [`startup`] → [`routes`] →
//! [`lab`] → [`flows`] → [`state`] → [`defenses`] → [`configuration`] →
//! [`store`] and [`domain`], with the leaves [`switches`], [`problems`],
//! [`text`] and [`causes`].

// No function over 40 lines (.clippy.toml) but the three tables that say why
// (`#[expect(clippy::too_many_lines, reason = …)]`): docs/architecture.md.
#![warn(clippy::too_many_lines)]

pub mod answer_cache;
pub mod auth;
pub mod causes;
pub mod configuration;
pub mod deadline;
pub mod defenses;
pub mod domain;
pub mod error;
pub mod faults;
pub mod flows;
pub mod group_commit;
pub mod lab;
pub mod learn;
pub mod limits;
pub mod loadtest;
pub mod metrics;
pub mod problems;
pub mod psp;
pub mod routes;
pub mod startup;
pub mod state;
pub mod store;
pub mod switches;
pub mod telemetry;
pub mod text;
pub mod trace;
pub mod workbench;
