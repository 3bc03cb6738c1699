//! Logging: tracing to stdout, JSON lines by default (journald keeps them),
//! or human-readable lines. Nothing secret is ever a field: secrets are
//! newtypes without `Display`.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Keep the returned guard alive until exit: dropping it flushes the lines
/// still queued.
pub fn init(format: LogFormat, level: &str) -> Result<WorkerGuard, String> {
    let filter =
        EnvFilter::try_new(level).map_err(|e| format!("invalid --log-level {level:?}: {e}"))?;
    // Lines are formatted on the request's thread and written by one
    // background thread in batches: one write per batch instead of one
    // locked write per line. Never lossy: audit lines must not be dropped,
    // so a full queue slows the writers down instead.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("secure-api-log")
        .finish(std::io::BufWriter::new(std::io::stdout()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Console => builder.compact().try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))?;
    // A panic is reported through the log (with the request id of its span),
    // not as a bare line on stderr.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "panic: {}", panic_message(info));
    }));
    Ok(guard)
}

fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    if let Some(s) = info.payload().downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}
