//! The `Authorization` header (read as bytes and as text alike) and bearer verification up to and including the signature
//! check, against a fixed key set.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stsvend::auth::bearer::BearerVerifier;
use stsvend::http::extractor::{bearer_bytes, bearer_from_header};

fn verifier() -> &'static (BearerVerifier, jsonwebtoken::jwk::JwkSet) {
    static V: OnceLock<(BearerVerifier, jsonwebtoken::jwk::JwkSet)> = OnceLock::new();
    V.get_or_init(|| {
        let mut oidc = common::settings().oidc.clone();
        oidc.issuer = "https://idp.example".into();
        let keys = serde_json::from_str(include_str!("../jwks.json")).expect("jwks");
        (BearerVerifier::new(oidc, Vec::new(), 1000), keys)
    })
}

fuzz_target!(|data: &[u8]| {
    // Any header value: its bytes name the token its text names (the cache is looked up by
    // the bytes before they are read as text).
    if let Ok(header) = actix_web::http::header::HeaderValue::from_bytes(data) {
        if let Ok(text) = header.to_str() {
            assert_eq!(
                bearer_bytes(header.as_bytes()),
                bearer_from_header(text).map(str::as_bytes)
            );
        }
    }
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(token) = bearer_from_header(value) {
        let (v, keys) = verifier();
        let _ = v.verify_with_keys(token, keys, common::now());
    }
});
