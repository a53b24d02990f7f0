//! The claims of a signed token (any JSON object): expiry, not-before and issued-at meet the
//! leeway and `groups_max_age` with checked arithmetic, so extreme values are verdicts, not
//! panics.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use stsvend::auth::bearer::{self, BearerVerifier};

fn verifier() -> &'static BearerVerifier {
    static V: OnceLock<BearerVerifier> = OnceLock::new();
    V.get_or_init(|| BearerVerifier::new(common::settings().oidc.clone(), Vec::new(), 1000))
}

fuzz_target!(|data: &[u8]| {
    let Ok(claims) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data)
    else {
        return;
    };
    let now = common::now();
    if let Ok(verified) = verifier().check_claims(&claims, now) {
        if let Some(exp) = verified.expires_at {
            let _ = bearer::expired(exp, now);
        }
        if let Some(iat) = verified.issued_at {
            let _ = bearer::groups_fresh(iat, now, Duration::MAX);
            let _ = bearer::groups_fresh(iat, now, Duration::from_secs(3600));
        }
    }
});
