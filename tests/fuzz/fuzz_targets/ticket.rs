//! Tickets from the network: what the service makes of a presented ticket (opening it, and the
//! claims inside, checked even though sealed), and what the helper makes of the service's
//! answers to `ticket create` and `ticket list`.
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stsvend::auth::ticket::{parse_claims, TicketCodec};
use stsvend::client::tickets::{parse_created, parse_list, render_list, ticket_secret};

fn codec() -> &'static TicketCodec {
    static CODEC: OnceLock<TicketCodec> = OnceLock::new();
    CODEC.get_or_init(|| TicketCodec::new(&common::settings().session))
}

fuzz_target!(|data: &[u8]| {
    // Sealed or not, claims never widen: whatever parses names at most 20 valid targets.
    if let Ok(claims) = parse_claims(data) {
        assert!(claims.tgt.len() <= 20);
        for t in &claims.tgt {
            assert!(stsvend::vend::narrow::Target::parse(t).is_ok());
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(claims) = codec().unseal(text) {
        assert!(claims.iat <= claims.exp);
    }
    if let Ok(t) = ticket_secret(text) {
        assert!(t.bytes().all(|b| b.is_ascii_graphic()));
    }
    if let Ok(made) = parse_created(201, None, text) {
        assert!(ticket_secret(&made.ticket).is_ok());
    }
    match parse_list(200, None, text) {
        Ok(list) => {
            let shown = render_list(&list);
            assert!(!shown.chars().any(|c| c.is_control() && c != '\n'), "{shown:?}");
        }
        Err(e) => assert!(!e.to_string().chars().any(char::is_control)),
    }
});
