//! invigil: self-hosted online exam proctoring in one process.
//!
//! Modules depend only "downwards" in this order: `config`, `store`, `objects`,
//! `tls`, `auth`, `recognize`, `web`, `app`, `cli`. No HTTP types below `web`; no redb or
//! object_store types outside `store` and `objects`.

pub mod app;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod config;
pub mod diskspace;
#[doc(hidden)]
pub mod fuzzing;
pub mod objects;
pub mod proctoring;
pub mod realtime;
pub mod recognize;
pub mod store;
pub mod tls;
pub mod turn;
pub mod web;

/// The version reported by `/ping`, `invigil version` and the front page.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
