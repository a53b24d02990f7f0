//! Tickets as bearer secrets: what a ticket says (who made it, what it may read, until when)
//! sealed with AES-256-GCM under a key derived from the session key, so that any replica
//! checks one without a Redis round trip. A ticket is `stsvend_tk1_` and the base64url of
//! nonce and ciphertext: the prefix tells it from an IdP token at a glance (and lets secret
//! scanners find leaked ones). Whether a ticket was deleted is the registry's business
//! (`tickets`); this module only seals and opens.

use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::SessionSettings;

/// What every ticket starts with.
pub const PREFIX: &str = crate::common::TICKET_PREFIX;
/// Bound into the encryption: a ticket cannot be replayed as anything else sealed elsewhere.
const AAD: &[u8] = b"stsvend ticket v1";
/// The longest ticket accepted (a user id, groups and 20 targets fit well within it).
pub const MAX_TICKET_BYTES: usize = 12 * 1024;
const NONCE: usize = 12;
/// Opened tickets kept (a worker fleet sends the same ticket on every request).
const OPENED: u64 = 10_000;
const OPENED_TTL: Duration = Duration::from_secs(3600);

/// What a ticket says. Short field names: a ticket travels in a header on every request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketClaims {
    /// The ticket's id (the registry's key; shown in lists, not a secret).
    pub id: String,
    /// The user who made it.
    pub sub: String,
    /// Their groups that this deployment's rules mention, when they made it.
    pub grp: Vec<String>,
    /// What it may read (canonical `s3://bucket/prefix`); empty: whatever its user may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tgt: Vec<String>,
    /// The credential lifetime it asks for (None: the archive's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dur: Option<u32>,
    /// Made at (Unix seconds).
    pub iat: i64,
    /// Void after (Unix seconds).
    pub exp: i64,
    /// The platform the user acted through when making it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl TicketClaims {
    pub fn issued_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.iat, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the ticket is malformed")]
    Malformed,
    #[error("the ticket was not issued by this service (or its key has been retired)")]
    Unsealed,
    #[error("the ticket has expired")]
    Expired,
    #[error("the ticket has been deleted")]
    Deleted,
    #[error("the ticket ended when its user's access was revoked")]
    Revoked,
    #[error("tickets are turned off in this deployment")]
    Disabled,
}

/// A ticket opened once: its claims (and its user and groups as requests carry them), and
/// when its use was last noted.
#[derive(Debug)]
pub struct Opened {
    pub claims: TicketClaims,
    pub user: Arc<str>,
    pub groups: Arc<[String]>,
    pub via: Option<Arc<str>>,
    /// `claims.tgt` parsed (canonical); empty: whatever the user may read.
    pub targets: Vec<crate::vend::narrow::Target>,
    /// Unix seconds of the last use recorded in the registry (at most one note a minute).
    pub noted: std::sync::atomic::AtomicI64,
}

/// Seals and opens tickets with keys derived from the session keys (rotation: tickets
/// sealed with a previous key still open).
pub struct TicketCodec {
    keys: Vec<Aes256Gcm>,
    /// The key for CSRF tokens of the page's ticket form.
    forms: Hmac<Sha256>,
    opened: moka::sync::Cache<Arc<str>, Arc<Opened>, foldhash::fast::RandomState>,
}

/// Startup only: HMAC takes any key length, AES-256 the 32-byte HMAC output.
#[allow(clippy::expect_used)]
fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

impl TicketCodec {
    /// Startup only.
    #[allow(clippy::expect_used)]
    pub fn new(session: &SessionSettings) -> Self {
        let keys = std::iter::once(&session.key)
            .chain(&session.previous_keys)
            .map(|k| {
                Aes256Gcm::new_from_slice(&derive(k.bytes(), b"stsvend ticket seal v1"))
                    .expect("a 32-byte AES key")
            })
            .collect();
        let forms = <Hmac<Sha256> as Mac>::new_from_slice(&derive(
            session.key.bytes(),
            b"stsvend ticket form v1",
        ))
        .expect("HMAC takes any key");
        Self {
            keys,
            forms,
            opened: moka::sync::Cache::builder()
                .max_capacity(OPENED)
                .time_to_live(OPENED_TTL)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    /// The ticket string for `claims`.
    pub fn seal(&self, claims: &TicketClaims) -> Option<String> {
        let plain = serde_json::to_vec(claims).ok()?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .keys
            .first()?
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: AAD,
                },
            )
            .ok()?;
        let mut blob = nonce.to_vec();
        blob.extend(sealed);
        let ticket = format!("{PREFIX}{}", b64().encode(blob));
        (ticket.len() <= MAX_TICKET_BYTES).then_some(ticket)
    }

    /// The claims of a ticket this service sealed, not yet expired at `now`. Whether it was
    /// deleted is not checked here.
    pub fn open(&self, ticket: &str, now: DateTime<Utc>) -> Result<Arc<Opened>, TicketError> {
        let opened = match self.opened.get(ticket) {
            Some(hit) => hit,
            None => {
                let claims = self.unseal(ticket)?;
                let opened = Arc::new(Opened {
                    user: claims.sub.as_str().into(),
                    groups: claims.grp.clone().into(),
                    via: claims.via.as_deref().map(Into::into),
                    targets: crate::vend::narrow::canonical(
                        claims
                            .tgt
                            .iter()
                            .filter_map(|t| crate::vend::narrow::Target::parse(t).ok())
                            .collect(),
                    ),
                    claims,
                    noted: std::sync::atomic::AtomicI64::new(0),
                });
                self.opened.insert(ticket.into(), opened.clone());
                opened
            }
        };
        if now.timestamp() >= opened.claims.exp {
            return Err(TicketError::Expired);
        }
        Ok(opened)
    }

    /// Decrypt and parse, nothing else (the fuzz target `ticket` drives this).
    pub fn unseal(&self, ticket: &str) -> Result<TicketClaims, TicketError> {
        let body = ticket.strip_prefix(PREFIX).ok_or(TicketError::Malformed)?;
        if ticket.len() > MAX_TICKET_BYTES {
            return Err(TicketError::Malformed);
        }
        let blob = b64().decode(body).map_err(|_| TicketError::Malformed)?;
        if blob.len() <= NONCE {
            return Err(TicketError::Malformed);
        }
        let (nonce, sealed) = blob.split_at(NONCE);
        let plain = self
            .keys
            .iter()
            .find_map(|k| {
                k.decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: AAD,
                    },
                )
                .ok()
            })
            .ok_or(TicketError::Unsealed)?;
        parse_claims(&plain)
    }

    /// The CSRF token of the page's ticket form for a session of `user` that ends at `exp`
    /// (Unix seconds): only this service can compute it, and it changes with each login.
    pub fn form_token(&self, user: &str, exp: i64) -> String {
        b64().encode(self.form_mac(user, exp).finalize().into_bytes())
    }

    /// Whether `token` is the form token for that session (compared in constant time).
    pub fn form_token_ok(&self, user: &str, exp: i64, token: &str) -> bool {
        b64()
            .decode(token)
            .is_ok_and(|given| self.form_mac(user, exp).verify_slice(&given).is_ok())
    }

    /// The MAC over a session: the user (length first, so no two sessions meet) and its end.
    fn form_mac(&self, user: &str, exp: i64) -> Hmac<Sha256> {
        let mut mac = self.forms.clone();
        mac.update(&u64::try_from(user.len()).unwrap_or(0).to_be_bytes());
        mac.update(user.as_bytes());
        mac.update(&exp.to_be_bytes());
        mac
    }
}

/// Claims sealed by this service are trusted, but checked as if they were not: a key that
/// leaked must not turn into a crash or a widened ticket.
pub fn parse_claims(plain: &[u8]) -> Result<TicketClaims, TicketError> {
    let claims: TicketClaims = serde_json::from_slice(plain).map_err(|_| TicketError::Malformed)?;
    let sane = !claims.id.is_empty()
        && claims.id.len() <= 64
        && !claims.sub.is_empty()
        && claims.sub.len() <= 256
        && claims.grp.len() <= 256
        && claims.tgt.len() <= crate::vend::narrow::MAX_TARGETS
        && claims.iat <= claims.exp
        && claims
            .tgt
            .iter()
            .all(|t| crate::vend::narrow::Target::parse(t).is_ok())
        && claims.via.as_ref().is_none_or(|v| v.len() <= 64);
    if sane {
        Ok(claims)
    } else {
        Err(TicketError::Malformed)
    }
}

/// A new ticket id: 128 random bits, hex.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::CookieKey;

    fn session(key: u8, previous: &[u8]) -> SessionSettings {
        SessionSettings {
            cookie_name: "s".into(),
            key: CookieKey::from_bytes(vec![key; 64]),
            previous_keys: previous
                .iter()
                .map(|b| CookieKey::from_bytes(vec![*b; 64]))
                .collect(),
            lifetime: Duration::from_secs(3600),
            secure: false,
        }
    }

    fn claims() -> TicketClaims {
        TicketClaims {
            id: new_id(),
            sub: "alice".into(),
            grp: vec!["science".into()],
            tgt: vec!["s3://demo-inregion/public/".into()],
            dur: Some(900),
            iat: 1_800_000_000,
            exp: 1_800_086_400,
            via: None,
        }
    }

    #[test]
    fn a_sealed_ticket_opens_to_what_was_sealed_until_it_expires() {
        let codec = TicketCodec::new(&session(1, &[]));
        let c = claims();
        let ticket = codec.seal(&c).unwrap();
        assert!(ticket.starts_with(PREFIX));
        let before = DateTime::from_timestamp(c.exp - 1, 0).unwrap();
        assert_eq!(codec.open(&ticket, before).unwrap().claims, c);
        let after = DateTime::from_timestamp(c.exp, 0).unwrap();
        assert_eq!(codec.open(&ticket, after).err(), Some(TicketError::Expired));
    }

    #[test]
    fn a_ticket_survives_key_rotation_and_not_retirement() {
        let old = TicketCodec::new(&session(1, &[]));
        let ticket = old.seal(&claims()).unwrap();
        let rotated = TicketCodec::new(&session(2, &[1]));
        assert!(rotated.unseal(&ticket).is_ok());
        let retired = TicketCodec::new(&session(2, &[]));
        assert_eq!(retired.unseal(&ticket).err(), Some(TicketError::Unsealed));
    }

    #[test]
    fn any_change_to_a_ticket_is_refused() {
        let codec = TicketCodec::new(&session(1, &[]));
        let ticket = codec.seal(&claims()).unwrap();
        let body = ticket.strip_prefix(PREFIX).unwrap();
        let mut blob = b64().decode(body).unwrap();
        for i in [0, NONCE, blob.len() - 1] {
            blob[i] ^= 1;
            let forged = format!("{PREFIX}{}", b64().encode(&blob));
            assert_eq!(codec.unseal(&forged).err(), Some(TicketError::Unsealed));
            blob[i] ^= 1;
        }
        for bad in [
            "",
            PREFIX,
            "stsvend_tk1_!!",
            "eyJhbGciOi.x.y",
            "stsvend_tk1_AAAA",
        ] {
            assert_eq!(
                codec.unseal(bad).err(),
                Some(TicketError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn claims_that_could_widen_or_crash_are_refused_even_when_sealed() {
        let mut c = claims();
        c.tgt = vec!["s3://Not A Bucket".into()];
        let plain = serde_json::to_vec(&c).unwrap();
        assert_eq!(parse_claims(&plain).err(), Some(TicketError::Malformed));
        let mut c = claims();
        c.exp = c.iat - 1;
        assert!(parse_claims(&serde_json::to_vec(&c).unwrap()).is_err());
        assert!(
            parse_claims(br#"{"id":"x","sub":"a","grp":[],"iat":1,"exp":2,"more":1}"#).is_err()
        );
    }

    #[test]
    fn form_tokens_belong_to_one_session() {
        let codec = TicketCodec::new(&session(1, &[]));
        let t = codec.form_token("alice", 100);
        assert!(codec.form_token_ok("alice", 100, &t));
        assert!(!codec.form_token_ok("alice", 101, &t));
        assert!(!codec.form_token_ok("bob", 100, &t));
        assert!(!codec.form_token_ok("alice", 100, "x"));
        let other = TicketCodec::new(&session(2, &[]));
        assert!(!other.form_token_ok("alice", 100, &t));
    }
}
