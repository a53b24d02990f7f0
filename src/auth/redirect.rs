//! Return paths after login: only paths on this site, never another host.

use percent_encoding::percent_decode_str;

/// Accept `candidate` as a place to send the user back to only if it is a path on this site,
/// however it is encoded: `//host`, `/\host`, `https://host` and their percent-encoded forms
/// are refused.
pub fn safe_return_path(candidate: &str) -> Option<String> {
    // Raw paths never carry literal whitespace; decoded ones may (`%20`).
    if candidate.len() > 2048 || candidate.chars().any(char::is_whitespace) {
        return None;
    }
    let mut current = candidate.to_owned();
    // Decode a few rounds: a browser or proxy may decode once more than we did.
    for _ in 0..4 {
        if !is_local_path(&current) {
            return None;
        }
        let decoded = percent_decode_str(&current)
            .decode_utf8()
            .ok()?
            .into_owned();
        if decoded == current {
            return Some(candidate.to_owned());
        }
        current = decoded;
    }
    None
}

fn is_local_path(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/') | Some(b'\\'))
        && !s.contains('\\')
        && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::safe_return_path;

    #[test]
    fn local_paths_pass() {
        for ok in [
            "/",
            "/s3credentials",
            "/s3credentials?format=container",
            "/a/b%20c",
        ] {
            assert_eq!(safe_return_path(ok).as_deref(), Some(ok), "{ok}");
        }
    }

    #[test]
    fn anything_that_could_leave_the_site_is_refused() {
        for bad in [
            "",
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "%2F%2Fevil.example",
            "/%2F/evil.example",
            "/%5Cevil.example",
            "/%252F/evil.example",
            "evil.example",
            "/ok\r\nSet-Cookie: x=y",
            "/%0d%0aSet-Cookie:x",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_return_path(bad), None, "{bad}");
        }
    }
}
