//! Logging: tracing to stdout, JSON lines by default (journald keeps them),
//! or human-readable lines. Nothing secret is ever a field: secrets are
//! newtypes without `Display`.

pub mod context;
mod lines;

pub use lines::AccessRecord;

use std::io::Write;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;

/// How long a log line may wait in the buffer before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A buffer this full is written out by the thread that filled it.
const BUFFER_BYTES: usize = 256 * 1024;

/// Stdout behind a buffer: a line is a copy into memory; the buffer goes out
/// when full or every `FLUSH_EVERY`, so a busy server makes one write per
/// batch, not one system call (or one thread wake-up) per line. Lines are
/// added under a short lock; the write itself happens outside it, so a slow
/// stdout holds up only the thread that writes (and, once the next buffer is
/// full too, the ones behind it: memory stays bounded).
#[derive(Clone)]
pub struct LogOutput(Arc<Shared>);

struct Shared {
    pending: Mutex<Vec<u8>>,
    /// Held while a batch is written, so batches leave in order.
    writing: Mutex<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl LogOutput {
    fn new() -> Self {
        Self(Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(BUFFER_BYTES)),
            writing: Mutex::new(()),
        }))
    }

    fn append(&self, line: &[u8]) {
        let full = {
            let mut pending = lock(&self.0.pending);
            pending.extend_from_slice(line);
            pending.len() >= BUFFER_BYTES
        };
        if full {
            self.flush();
        }
    }

    /// Writes out what is buffered (start-up lines, the timer, and at exit).
    pub fn flush(&self) {
        let _in_order = lock(&self.0.writing);
        let batch = {
            let mut pending = lock(&self.0.pending);
            if pending.is_empty() {
                return;
            }
            std::mem::replace(&mut *pending, Vec::with_capacity(BUFFER_BYTES))
        };
        let mut stdout = std::io::stdout().lock();
        // Nowhere to report a failed log write; the next batch tries again.
        let _ = stdout.write_all(&batch);
        let _ = stdout.flush();
    }
}

/// Where access lines go once logging is set up (until then, and in tests
/// that run the server in-process without it, nowhere).
static ACCESS_LOG: OnceLock<lines::LogLines> = OnceLock::new();

/// Writes the access line of a request, if INFO is enabled for the
/// middleware's target.
pub fn access(record: &AccessRecord<'_>) {
    if !tracing::enabled!(target: lines::ACCESS_TARGET, tracing::Level::INFO) {
        return;
    }
    if let Some(lines) = ACCESS_LOG.get() {
        lines.write_access(record);
    }
}

/// Flushes the log output when dropped (keep it alive until exit).
pub struct FlushOnDrop(LogOutput);

impl FlushOnDrop {
    pub fn output(&self) -> &LogOutput {
        &self.0
    }
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.0.flush();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    #[error("invalid --log-level {level:?}: {reason}")]
    Level { level: String, reason: String },
    #[error("cannot start the log flusher: {0}")]
    Flusher(std::io::Error),
    #[error("cannot install the logger: {0}")]
    Install(tracing_subscriber::util::TryInitError),
}

/// Keep the returned guard alive until exit: dropping it writes out what is
/// still buffered.
pub fn init(format: LogFormat, level: &str) -> Result<FlushOnDrop, LogInitError> {
    // Targets (per-target levels, `info,hyper=debug`) rather than EnvFilter:
    // EnvFilter takes a shared lock on every span enter and exit, twice per
    // poll of every request future.
    let filter = Targets::from_str(level).map_err(|e| LogInitError::Level {
        level: level.to_owned(),
        reason: e.to_string(),
    })?;
    let output = LogOutput::new();
    let flusher = output.clone();
    std::thread::Builder::new()
        .name("secure-api-log".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(FLUSH_EVERY);
                flusher.flush();
            }
        })
        .map_err(LogInitError::Flusher)?;
    let lines = lines::LogLines::new(output.clone(), format);
    let _ = ACCESS_LOG.set(lines.clone());
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .try_init();
    installed.map_err(LogInitError::Install)?;
    // A panic is reported through the log (with the request id of its span),
    // not as a bare line on stderr.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "panic: {}", panic_message(info));
    }));
    Ok(FlushOnDrop(output))
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
