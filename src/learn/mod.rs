//! The learning material (docs/design.md §1): a lesson per defense, the index
//! (幂等 defined, the layers, the order of checks, a glossary), the interview
//! page, in Chinese and English. The prose is Markdown under
//! `templates/learn/{zh,en}/`, built into the binary; the code a lesson shows is
//! excerpted from this build's own sources between marker comments, so it can
//! never go stale (a test fails if a marker is missing).

pub mod content;
pub mod diagrams;
pub mod excerpts;
pub mod glossary;
pub mod lessons;
