//! The audit line of a vended credential, one per response: who, which session and scope,
//! which key, how they authenticated, from where. Written straight into the JSON log line
//! (see `telemetry::format::SPLICED`), its fixed part rendered once per credential.

use actix_web::HttpRequest;

use crate::auth::AuthenticatedUser;
use crate::telemetry::capped;
use crate::vend::scope::SessionScope;
use crate::vend::vendor::Vended;

/// Writes the audit line for credentials handed to `user`.
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
        cache: vended.outcome.as_str(),
        format,
        client: req
            .peer_addr()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip()),
        forwarded_for: req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    };
    tracing::info!(target: "stsvend::audit", json_fields = ?audit, "credentials vended");
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
    cache: &'static str,
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
        use crate::json::{write_ip, write_member, write_static_member};
        let fixed = self.rendered.get_or_init(|| self.fixed());
        let (head, tail) = fixed.text.split_at(fixed.split.min(fixed.text.len()));
        out.push_str(head);
        if let Some(targets) = &self.scope.narrowed_to {
            write_member(out, "narrowed_to", targets)?;
        }
        out.push_str(tail);
        write_static_member(out, "authenticated_by", self.authenticated_by.name())?;
        if let Some(id) = self.ticket {
            write_member(out, "ticket", id)?;
        }
        if let Some(via) = self.via {
            write_member(out, "via", via)?;
        }
        write_static_member(out, "cache", self.cache)?;
        write_static_member(out, "format", self.format)?;
        out.push_str(",\"client\":\"");
        write_ip(out, self.client)?;
        out.push('"');
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
