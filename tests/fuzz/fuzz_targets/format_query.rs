//! The `format` query of `/s3credentials`, through actix's query parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stsvend::http::credentials::CredentialQuery;
use stsvend::vend::format::Format;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = actix_web::web::Query::<CredentialQuery>::from_query(text) {
        if let Err(e) = Format::parse(q.format.as_deref()) {
            // The error echoes at most a short piece of the input, without control
            // characters (which Debug-escaping would blow up tenfold).
            assert!(e.description().len() < 300, "{}", e.description().len());
            assert!(!e.description().chars().any(char::is_control));
        }
    }
});
