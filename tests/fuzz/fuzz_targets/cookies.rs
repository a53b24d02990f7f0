//! The session cookie and the login-state cookies and their slot index, as a browser (or an
//! attacker) sends them.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use stsvend::auth::session::{CookieCodec, SlotIndex};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let s = common::settings();
    let codec = CookieCodec::new(&s.session, "/login", "").expect("codec");
    let now = common::now();
    let _ = codec.read_session(text, now);
    let (state, value) = text.split_once('\n').unwrap_or(("state", text));
    let _ = codec.find_login(state, |_| Some(value.to_owned()), now);
    let _ = SlotIndex::parse(text);
    // A real cookie header, as actix parses it.
    for pair in text.split(';') {
        if let Ok(cookie) = actix_web::cookie::Cookie::parse(pair.trim()) {
            let _ = codec.read_session(cookie.value(), now);
        }
    }
});
