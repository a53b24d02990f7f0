//! Configuration loading and validation: any TOML layered over the defaults either loads or
//! fails with a message naming a key, never a panic.
#![no_main]

#[path = "common.rs"]
mod common;

use figment::providers::{Format, Serialized, Toml};
use libfuzzer_sys::fuzz_target;
use stsvend::config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Run from an empty directory: relative *_file paths must not reach the repository.
    let figment = figment::Figment::from(Toml::string(config::DEFAULT_TOML))
        .merge(Toml::string(common::CONFIG))
        .merge(Serialized::default("session.key", common::KEY))
        .merge(Toml::string(text));
    if let Ok((raw, settings)) = config::from_figment(figment) {
        let _ = config::render_redacted(&raw);
        let _ = stsvend::vend::policy::worst_case(&settings);
    }
});
