//! One test binary for the HTTP API (see helpers.rs for how each test gets its
//! own server, database and key-store namespace). The same tests run against the
//! real stack (DATABASE_URL=postgres://…, REDIS_URL=redis://…) and the embedded
//! default (neither variable set).

mod admin;
mod answer_cache;
mod binary;
mod broker;
mod browser;
mod callbacks;
mod channels;
mod channels_interop;
mod deadline;
mod defenses;
mod faults;
mod flash_sale;
mod gate_buckets;
mod hardening;
mod health;
mod helpers;
mod idempotency;
mod instances;
mod lab;
mod learn;
mod loadtest;
mod login;
mod orders;
mod payment_defenses;
mod payments;
mod rabbitmq;
mod redis_cluster;
mod rewards;
mod schema;
mod simulator;
mod stock_gate;
mod tables;
