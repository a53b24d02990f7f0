//! The two lines requests write on their hot paths (a refusal's outcome, a credential's audit
//! line), written straight to the log sink: the same bytes the JSON format writes for the
//! same event, without tracing's dispatch, field visitors and `Debug` formatting, which cost
//! several times the line itself.
//!
//! Only where a sink is installed (the JSON format: `telemetry::init`, and the tests' log
//! capture) and only when tracing would log the event (its level and target enabled); in
//! every other case the caller logs through tracing as before. The tests below hold each
//! line to what the JSON format writes for the event.

use std::sync::OnceLock;

use super::context::write_request_span;
use super::format::{open_line, with_line};

/// Takes a whole line (ending in `\n`) and whether it is an audit line.
pub type Sink = Box<dyn Fn(&[u8], bool) + Send + Sync>;

static SINK: OnceLock<Sink> = OnceLock::new();

/// Where lines go from now on (the first call wins: one subscriber per process).
pub fn install(sink: Sink) {
    let _ = SINK.set(sink);
}

/// Whether tracing would log an event of `callsite` (see `tracing::callsite!`): the level's
/// filter, then the callsite's cached interest, asking the subscriber only when that says
/// "sometimes", which is what `tracing::event!` does (`tracing::enabled!` always asks, at a
/// cost near a tenth of the line).
pub fn would_log(callsite: &'static tracing::callsite::DefaultCallsite) -> bool {
    use tracing::callsite::Callsite;
    let meta = callsite.metadata();
    if *meta.level() > tracing::level_filters::LevelFilter::current() {
        return false;
    }
    let interest = callsite.interest();
    if interest.is_never() {
        return false;
    }
    interest.is_always() || tracing::dispatcher::get_default(|d| d.enabled(meta))
}

/// `{"timestamp":…,"level":…,"fields":{` + `fields` + `}` + the request's span + `}\n`:
/// the JSON format's layout.
fn render(level: &'static str, line: &mut String, fields: impl FnOnce(&mut String)) {
    // Writing into a String cannot fail.
    let _ = open_line(line, level);
    fields(line);
    line.push('}');
    let _ = write_request_span(line);
    line.push_str("}\n");
}

/// Writes the line to the installed sink; false when there is none (log through tracing).
fn write(level: &'static str, audit: bool, fields: impl FnOnce(&mut String)) -> bool {
    let Some(sink) = SINK.get() else {
        return false;
    };
    with_line(|line| {
        render(level, line, fields);
        sink(line.as_bytes(), audit);
    });
    true
}

/// `"message":"request refused","status":…,"elapsed_ms":…` at INFO; false when the caller
/// must log it through tracing.
pub fn refused(status: u16, elapsed_ms: f64) -> bool {
    write("INFO", false, |line| {
        outcome(line, "request refused", status, elapsed_ms)
    })
}

fn outcome(line: &mut String, message: &str, status: u16, elapsed_ms: f64) {
    line.push_str("\"message\":\"");
    line.push_str(message);
    line.push_str("\",\"status\":");
    line.push_str(itoa::Buffer::new().format(status));
    line.push_str(",\"elapsed_ms\":");
    super::format::push_f64(line, elapsed_ms);
}

/// An audit line at INFO: `"message":"<message>"` and the members `members` writes (JSON
/// object members, comma-separated, each value escaped, as the field `json_fields` splices
/// them); false when the caller must log it through tracing.
pub fn audit(message: &'static str, members: impl FnOnce(&mut String)) -> bool {
    write("INFO", true, |line| spliced(line, message, members))
}

fn spliced(line: &mut String, message: &str, members: impl FnOnce(&mut String)) {
    line.push_str("\"message\":\"");
    line.push_str(message);
    line.push_str("\",");
    members(line);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::format::tests::Buf;
    use super::*;

    /// The line without its timestamp (the only part that differs between two writes).
    fn untimed(line: &str) -> String {
        let start = line.find("\",\"level\"").unwrap();
        format!("{{\"timestamp\":\"T{}", &line[start..])
    }

    /// What the JSON format writes for an event `log` emits, inside a request.
    fn through_tracing(log: impl FnOnce()) -> String {
        let buf = Buf::default();
        let sub = tracing_subscriber::fmt()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(super::super::format::JsonLines)
            .with_writer(buf.clone())
            .finish();
        tracing::subscriber::with_default(sub, || {
            super::super::context::in_test_request("4f1c-id", log)
        });
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn direct(fields: impl FnOnce(&mut String)) -> String {
        let mut line = String::new();
        super::super::context::in_test_request("4f1c-id", || render("INFO", &mut line, fields));
        line
    }

    #[test]
    fn a_refusal_is_the_line_tracing_writes() {
        for elapsed_ms in [0.0, 0.25, 1.0, 12.345_678_9, 1e-7, 123_456_789.5] {
            let theirs = through_tracing(|| {
                tracing::info!(status = 401_u16, elapsed_ms, "request refused");
            });
            let ours = direct(|l| outcome(l, "request refused", 401, elapsed_ms));
            assert_eq!(untimed(&ours), untimed(&theirs));
            assert!(ours.ends_with("}\n"));
        }
    }

    #[test]
    fn an_audit_line_is_the_line_tracing_writes() {
        struct Members;
        impl std::fmt::Debug for Members {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"user\":\"alice\",\"n\":2")
            }
        }
        let theirs = through_tracing(|| {
            tracing::info!(target: "stsvend::audit", json_fields = ?Members, "credentials vended");
        });
        let ours = direct(|l| {
            spliced(l, "credentials vended", |l| {
                l.push_str("\"user\":\"alice\",\"n\":2")
            });
        });
        assert_eq!(untimed(&ours), untimed(&theirs));
    }

    /// `would_log` answers as the subscriber's filter does, by level and by target.
    #[test]
    fn would_log_follows_the_filter() {
        fn audit() -> bool {
            would_log(tracing::callsite!(
                name: "audit",
                kind: tracing::metadata::Kind::EVENT,
                target: "stsvend::audit",
                level: tracing::Level::INFO,
                fields: json_fields
            ))
        }
        fn plain() -> bool {
            would_log(tracing::callsite!(
                name: "plain",
                kind: tracing::metadata::Kind::EVENT,
                level: tracing::Level::INFO,
                fields: status
            ))
        }
        for (filter, expect_audit, expect_plain) in [
            ("info", true, true),
            ("warn", false, false),
            ("stsvend::audit=off,info", false, true),
            ("warn,stsvend::audit=info", true, false),
        ] {
            let sub = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::sink)
                .finish();
            tracing::subscriber::with_default(sub, || {
                assert_eq!(audit(), expect_audit, "{filter}");
                assert_eq!(plain(), expect_plain, "{filter}");
            });
        }
    }

    #[test]
    fn without_a_sink_the_caller_logs_through_tracing() {
        // No test installs a sink: the library's own tests log through tracing.
        assert!(SINK.get().is_none());
        assert!(!refused(401, 1.0));
        assert!(!audit("credentials vended", |_| {}));
    }
}
