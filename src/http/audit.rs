//! The audit line of a vended credential, one per response: who, which session and scope,
//! which key, how they authenticated, from where. Written straight into the JSON log line
//! (see `telemetry::format::SPLICED`), its fixed part rendered once per credential.

use actix_web::HttpRequest;

use crate::auth::AuthenticatedUser;
use crate::telemetry::capped;
use crate::vend::scope::SessionScope;
use crate::vend::vendor::Vended;

/// A constant: looking a header up by a `&str` parses the name on every call.
static X_FORWARDED_FOR: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("x-forwarded-for");

/// The audit line's `format` member for a bundle of credentials.
pub const BUNDLE_FORMAT: &str = ",\"format\":\"bundle\"";

/// Writes the audit line for credentials handed to `user`; `format` is the whole member
/// (`Format::audit_member`, or [`BUNDLE_FORMAT`]).
pub fn vended(
    req: &HttpRequest,
    user: &AuthenticatedUser,
    archive: &crate::archive::Archive,
    scope: &SessionScope,
    vended: &Vended,
    format: &'static str,
) {
    let audit = Audit {
        user: &user.user_id,
        archive: &archive.name,
        authenticated_by: user.method,
        ticket: user.ticket.as_ref().map(|t| t.claims.id.as_str()),
        via: user.via.as_deref(),
        session_name: &vended.session_name,
        scope,
        credentials: &vended.credentials,
        rendered: &vended.rendered,
        cache: vended.outcome,
        format,
        client: req
            .peer_addr()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip()),
        forwarded_for: req
            .headers()
            .get(&X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    };
    let callsite = tracing::callsite!(
        name: "credentials vended",
        kind: tracing::metadata::Kind::EVENT,
        target: "stsvend::audit",
        level: tracing::Level::INFO,
        fields: json_fields
    );
    if !crate::telemetry::line::would_log(callsite) {
        return;
    }
    // Straight to the log sink where there is one (one line per credential response).
    let direct = crate::telemetry::line::audit("credentials vended", |line| {
        // Writing into a String cannot fail.
        let _ = audit.render(line);
    });
    if !direct {
        tracing::info!(target: "stsvend::audit", json_fields = ?audit, "credentials vended");
    }
}

/// The audit line's fields, as JSON members: user, session name, archive, scope, policy hash, buckets, access key id,
/// expiration, packed policy size (rendered once per credential), then how they
/// authenticated, cache outcome, format, client and `X-Forwarded-For`. Every string is
/// escaped; client-controlled ones are capped.
struct Audit<'a> {
    user: &'a str,
    archive: &'a str,
    authenticated_by: crate::auth::AuthMethod,
    /// The ticket's id (never the ticket), when the request came with one.
    ticket: Option<&'a str>,
    /// The platform acting for the user.
    via: Option<&'a str>,
    session_name: &'a str,
    scope: &'a crate::vend::scope::SessionScope,
    credentials: &'a crate::vend::sts::StsCredentials,
    rendered: &'a std::sync::OnceLock<crate::vend::vendor::Rendered>,
    cache: crate::vend::vendor::CacheOutcome,
    format: &'static str,
    client: std::net::IpAddr,
    forwarded_for: &'a str,
}

impl Audit<'_> {
    /// What is the same on every response with this credential, rendered once per
    /// credential: user, session name, scope, policy hash, buckets | key id, expiration,
    /// packed policy size; `|` is where each request's `narrowed_to` goes (a narrowing equal
    /// to the user's whole scope shares the plain request's credential).
    fn fixed(&self) -> crate::vend::vendor::Rendered {
        use crate::json::{write_escaped, write_member};
        let mut out = String::with_capacity(256 + self.scope.buckets_joined.len());
        let mut split = 0;
        let render = |out: &mut String, split: &mut usize| -> std::fmt::Result {
            out.push_str("\"user\":\"");
            write_escaped(out, &capped(self.user))?;
            out.push('"');
            write_member(out, "session_name", self.session_name)?;
            write_member(out, "archive", self.archive)?;
            write_member(out, "scope", self.scope.mode.as_str())?;
            write_member(out, "policy_hash", &self.scope.hash)?;
            write_member(out, "buckets", &self.scope.buckets_joined)?;
            *split = out.len();
            write_member(out, "access_key_id", &self.credentials.access_key_id)?;
            write_member(out, "expiration", &self.credentials.expiration_rfc3339)?;
            if let Some(size) = self.credentials.packed_policy_size {
                out.push_str(",\"packed_policy_size\":");
                out.push_str(itoa::Buffer::new().format(size));
            }
            Ok(())
        };
        // Writing into a String cannot fail.
        let _ = render(&mut out, &mut split);
        crate::vend::vendor::Rendered {
            text: out.into(),
            split,
        }
    }

    fn render(&self, out: &mut String) -> std::fmt::Result {
        use crate::json::{write_ip, write_member};
        let fixed = self.rendered.get_or_init(|| self.fixed());
        let (head, tail) = fixed.text.split_at(fixed.split.min(fixed.text.len()));
        out.push_str(head);
        if let Some(targets) = &self.scope.narrowed_to {
            write_member(out, "narrowed_to", targets)?;
        }
        out.push_str(tail);
        out.push_str(self.authenticated_by.audit_member());
        if let Some(id) = self.ticket {
            write_member(out, "ticket", id)?;
        }
        if let Some(via) = self.via {
            write_member(out, "via", via)?;
        }
        out.push_str(self.cache.audit_member());
        out.push_str(self.format);
        out.push_str(",\"client\":\"");
        write_ip(out, self.client)?;
        out.push('"');
        if self.forwarded_for.is_empty() {
            out.push_str(",\"forwarded_for\":\"\"");
            return Ok(());
        }
        write_member(out, "forwarded_for", &capped(self.forwarded_for))
    }
}

thread_local! {
    /// Where audit fields are put together before going into the line in one piece.
    static AUDIT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl std::fmt::Debug for Audit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        AUDIT.with(|buf| match buf.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                self.render(&mut buf)?;
                f.write_str(&buf)
            }
            // Only if formatting re-entered this function on this thread.
            Err(_) => {
                let mut own = String::new();
                self.render(&mut own)?;
                f.write_str(&own)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::auth::AuthMethod;
    use crate::vend::vendor::CacheOutcome;

    /// The members written in one piece are what writing key and value would give.
    #[test]
    fn whole_members_are_key_and_value() {
        for m in [AuthMethod::Session, AuthMethod::Bearer, AuthMethod::Ticket] {
            let mut out = String::new();
            crate::json::write_static_member(&mut out, "authenticated_by", m.name()).unwrap_or(());
            assert_eq!(m.audit_member(), out);
        }
        for f in [
            crate::vend::format::Format::Earthdata,
            crate::vend::format::Format::CredentialProcess,
            crate::vend::format::Format::Container,
        ] {
            let mut out = String::new();
            crate::json::write_static_member(&mut out, "format", f.name()).unwrap_or(());
            assert_eq!(f.audit_member(), out);
        }
        let mut bundle = String::new();
        crate::json::write_static_member(&mut bundle, "format", "bundle").unwrap_or(());
        assert_eq!(super::BUNDLE_FORMAT, bundle);
        let mut empty = String::new();
        crate::json::write_member(&mut empty, "forwarded_for", "").unwrap_or(());
        assert_eq!(empty, ",\"forwarded_for\":\"\"");
        for c in [
            CacheOutcome::Hit,
            CacheOutcome::Miss,
            CacheOutcome::Fallback,
            CacheOutcome::Disabled,
            CacheOutcome::Shared,
        ] {
            let mut out = String::new();
            crate::json::write_static_member(&mut out, "cache", c.as_str()).unwrap_or(());
            assert_eq!(c.audit_member(), out);
        }
    }
}
