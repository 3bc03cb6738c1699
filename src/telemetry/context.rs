//! The request a log line belongs to: its id, client address and (once
//! authenticated) user, added to every line written while it is handled.
//!
//! A task-local rather than a tracing span: a span per request costs a slab
//! entry, field formatting when it opens and bookkeeping on every poll, about
//! a sixth of the CPU of a `/health` request (callgrind), while a task-local
//! is one pointer swapped in and out per poll. Work handed to another thread
//! (the blocking pool, the hashing threads) takes the context along with
//! `current` and `run_within`.

use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

pub struct RequestContext {
    pub request_id: Arc<str>,
    pub client_ip: IpAddr,
    user_id: OnceLock<Box<str>>,
    /// The API key the request was made with, if any.
    api_key_id: OnceLock<Box<str>>,
}

tokio::task_local! {
    static CURRENT: Arc<RequestContext>;
}

impl RequestContext {
    pub fn new(request_id: Arc<str>, client_ip: IpAddr) -> Arc<Self> {
        Arc::new(Self {
            request_id,
            client_ip,
            user_id: OnceLock::new(),
            api_key_id: OnceLock::new(),
        })
    }

    pub fn user_id(&self) -> Option<&str> {
        self.user_id.get().map(|id| &**id)
    }

    pub fn api_key_id(&self) -> Option<&str> {
        self.api_key_id.get().map(|id| &**id)
    }
}

/// Runs `future` with `context` as the current request.
pub async fn within<F: Future>(context: Arc<RequestContext>, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// The current request, to hand to another thread.
pub fn current() -> Option<Arc<RequestContext>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Runs `work` (on whatever thread) as part of `context`'s request.
pub fn run_within<T>(context: Option<Arc<RequestContext>>, work: impl FnOnce() -> T) -> T {
    match context {
        Some(context) => CURRENT.sync_scope(context, work),
        None => work(),
    }
}

/// Records who the current request is from, once it is authenticated.
pub fn set_user(user_id: &str) {
    let _ = CURRENT.try_with(|context| context.user_id.set(user_id.into()));
}

/// Names the API key of the current request in its log lines.
pub fn set_api_key(key_id: &str) {
    let _ = CURRENT.try_with(|context| context.api_key_id.set(key_id.into()));
}

/// Calls `f` with the current request, if there is one.
pub(super) fn with_current<R>(f: impl FnOnce(&RequestContext) -> R) -> Option<R> {
    CURRENT.try_with(|context| f(context)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_context_follows_the_request_and_work_handed_elsewhere() {
        assert!(current().is_none());
        let context = RequestContext::new(Arc::from("req-1"), IpAddr::from([10, 0, 0, 1]));
        within(Arc::clone(&context), async {
            set_user("user-1");
            let handed = current();
            let seen = std::thread::spawn(move || {
                run_within(handed, || with_current(|c| c.request_id.to_string()))
            })
            .join()
            .unwrap();
            assert_eq!(seen.as_deref(), Some("req-1"));
        })
        .await;
        assert_eq!(context.user_id(), Some("user-1"));
        assert!(current().is_none());
        assert_eq!(run_within(None, || with_current(|_| ())), None);
    }
}
