//! `return_to` and the callback's query string: never a path off the site.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stsvend::auth::redirect::safe_return_path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(path) = safe_return_path(text) {
        // Whatever is accepted is a local path, however a browser decodes it.
        assert!(path.starts_with('/'));
        assert!(!path.starts_with("//") && !path.starts_with("/\\"));
        assert!(!path.chars().any(|c| c.is_control() || c.is_whitespace()));
    }
    let _ = serde_urlencoded_roundtrip(text);
});

fn serde_urlencoded_roundtrip(query: &str) -> Option<()> {
    let q =
        actix_web::web::Query::<stsvend::auth::login::CallbackParams>::from_query(query).ok()?;
    if let Some(r) = &q.return_to {
        let _ = safe_return_path(r);
    }
    Some(())
}
