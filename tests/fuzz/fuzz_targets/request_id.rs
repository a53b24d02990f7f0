//! Client-sent `x-request-id`: accepted ones are short and plain (they go into log lines).
#![no_main]

use actix_web::http::header::HeaderValue;
use libfuzzer_sys::fuzz_target;
use stsvend::telemetry::{capped, sane_request_id};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = HeaderValue::from_bytes(data) {
        if let Some(id) = sane_request_id(&value) {
            assert!((1..=128).contains(&id.len()));
            assert!(id.bytes().all(|b| b.is_ascii_graphic()));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(capped(text).len() <= stsvend::telemetry::MAX_LOGGED_FIELD + 32);
    }
});
