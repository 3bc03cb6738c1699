use tokio::signal::unix::{SignalKind, signal};

/// Resolves on the first SIGTERM or SIGINT. If the handlers cannot be
/// installed the error is returned at start-up, not discovered at stop time.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// A stream of SIGHUPs: the operator's "reload the certificate".
pub fn reload_signal() -> std::io::Result<tokio::signal::unix::Signal> {
    signal(SignalKind::hangup())
}
