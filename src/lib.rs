//! secure-api: a self-contained HTTPS API for users, sessions and roles.
//!
//! Layering (dependencies point inwards, see README "Architecture"):
//! `domain` ← `store`, `auth` ← `state` ← `http` ← `routes` ← `app` ← `commands`,
//! and `http` ← `server` ← `app` (enforced by `tests/api/layers.rs`).
//! Only `store` knows SQL; only `server` knows sockets and TLS.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod domain;
pub mod files;
pub mod http;
pub mod memory_limit;
pub mod routes;
pub mod secret;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;

/// The crate version that `--version` prints and `/health` reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
