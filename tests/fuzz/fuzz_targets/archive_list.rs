//! What `configure --all-archives` makes of a service's archive list: everything it keeps is
//! safe to write into the AWS config and sends a login nowhere but the service's origin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stsvend::client::archives::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(endpoint) = url::Url::parse("https://data.example.org/s3credentials") else {
        return;
    };
    match parse(data, &endpoint) {
        Ok(listed) => {
            assert!(!listed.is_empty() && listed.len() <= 100);
            for a in &listed {
                assert!((1..=32).contains(&a.name.len()));
                assert!(a
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                assert!(a
                    .region
                    .as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                assert_eq!(a.endpoint.origin(), endpoint.origin());
                assert!(a.endpoint.path().ends_with("/s3credentials"));
                assert!(a.endpoint.query().is_none());
            }
        }
        Err(e) => {
            assert!(!e.chars().any(char::is_control), "{e:?}");
            assert!(e.len() < 1200, "{}", e.len());
        }
    }
});
