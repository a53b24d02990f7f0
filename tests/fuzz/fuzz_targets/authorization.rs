//! The `Authorization` header and bearer verification up to and including the signature
//! check, against a fixed key set.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stsvend::auth::bearer::BearerVerifier;
use stsvend::http::extractor::bearer_from_header;

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
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(token) = bearer_from_header(value) {
        let (v, keys) = verifier();
        let _ = v.verify_with_keys(token, keys, common::now());
    }
});
