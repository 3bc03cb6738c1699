//! The JSON log format: one object per line, written by hand.
//!
//! tracing-subscriber's JSON formatter serializes every span's fields into a
//! string when the span opens and parses that string back for every event in
//! it; with a span per request that cost more than the whole HTTP exchange
//! (measured with callgrind: about a third of a `/users/me` request). This
//! layer keeps each span's fields as ready-made JSON fragments and writes a
//! line with one pass over the event, in the same shape as before:
//! `{"timestamp","level","message",<fields>,"target","span":{<fields>,"name"}}`.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::LogOutput;

/// Lines longer than this keep their buffer's memory for the next line only
/// up to this size.
const KEPT_LINE_CAPACITY: usize = 4096;

pub struct JsonLines {
    output: LogOutput,
}

impl JsonLines {
    pub fn new(output: LogOutput) -> Self {
        Self { output }
    }
}

/// A span's fields, each as `"name":value` ready to be copied into a line.
#[derive(Default)]
struct SpanFields(Vec<(&'static str, String)>);

impl SpanFields {
    fn set(&mut self, name: &'static str, json_value: String) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, value)) => *value = json_value,
            None => self.0.push((name, json_value)),
        }
    }
}

/// Collects fields as JSON values for a span.
struct SpanVisitor<'a>(&'a mut SpanFields);

impl Visit for SpanVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let mut json = String::with_capacity(value.len() + 2);
        push_json_str(&mut json, value);
        self.0.set(field.name(), json);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.set(field.name(), value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.set(field.name(), value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.set(field.name(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut json = String::new();
        push_json_debug(&mut json, value);
        self.0.set(field.name(), json);
    }
}

/// Writes an event's fields straight into the line; the message first.
struct EventVisitor<'a> {
    line: &'a mut String,
}

impl EventVisitor<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push(',');
        push_json_str(self.line, field.name());
        self.line.push(':');
    }
}

impl Visit for EventVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_str(self.line, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(self.line, "{value}");
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

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut fields = SpanFields::default();
            attrs.record(&mut SpanVisitor(&mut fields));
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(fields) = extensions.get_mut::<SpanFields>() {
                values.record(&mut SpanVisitor(fields));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
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
            let metadata = event.metadata();
            line.push_str("{\"timestamp\":\"");
            push_timestamp(line, SystemTime::now());
            line.push_str("\",\"level\":\"");
            line.push_str(metadata.level().as_str());
            line.push('"');
            event.record(&mut EventVisitor { line: &mut *line });
            line.push_str(",\"target\":");
            push_json_str(line, metadata.target());
            if let Some(span) = ctx.event_span(event) {
                line.push_str(",\"span\":{");
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (name, value) in &fields.0 {
                        push_json_str(line, name);
                        line.push(':');
                        line.push_str(value);
                        line.push(',');
                    }
                }
                line.push_str("\"name\":");
                push_json_str(line, span.name());
                line.push('}');
            }
            line.push_str("}\n");
            self.output.append(line.as_bytes());
            if line.capacity() > KEPT_LINE_CAPACITY {
                line.clear();
                line.shrink_to(KEPT_LINE_CAPACITY);
            }
        });
    }
}

/// Appends `value` as a JSON string literal.
fn push_json_str(out: &mut String, value: &str) {
    out.push('"');
    push_escaped(out, value);
    out.push('"');
}

fn push_escaped(out: &mut String, value: &str) {
    let mut plain_from = 0;
    for (at, byte) in value.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(value.get(plain_from..at).unwrap_or_default());
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
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
    let _ = write!(out, ".{:06}Z", since_epoch.subsec_micros());
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
    }
}
