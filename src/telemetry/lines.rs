//! Log lines, written by hand: JSON (one object per line) or console text.
//!
//! tracing-subscriber's JSON formatter serialized each span's fields into a
//! string when the span opened and parsed that string back for every event;
//! with a span per request that cost more than the HTTP exchange itself
//! (callgrind: about a third of a `/users/me` request). This layer writes a
//! line in one pass over the event and the current request context, in the
//! same JSON shape as before:
//! `{"timestamp","level","message",<fields>,"target","span":{"request_id","client_ip","user_id","name"}}`.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use super::LogOutput;
use super::context::{self, RequestContext};
use crate::cli::LogFormat;

/// Lines longer than this keep their buffer's memory for the next line only
/// up to this size.
const KEPT_LINE_CAPACITY: usize = 4096;

#[derive(Clone)]
pub struct LogLines {
    output: LogOutput,
    format: LogFormat,
}

impl LogLines {
    pub fn new(output: LogOutput, format: LogFormat) -> Self {
        Self { output, format }
    }
}

/// Writes an event's fields straight into a JSON line.
struct JsonFields<'a> {
    line: &'a mut String,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        // Field names are Rust identifiers: nothing in them needs escaping.
        self.line.push_str(",\"");
        self.line.push_str(field.name());
        self.line.push_str("\":");
    }

    fn integer(&mut self, field: &Field, value: impl itoa::Integer) {
        self.key(field);
        self.line.push_str(itoa::Buffer::new().format(value));
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_str(self.line, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.integer(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.integer(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.line, "{value}");
        } else {
            self.line.push_str("null");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        push_json_debug(self.line, value);
    }
}

/// Writes an event's fields as console text: the message, then `name=value`.
struct ConsoleFields<'a> {
    line: &'a mut String,
}

impl Visit for ConsoleFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.line, " {value:?}");
        } else {
            let _ = write!(self.line, " {}={value:?}", field.name());
        }
    }
}

fn json_line(line: &mut String, event: &Event<'_>) {
    let metadata = event.metadata();
    json_head(line, metadata.level().as_str());
    event.record(&mut JsonFields { line: &mut *line });
    json_tail(line, metadata.target());
}

/// `{"timestamp":…,"level":…`: what every JSON line starts with.
fn json_head(line: &mut String, level: &str) {
    line.push_str("{\"timestamp\":\"");
    push_timestamp(line, SystemTime::now());
    line.push_str("\",\"level\":\"");
    line.push_str(level);
    line.push('"');
}

/// `,"target":…,"span":{…}}` and the newline: what every JSON line ends with.
fn json_tail(line: &mut String, target: &str) {
    line.push_str(",\"target\":");
    push_json_str(line, target);
    context::with_current(|request| json_request(line, request));
    line.push_str("}\n");
}

/// The request as the `span` object the JSON lines have always had.
fn json_request(line: &mut String, request: &RequestContext) {
    line.push_str(",\"span\":{\"request_id\":");
    push_json_str(line, &request.request_id);
    line.push_str(",\"client_ip\":\"");
    push_ip(line, request.client_ip);
    line.push('"');
    if let Some(user_id) = request.user_id() {
        line.push_str(",\"user_id\":");
        push_json_str(line, user_id);
    }
    if let Some(key_id) = request.api_key_id() {
        line.push_str(",\"api_key_id\":");
        push_json_str(line, key_id);
    }
    line.push_str(",\"name\":\"request\"}");
}

fn console_request(line: &mut String, request: &RequestContext) {
    let _ = write!(
        line,
        " request_id={} client_ip={}",
        request.request_id, request.client_ip
    );
    if let Some(user_id) = request.user_id() {
        let _ = write!(line, " user_id={user_id}");
    }
    if let Some(key_id) = request.api_key_id() {
        let _ = write!(line, " api_key_id={key_id}");
    }
}

fn console_line(line: &mut String, event: &Event<'_>) {
    let metadata = event.metadata();
    push_timestamp(line, SystemTime::now());
    let _ = write!(line, " {:>5} {}:", metadata.level(), metadata.target());
    event.record(&mut ConsoleFields { line: &mut *line });
    console_tail(line);
}

/// The request's fields and the newline; one event is one line, whatever
/// its message held.
fn console_tail(line: &mut String) {
    context::with_current(|request| console_request(line, request));
    let text = line.replace(['\n', '\r'], " ");
    line.clear();
    line.push_str(&text);
    line.push('\n');
}

impl<S: Subscriber> Layer<S> for LogLines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        self.write(|line, format| match format {
            LogFormat::Json => json_line(line, event),
            LogFormat::Console => console_line(line, event),
        });
    }
}

impl LogLines {
    /// Formats a line into this thread's buffer and appends it to the output.
    fn write(&self, format_line: impl FnOnce(&mut String, LogFormat)) {
        thread_local! {
            static LINE: RefCell<String> = const { RefCell::new(String::new()) };
        }
        LINE.with(|cell| {
            // A log call made while formatting (from a Debug impl) must not
            // panic on the borrow: it gets a fresh buffer.
            let mut fresh = String::new();
            let mut borrowed = cell.try_borrow_mut();
            let line = match borrowed.as_deref_mut() {
                Ok(line) => line,
                Err(_) => &mut fresh,
            };
            line.clear();
            format_line(line, self.format);
            self.output.append(line.as_bytes());
            if line.capacity() > KEPT_LINE_CAPACITY {
                line.clear();
                line.shrink_to(KEPT_LINE_CAPACITY);
            }
        });
    }

    /// The access line, written without a tracing event: it is the one line
    /// every request writes, and going through the event machinery (field
    /// visitors behind `dyn`, the message through `core::fmt`) cost more
    /// than writing it. Same shape and target as an event would have.
    pub fn write_access(&self, record: &AccessRecord<'_>) {
        self.write(|line, format| match format {
            LogFormat::Json => json_access(line, record),
            LogFormat::Console => console_access(line, record),
        });
    }
}

/// What the access line says about a request.
pub struct AccessRecord<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub duration_us: u64,
    pub user_agent: &'a str,
}

/// The target access lines are filtered and labelled by, as if logged from
/// the middleware.
pub const ACCESS_TARGET: &str = "secure_api::http::middleware";

fn json_access(line: &mut String, record: &AccessRecord<'_>) {
    json_head(line, "INFO");
    line.push_str(",\"message\":\"request\",\"method\":");
    push_json_str(line, record.method);
    line.push_str(",\"route\":");
    push_json_str(line, record.route);
    line.push_str(",\"status\":");
    line.push_str(itoa::Buffer::new().format(record.status));
    line.push_str(",\"duration_us\":");
    line.push_str(itoa::Buffer::new().format(record.duration_us));
    line.push_str(",\"user_agent\":");
    push_json_str(line, record.user_agent);
    json_tail(line, ACCESS_TARGET);
}

fn console_access(line: &mut String, record: &AccessRecord<'_>) {
    push_timestamp(line, SystemTime::now());
    let _ = write!(
        line,
        "  INFO {ACCESS_TARGET}: request method={} route={} status={} duration_us={} user_agent={}",
        record.method, record.route, record.status, record.duration_us, record.user_agent
    );
    console_tail(line);
}

/// Appends `value` as a JSON string literal.
fn push_json_str(out: &mut String, value: &str) {
    out.push('"');
    push_escaped(out, value);
    out.push('"');
}

fn push_escaped(out: &mut String, value: &str) {
    let needs_escape = |byte: u8| byte < 0x20 || byte == b'"' || byte == b'\\' || byte == 0x7f;
    // Most values need no escaping; checking 16 bytes at a time without an
    // early exit lets the compiler use vector instructions.
    let plain = value.as_bytes().chunks(16).all(|chunk| {
        !chunk
            .iter()
            .fold(false, |any, &byte| any | needs_escape(byte))
    });
    if plain {
        out.push_str(value);
        return;
    }
    let mut plain_from = 0;
    for (at, byte) in value.bytes().enumerate() {
        if !needs_escape(byte) {
            continue;
        }
        out.push_str(value.get(plain_from..at).unwrap_or_default());
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
        plain_from = at + 1;
    }
    out.push_str(value.get(plain_from..).unwrap_or_default());
}

/// Appends a `Debug` value (a `%` field, the message) as a JSON string,
/// escaping as it is formatted instead of through a temporary string.
fn push_json_debug(out: &mut String, value: &dyn fmt::Debug) {
    struct Escaping<'a>(&'a mut String);
    impl fmt::Write for Escaping<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            push_escaped(self.0, s);
            Ok(())
        }
    }
    out.push('"');
    let _ = write!(Escaping(out), "{value:?}");
    out.push('"');
}

/// RFC 3339 in UTC with microseconds; the date and time part is formatted
/// once per second per thread.
fn push_timestamp(out: &mut String, now: SystemTime) {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    SECOND.with(|cell| {
        let Ok(mut cached) = cell.try_borrow_mut() else {
            out.push_str(&format_second(secs));
            return;
        };
        if cached.0 != secs {
            *cached = (secs, format_second(secs));
        }
        out.push_str(&cached.1);
    });
    let micros = since_epoch.subsec_micros();
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(micros);
    out.push('.');
    for _ in digits.len()..6 {
        out.push('0');
    }
    out.push_str(digits);
    out.push('Z');
}

/// An address as `Display` writes it; IPv4 (the common case) without the
/// formatting machinery.
fn push_ip(out: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn format_second(secs: u64) -> String {
    let at = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(value: &str) -> String {
        let mut out = String::new();
        push_json_str(&mut out, value);
        out
    }

    #[test]
    fn strings_are_escaped_as_json_parses_them() {
        for value in [
            "plain",
            "",
            "quote \" backslash \\ slash /",
            "new\nline\r\ttab",
            "\u{0}\u{1f}\u{7f} controls",
            "ünïcødé ✓ 🦀",
            "</script><script>",
        ] {
            let json = escaped(value);
            let back: String = serde_json::from_str(&json).unwrap();
            assert_eq!(back, value, "{json}");
        }
    }

    #[test]
    fn debug_values_are_escaped_while_formatting() {
        let mut out = String::new();
        push_json_debug(&mut out, &format_args!("say \"{}\"\n", "hi"));
        assert_eq!(out, r#""say \"hi\"\n""#);
    }

    #[test]
    fn the_access_line_is_one_json_object_with_the_request_context() {
        let record = AccessRecord {
            method: "GET",
            route: "/api/v1/users/{id}",
            status: 404,
            duration_us: 1234,
            user_agent: "agent \"quoted\"\n",
        };
        let request = super::context::RequestContext::new(
            std::sync::Arc::from("req-9"),
            std::net::IpAddr::from([192, 0, 2, 7]),
        );
        let mut line = String::new();
        super::context::run_within(Some(request), || json_access(&mut line, &record));
        assert!(
            line.ends_with("}\n") && line.matches('\n').count() == 1,
            "{line}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["level"], "INFO");
        assert_eq!(parsed["message"], "request");
        assert_eq!(parsed["route"], "/api/v1/users/{id}");
        assert_eq!(parsed["status"], 404);
        assert_eq!(parsed["duration_us"], 1234);
        assert_eq!(parsed["user_agent"], "agent \"quoted\"\n");
        assert_eq!(parsed["target"], ACCESS_TARGET);
        assert_eq!(parsed["span"]["request_id"], "req-9");
        assert_eq!(parsed["span"]["client_ip"], "192.0.2.7");
        assert!(parsed["timestamp"].as_str().unwrap().ends_with('Z'));

        let mut console = String::new();
        console_access(&mut console, &record);
        assert!(console.contains(" INFO secure_api::http::middleware: request method=GET"));
        assert_eq!(console.matches('\n').count(), 1, "{console}");
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "10.0.20.3",
            "::1",
            "2001:db8::7",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let at = UNIX_EPOCH + std::time::Duration::from_micros(1_795_000_000_123_456);
        let mut out = String::new();
        push_timestamp(&mut out, at);
        let parsed =
            time::OffsetDateTime::parse(&out, &time::format_description::well_known::Rfc3339)
                .unwrap();
        assert_eq!(parsed.unix_timestamp(), 1_795_000_000);
        assert_eq!(parsed.microsecond(), 123_456);
        assert!(out.ends_with(".123456Z"), "{out}");
        // The cached second is reused for the next timestamp in it.
        let mut again = String::new();
        push_timestamp(&mut again, at + std::time::Duration::from_micros(1));
        assert!(again.ends_with(".123457Z"), "{again}");
        let mut padded = String::new();
        push_timestamp(
            &mut padded,
            UNIX_EPOCH + std::time::Duration::from_micros(42),
        );
        assert_eq!(padded, "1970-01-01T00:00:00.000042Z");
    }
}
