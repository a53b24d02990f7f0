//! `Accept` negotiation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stsvend::negotiate::{prefers_html_header, wants_json_only_header};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let html = prefers_html_header(text);
        let json = wants_json_only_header(text);
        // Never both: a client gets a page or JSON, not a contradiction.
        assert!(!(html && json), "{text:?}");
    }
});
