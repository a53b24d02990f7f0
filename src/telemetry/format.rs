//! The JSON log line, formatted without going through serde: the same shape as
//! tracing-subscriber's JSON format (`timestamp`, `level`, `fields`, `span`), at a fraction of
//! the cost. The request a line belongs to comes from the request context the middleware
//! keeps in a task-local, so no tracing span is created per request.
//!
//! One field name is special: a field called [`SPLICED`] carries JSON object members already
//! rendered (the audit line's), and is written as they are. Only [`AuditFields`]-like types
//! that escape every value may be logged under that name.

use std::cell::RefCell;
use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::context::write_request_span;
use crate::json::{write_escaped, Escaped};

/// The field whose value is written into `fields` as JSON members, unquoted.
pub const SPLICED: &str = "json_fields";

/// tracing-subscriber's JSON layout (current span, no span list, no target), hand-written.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The line is put together in a String of this thread and handed to the writer in one
        // piece: each small write through tracing's `Writer` is a dynamic call, and a line is
        // dozens of them.
        with_line(|line| {
            render(ctx, event, line)?;
            writer.write_str(line)
        })
    }
}

/// Runs `f` on this thread's line buffer, cleared (a fresh one if a line is already being put
/// together here, which only happens if a field's formatting logged).
pub(super) fn with_line<R>(f: impl FnOnce(&mut String) -> R) -> R {
    LINE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut line) => {
            line.clear();
            f(&mut line)
        }
        Err(_) => f(&mut String::new()),
    })
}

/// `{"timestamp":"…","level":"…","fields":{`: how every JSON line opens.
pub(super) fn open_line(line: &mut String, level: &str) -> fmt::Result {
    line.push_str("{\"timestamp\":\"");
    write_timestamp(line)?;
    line.push_str("\",\"level\":\"");
    line.push_str(level);
    line.push_str("\",\"fields\":{");
    Ok(())
}

thread_local! {
    /// Where a line is put together (its capacity is kept for the next line).
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

fn render<S, N>(ctx: &FmtContext<'_, S, N>, event: &Event<'_>, line: &mut String) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    open_line(line, event.metadata().level().as_str())?;
    let mut fields = Fields {
        w: line,
        first: true,
        result: Ok(()),
    };
    event.record(&mut fields);
    fields.result?;
    line.push('}');
    // The request this line belongs to; otherwise the innermost tracing span, if any (the
    // AWS SDK's, for its own warnings).
    if !write_request_span(line)? {
        if let Some(span) = ctx.lookup_current() {
            line.push_str(",\"span\":{");
            let ext = span.extensions();
            let members = ext
                .get::<FormattedFields<N>>()
                .map(|f| f.fields.as_str())
                .and_then(|f| f.strip_prefix('{')?.strip_suffix('}'))
                .unwrap_or("");
            if !members.is_empty() {
                line.push_str(members);
                line.push(',');
            }
            line.push_str("\"name\":\"");
            write_escaped(line, span.name())?;
            line.push_str("\"}");
        }
    }
    line.push_str("}\n");
    Ok(())
}

/// Writes each field as a JSON member.
struct Fields<'w> {
    w: &'w mut String,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.w.push(',');
        }
        let name = field.name();
        self.w.push('"');
        write_escaped(self.w, name.strip_prefix("r#").unwrap_or(name))?;
        self.w.push_str("\":");
        Ok(())
    }

    fn member(&mut self, field: &Field, value: impl FnOnce(&mut String) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = self.key(field).and_then(|()| value(self.w));
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == SPLICED {
            if self.result.is_ok() {
                let sep = if std::mem::take(&mut self.first) {
                    ""
                } else {
                    ","
                };
                self.result = write!(self.w, "{sep}{value:?}");
            }
            return;
        }
        self.member(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| {
            w.write_char('"')?;
            write_escaped(w, value)?;
            w.write_char('"')
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.member(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.member(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, |w| {
            push_f64(w, value);
            Ok(())
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.member(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value}")?;
            w.write_char('"')
        });
    }
}

/// A float as serde_json writes it, with the crate serde_json writes floats with (1.0 stays
/// 1.0; NaN and infinities are null).
pub(crate) fn push_f64(w: &mut String, value: f64) {
    if value.is_finite() {
        w.push_str(zmij::Buffer::new().format_finite(value));
    } else {
        w.push_str("null");
    }
}

thread_local! {
    /// The last second rendered on this thread and its `YYYY-MM-DDTHH:MM:SS` text.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Now as `2026-11-27T15:04:05.123456Z` (UTC, microseconds), like tracing-subscriber's
/// `SystemTime`; the date and time of day are rendered once per second per thread.
pub fn write_timestamp<W: Write + ?Sized>(w: &mut W) -> fmt::Result {
    let since_epoch = crate::clock::since_epoch();
    let secs = since_epoch.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let at = i64::try_from(secs)
                .ok()
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                .unwrap_or_default();
            cached.1.clear();
            write!(cached.1, "{}", at.format("%Y-%m-%dT%H:%M:%S"))?;
            cached.0 = secs;
        }
        w.write_str(&cached.1)
    })?;
    // `.` and six digits, zero-padded, then `Z`.
    let micros = since_epoch.subsec_micros() + 1_000_000;
    w.write_char('.')?;
    w.write_str(&itoa::Buffer::new().format(micros)[1..])?;
    w.write_char('Z')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod tests {
    use std::net::IpAddr;

    use crate::json::*;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log writer tests read back (the line format's tests share it).
    #[derive(Clone, Default)]
    pub(in crate::telemetry) struct Buf(pub(in crate::telemetry) Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write_all(b)?;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    fn lines(buf: &Buf) -> Vec<serde_json::Value> {
        String::from_utf8(buf.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[derive(Debug)]
    struct Odd;

    impl fmt::Display for Odd {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("quote \" backslash \\ newline \n tab \t bell \u{7} é 🚀")
        }
    }

    fn events() {
        let err = std::io::Error::other("disk \"full\"");
        tracing::info!(
            user = "alice",
            n = 3_i64,
            big = u64::MAX,
            ok = true,
            "plain"
        );
        tracing::warn!(ratio = 1.0_f64, nan = f64::NAN, shown = %Odd, debug = ?Odd, "odd \"values\"");
        tracing::info!(
            small = 1e-7_f64,
            frac = 12.345_678_9_f64,
            big = 123_456_789.5_f64,
            huge = 1e21_f64,
            neg = -0.25_f64,
            "floats"
        );
        tracing::error!(
            error = &err as &(dyn std::error::Error + 'static),
            r#type = "raw",
            "failed"
        );
        // What events converted from the `log` crate carry.
        tracing::warn!(log.target = "rustls::client", log.line = 42_u64, "from log");
    }

    /// Every line is what tracing-subscriber's own JSON format writes for the same events,
    /// apart from the timestamp (checked for its shape).
    #[test]
    fn lines_equal_tracing_subscribers_json_format() {
        let reference = Buf::default();
        let ours = Buf::default();
        let sub = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_target(false)
            .with_writer(reference.clone())
            .finish();
        tracing::subscriber::with_default(sub, events);
        let sub = tracing_subscriber::fmt()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(JsonLines)
            .with_writer(ours.clone())
            .finish();
        tracing::subscriber::with_default(sub, events);
        let (mut reference, mut ours) = (lines(&reference), lines(&ours));
        assert_eq!(reference.len(), 5);
        for line in &mut ours {
            let ts = line["timestamp"].as_str().unwrap().to_owned();
            assert_eq!(ts.len(), 27, "{ts}");
            assert!(chrono::DateTime::parse_from_rfc3339(&ts).is_ok(), "{ts}");
            assert!(ts.ends_with('Z'));
            line.as_object_mut().unwrap().remove("timestamp");
        }
        for line in &mut reference {
            line.as_object_mut().unwrap().remove("timestamp");
        }
        assert_eq!(ours, reference);
    }

    /// Inside a tracing span (the AWS SDK's), the line names it like tracing-subscriber does.
    #[test]
    fn a_tracing_span_is_named_with_its_fields() {
        let ours = Buf::default();
        let sub = tracing_subscriber::fmt()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(JsonLines)
            .with_writer(ours.clone())
            .finish();
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("invoke", service = "sts", attempt = 2);
            span.in_scope(|| tracing::warn!("slow"));
            tracing::info!("outside");
        });
        let lines = lines(&ours);
        assert_eq!(
            lines[0]["span"],
            serde_json::json!({"service": "sts", "attempt": 2, "name": "invoke"})
        );
        assert!(lines[1].get("span").is_none());
    }

    #[test]
    fn spliced_members_are_written_as_they_are() {
        struct Members;
        impl fmt::Debug for Members {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"a\":1,\"b\":\"x\"")
            }
        }
        let ours = Buf::default();
        let sub = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(ours.clone())
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::info!(json_fields = ?Members, after = 2, "hello");
        });
        assert_eq!(
            lines(&ours)[0]["fields"],
            serde_json::json!({"message": "hello", "a": 1, "b": "x", "after": 2})
        );
    }

    #[test]
    fn escaping_matches_serde_json_for_every_ascii_byte_and_beyond() {
        let mut all: String = (0u8..128).map(char::from).collect();
        all.push_str("é€🚀\u{2028}");
        let mut ours = String::new();
        write_escaped(&mut ours, &all).unwrap();
        assert_eq!(format!("\"{ours}\""), serde_json::to_string(&all).unwrap());
        let mut plain = String::new();
        write_escaped(&mut plain, "alice@stsvend").unwrap();
        assert_eq!(plain, "alice@stsvend");
    }

    #[test]
    fn addresses_read_as_usual() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.20.3.40",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut s = String::new();
            write_ip(&mut s, ip).unwrap();
            assert_eq!(s, ip.to_string());
        }
    }

    #[test]
    fn timestamps_carry_the_current_second_and_microseconds() {
        let mut s = String::new();
        let before = chrono::Utc::now();
        write_timestamp(&mut s).unwrap();
        let after = chrono::Utc::now();
        let at = chrono::DateTime::parse_from_rfc3339(&s).unwrap();
        assert!(
            before - chrono::TimeDelta::microseconds(1) <= at && at <= after,
            "{s}"
        );
    }
}
