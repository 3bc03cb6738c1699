//! Black-box tests at the HTTP boundary, over real TLS, each with its own data
//! directory and an ephemeral port; plus the real binary for the CLI.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod abuse;
mod admin;
mod api_keys;
mod auth;
mod cli;
mod cors;
mod helpers;
mod http_contract;
mod layers;
mod limits;
mod matrix;
mod openapi;
mod operations;
mod postgres;
mod register;
mod sessions;
mod storage;
mod store_ops;
mod tokens;
mod transport;
mod two_factor;
mod users;
