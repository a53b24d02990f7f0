//! What the targets share: one validated configuration, built once.
#![allow(dead_code)]

use std::sync::OnceLock;

use figment::providers::{Format, Serialized, Toml};
use stsvend::config::{self, Settings};

pub const CONFIG: &str = r#"
[server]
public_url = "https://data.example.org"
[oidc]
issuer = "https://idp.example"
client_id = "stsvend"
[sts]
role_arn = "arn:aws:iam::123456789012:role/r"
[[buckets]]
name = "demo-inregion"
region = "us-west-2"
groups = ["science"]
"#;

/// 64 bytes of 0x2a, base64: fuzzing only.
pub const KEY: &str =
    "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg==";

pub fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let figment = figment::Figment::from(Toml::string(config::DEFAULT_TOML))
            .merge(Toml::string(CONFIG))
            .merge(Serialized::default("session.key", KEY));
        config::from_figment(figment).expect("fuzz configuration").1
    })
}

/// 2026-01-01T00:00:00Z: the seed tokens are valid then.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_767_225_600 + 60, 0).expect("a valid time")
}
