//! Logging and request ids: the request context every log line and error body reads
//! (`context`), the JSON line format (`format`) and the queue that writes lines without
//! blocking request threads (`queue`).

pub mod context;
pub mod format;
pub mod line;
pub mod queue;

use std::io::IsTerminal;
use std::sync::atomic::Ordering;

use tracing_subscriber::EnvFilter;

pub use context::{
    capped, current_request_id, error_view, sane_request_id, write_request_id_json, HelpUrls,
    MAX_LOGGED_FIELD, REQUEST_ID_HEADER,
};

use crate::config::LogFormat;
use context::REQUEST_SPANS;

/// What is logged unless `RUST_LOG` says otherwise. actix answers malformed requests (bad
/// headers, oversized heads) with 400 itself and would log each at ERROR: a client could
/// fill the error log at will, so those lines are off.
pub const DEFAULT_FILTER: &str =
    "info,aws_config=warn,aws_smithy_runtime=warn,actix_http::h1::dispatcher=off";

/// Install the global subscriber. `RUST_LOG` overrides the default filter. Lines are written
/// by a background thread through a queue of at most `queue_bytes` (formatting stays on the
/// request thread, the write syscalls do not); when the sink cannot keep up, lines are
/// dropped and counted rather than blocking workers. Keep the guard until exit: it flushes
/// what is queued.
pub fn init(format: LogFormat, queue_bytes: usize) -> queue::LogQueueGuard {
    let (writer, guard) = queue::LogQueue::new(std::io::stdout(), queue_bytes);
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let terminal = std::io::stdout().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !terminal,
    };
    REQUEST_SPANS.store(!json, Ordering::Relaxed);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_target(false)
        .with_writer(writer.clone());
    if json {
        // The hot paths' lines go to the same queue, formatted alike (`line`).
        let direct = writer.clone();
        line::install(Box::new(move |line, audit| {
            if audit {
                direct.push_audit(line);
            } else {
                direct.push(line);
            }
        }));
    }
    // A second init (tests start many apps in one process) is harmless.
    let _ = if json {
        builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(format::JsonLines)
            .try_init()
    } else {
        builder.try_init()
    };
    guard
}
