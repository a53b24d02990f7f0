//! What the user's helper and the service share (a leaf: it imports nothing of the crate).

use url::{Host, Url};

/// Text from elsewhere (the IdP, the service, a query string) echoed back to a person: without
/// control characters (no terminal escapes, no forged lines) and at most `max` characters.
/// What every ticket starts with (the service's `auth::ticket`, the helper's `client::tickets`).
pub const TICKET_PREFIX: &str = "stsvend_tk1_";

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

/// Replaces `dest` with a new file holding `bytes` (permissions `mode` on unix): made beside
/// it under a fresh name (never through a link), synced, renamed over it, the folder synced.
/// A reader sees the old file or the new one, never half of one, and whatever was at `dest`
/// (a file, or a link someone planted) is replaced, never followed.
pub fn replace_file(dest: &std::path::Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = dest.as_os_str().to_owned();
    tmp.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let tmp = std::path::PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode).custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&tmp, dest));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed?;
    // The rename itself survives a crash once the folder is synced (best effort: not every
    // platform opens folders).
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The user's home folder: `HOME`, else (Windows, where Python's `~` and the AWS tools use
/// it) `USERPROFILE`.
pub fn home_dir() -> Option<std::path::PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    var("HOME")
        .or_else(|| {
            if cfg!(windows) {
                var("USERPROFILE")
            } else {
                None
            }
        })
        .map(std::path::PathBuf::from)
}

/// Creates `dir` and its parents (mode 0700 on unix for what is created).
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Every `error` code the service answers with (`[help] urls` may point each at a page; a
/// code not listed here is a bug, caught in debug builds where errors are made).
pub const ERROR_CODES: &[&str] = &[
    "access_denied",
    "beyond_ticket",
    "credential_service_error",
    "cross_site_request",
    "idp_unavailable",
    "invalid_admin_token",
    "invalid_duration",
    "invalid_expires_in",
    "invalid_expiry",
    "invalid_format",
    "invalid_grant",
    "invalid_id_token",
    "invalid_key",
    "invalid_label",
    "invalid_reason",
    "invalid_request",
    "invalid_target",
    "invalid_token",
    "invalid_url",
    "invalid_user",
    "login_failed",
    "login_required",
    "method_not_allowed",
    "missing_target",
    "not_found",
    "not_ready",
    "not_revoked",
    "out_of_region",
    "rate_limited",
    "revoked",
    "scope_too_large",
    "server_error",
    "targets_in_several_archives",
    "targets_too_large",
    "temporarily_unavailable",
    "ticket_not_allowed",
    "too_many_new_credentials",
    "too_many_targets",
    "too_many_tickets",
    "unknown_bucket",
    "unknown_platform",
    "unknown_ticket",
];
