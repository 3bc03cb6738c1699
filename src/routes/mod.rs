//! The route table (`table`), request handlers and their wire DTOs, one
//! module per area. Handlers parse
//! DTOs into domain types, call the store and the hasher, and build DTOs back.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod dto;
pub mod health;
pub mod table;
pub mod users;
