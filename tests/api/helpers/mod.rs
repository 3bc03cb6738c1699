//! What every test module uses, by concern: `app` (the application in
//! this process), `client` (TLS client, requests, responses), `process`
//! (the binary as a child process), `clock` (a hand-moved clock). Re-exported
//! here so that a test names `crate::helpers::X` whatever file X lives in.

mod app;
mod client;
mod clock;
pub mod db;
pub mod postgres;
mod process;

pub use app::*;
pub use client::*;
pub use clock::*;
pub use process::*;

pub const STRONG_PASSWORD: &str = "Correct-Horse-9-Battery";

/// Argon2 parameters that keep tests fast; only allowed with the insecure flag.
pub const FAST_HASH_ARGS: [&str; 7] = [
    "--argon2-memory-kib",
    "1024",
    "--argon2-time-cost",
    "1",
    "--argon2-parallelism",
    "1",
    "--insecure-fast-hash",
];
