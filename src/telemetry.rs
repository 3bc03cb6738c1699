//! Logging: tracing to stdout, JSON lines by default (journald keeps them),
//! or human-readable lines. Nothing secret is ever a field: secrets are
//! newtypes without `Display`.

use std::io::{BufWriter, Stdout, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::LogFormat;

/// How long a log line may wait in the buffer before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
const BUFFER_BYTES: usize = 256 * 1024;

/// Stdout behind a buffer: a line is a copy into memory; the buffer goes out
/// when full or every `FLUSH_EVERY`, so a busy server makes one write per
/// batch, not one system call (or one thread wake-up) per line.
#[derive(Clone)]
pub struct LogOutput(Arc<Mutex<BufWriter<Stdout>>>);

impl LogOutput {
    fn lock(&self) -> MutexGuard<'_, BufWriter<Stdout>> {
        match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Writes out what is buffered (start-up lines, and at exit).
    pub fn flush(&self) {
        let _ = self.lock().flush();
    }
}

pub struct LineWriter<'a>(MutexGuard<'a, BufWriter<Stdout>>);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Flushing is the timer's job; a line never forces a write.
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogOutput {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self.lock())
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

/// Keep the returned guard alive until exit: dropping it writes out what is
/// still buffered.
pub fn init(format: LogFormat, level: &str) -> Result<FlushOnDrop, String> {
    let filter =
        EnvFilter::try_new(level).map_err(|e| format!("invalid --log-level {level:?}: {e}"))?;
    let writer = LogOutput(Arc::new(Mutex::new(BufWriter::with_capacity(
        BUFFER_BYTES,
        std::io::stdout(),
    ))));
    let flusher = writer.clone();
    std::thread::Builder::new()
        .name("secure-api-log".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(FLUSH_EVERY);
                flusher.flush();
            }
        })
        .map_err(|e| format!("cannot start the log flusher: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone());
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
    Ok(FlushOnDrop(writer))
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
