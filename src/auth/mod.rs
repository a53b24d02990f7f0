//! Who is asking: OIDC discovery and keys, browser login, the session cookie and bearer
//! tokens (the `AuthenticatedUser` extractor that decides between them is `http::extractor`).

pub mod bearer;
pub mod claims;
pub mod discovery;
pub mod login;
pub mod redirect;
pub mod session;
pub mod ticket;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    Session,
    Bearer,
    /// A ticket the user made for machines that cannot log in (`auth::ticket`).
    Ticket,
}

impl AuthMethod {
    /// As the audit line names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Session => "Session",
            Self::Bearer => "Bearer",
            Self::Ticket => "Ticket",
        }
    }

    /// `,"authenticated_by":"<name>"`, as the audit line writes it (one write, not five).
    pub fn audit_member(self) -> &'static str {
        match self {
            Self::Session => ",\"authenticated_by\":\"Session\"",
            Self::Bearer => ",\"authenticated_by\":\"Bearer\"",
            Self::Ticket => ",\"authenticated_by\":\"Ticket\"",
        }
    }
}

/// A caller whose identity stsvend has verified.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    /// Shared with the token or session cache entry it came from: a cached request copies
    /// no strings.
    pub user_id: std::sync::Arc<str>,
    /// The user's groups that this deployment's bucket rules mention (sorted, deduplicated).
    pub groups: std::sync::Arc<[String]>,
    pub method: AuthMethod,
    /// When the session cookie or bearer token stops being accepted.
    pub expires_at: Option<DateTime<Utc>>,
    /// The injected clock's reading when the caller was authenticated: the rest of the
    /// request decides with the same instant (and does not read the clock again).
    pub at: DateTime<Utc>,
    /// Where the request came from (`network::Proxies::client`), read once here.
    pub client: std::net::IpAddr,
    /// The ticket the request came with: what it may read and for how long bound every
    /// route (`http::credentials::asked`).
    pub ticket: Option<std::sync::Arc<ticket::Opened>>,
    /// The platform acting for the user (`[[platforms]]`), when it is one.
    pub via: Option<std::sync::Arc<str>>,
}
