use bytes::Bytes;
use http::{Request, StatusCode};
use hyper::body::Incoming;

use crate::http::error::ApiError;
use crate::http::response::{APPLICATION_JSON, with_body};
use crate::http::router::{Ctx, HandlerResult};
use crate::state::NotReady;

const LIVE_BODY: &str = concat!(
    r#"{"status":"healthy","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}"#
);
const READY_BODY: &str = r#"{"status":"ready"}"#;

/// Liveness: the process answers. Touches nothing else.
pub async fn live(_ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    Ok(with_body(
        StatusCode::OK,
        APPLICATION_JSON,
        Bytes::from_static(LIVE_BODY.as_bytes()),
    ))
}

/// Readiness: the database could take a write now (one probe a second at
/// most, shared by every caller; see `state::Readiness`).
pub async fn ready(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    match ctx
        .state
        .readiness
        .check(&ctx.state.store, &ctx.state.hooks)
        .await
    {
        Ok(()) => Ok(with_body(
            StatusCode::OK,
            APPLICATION_JSON,
            Bytes::from_static(READY_BODY.as_bytes()),
        )),
        Err(NotReady::StorageFailing) => Err(ApiError::StorageUnavailable),
        Err(NotReady::NotAnswering) => Err(ApiError::Unavailable {
            detail: "The database is not answering",
            retry_after_secs: Some(1),
        }),
    }
}

/// The OpenAPI document of this API (served only with `--expose-openapi`).
pub async fn openapi(_ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    const DOCUMENT: &str = include_str!("../../openapi.json");
    Ok(with_body(
        StatusCode::OK,
        APPLICATION_JSON,
        Bytes::from_static(DOCUMENT.as_bytes()),
    ))
}

/// Registered only by tests (see `table::Optional::panic_probe`).
#[allow(clippy::panic)]
pub async fn panic_probe(_ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    panic!("panic probe: a handler failed unexpectedly");
}
