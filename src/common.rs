//! What the user's helper and the service share (a leaf: it imports nothing of the crate).

use url::{Host, Url};

/// Text from elsewhere (the IdP, the service, a query string) echoed back to a person: without
/// control characters (no terminal escapes, no forged lines) and at most `max` characters.
pub fn printable(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// Whether `url` points at this machine (127.0.0.0/8, ::1 or localhost): the only place plain
/// http is accepted for anything carrying credentials.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        // Non-special schemes (redis://) leave addresses unparsed.
        Some(Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}
