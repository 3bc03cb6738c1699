//! The hand-built HTTP layer: the route table, the middleware that wraps every
//! request, problem+json errors and request extractors.

pub mod authenticate;
pub mod client_ip;
pub mod cookies;
pub mod cors;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod ratelimit;
pub mod response;
pub mod router;
