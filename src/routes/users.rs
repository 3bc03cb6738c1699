//! `/api/v1/users`: the caller's own account (the admin side follows).

use http::{Request, StatusCode};
use hyper::body::Incoming;

use crate::http::error::ApiError;
use crate::http::response::json;
use crate::http::router::{Ctx, HandlerResult};
use crate::routes::dto::UserDto;

pub async fn me(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let principal = ctx.principal.as_ref().ok_or(ApiError::Unauthorized {
        code: "not_authenticated",
        detail: "Authentication required",
    })?;
    let user = ctx
        .state
        .store
        .user_by_id(principal.user_id.clone())
        .await?
        .ok_or(ApiError::NotFound)?;
    json(StatusCode::OK, &UserDto::from(&user)).map_err(ApiError::internal)
}
