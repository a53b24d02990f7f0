//! The helper's `.netrc` parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stsvend::client::netrc::Netrc;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let n = Netrc::parse(text);
        let _ = n.credentials_for("urs.earthdata.nasa.gov");
        let _ = n.logins_fingerprint();
    }
});
