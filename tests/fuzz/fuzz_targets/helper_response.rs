//! What the helper makes of a service's answer: status, request id and body from the network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stsvend::client::parse_response;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let status = 100 + u16::from_be_bytes([data[0], data[1]]) % 500;
    let Ok(text) = std::str::from_utf8(&data[2..]) else {
        return;
    };
    let (request_id, body) = text.split_once('\n').unwrap_or(("", text));
    match parse_response(status, Some(request_id), body) {
        Ok(_) => assert_eq!(status, 200),
        Err(e) => {
            // The one line the user sees: no control characters, bounded.
            let line = e.to_string();
            assert!(!line.chars().any(char::is_control), "{line:?}");
            assert!(line.len() < 1200);
        }
    }
});
