//! Taking access away from a user: a replicated set (`replicated::Set`) every replica checks
//! on every authenticated request, in memory, kept on disk so that no restart lifts a
//! revocation, shared through Redis in fleet mode so that a revocation reaches the whole fleet
//! within a second. A fleet replica serves no signed-in request until it has read the
//! fleet's set from Redis, or started from a copy on disk written after such a read.
//!
//! A lift is a record too (a tombstone with its own time, kept for as long as the revocation
//! it lifts would have lasted); the newer record for a user wins, on a tie the revocation.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::clock::Clock;
use crate::config::Settings;
use crate::fleet::records::RecordSet;
use crate::fleet::Fleet;
use crate::replicated::{Loaded, Set, Store};
use crate::vend::session_name;
use crate::vend::vendor::Vendor;

mod record;
pub use record::Revocation;

/// How much later than the revocation the deny statement's time bound lies, beyond the
/// revocation's second rounded up: a replica's sync bound (under a second while Redis
/// answers), an AssumeRole that passed the check just before the revoke and is still in
/// flight (at most `sts.timeout_seconds`), and clock skew between this host and AWS.
pub const DENY_MARGIN_SLACK: Duration = Duration::from_secs(5);

/// What the revocations file is called in errors.
pub const FILE_KIND: &str = "a revocations file";

/// Where a user stands with this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Clear,
    Revoked,
    /// This replica does not yet know who is revoked (fleet mode, before its first read).
    Unknown,
}

/// The earliest time after `previous` (so a new record supersedes it).
fn after(previous: Option<&Revocation>, now: DateTime<Utc>) -> DateTime<Utc> {
    match previous {
        Some(p) if p.changed_at() >= now => p
            .changed_at()
            .checked_add_signed(TimeDelta::microseconds(1))
            .unwrap_or(now),
        _ => now,
    }
}

pub struct Revocations {
    set: Arc<Set<Revocation>>,
    vendors: Vec<Arc<Vendor>>,
    clock: Arc<dyn Clock>,
}

/// Forget a user's cached credentials in every archive.
async fn forget(vendors: &[Arc<Vendor>], users: &[String]) {
    for user in users {
        for vendor in vendors {
            vendor.forget_user(user).await;
        }
    }
}

impl Revocations {
    /// The set as `loaded` from `store` at startup.
    pub fn new(
        vendors: Vec<Arc<Vendor>>,
        fleet: Option<Arc<Fleet>>,
        clock: Arc<dyn Clock>,
        store: Store<Revocation>,
        loaded: Loaded<Revocation>,
    ) -> Self {
        let forgetting = vendors.clone();
        let set = Set::new(
            fleet.map(|f| (f, RecordSet::Revocations)),
            clock.clone(),
            store,
            loaded,
            Arc::new(move |users: Vec<String>| {
                let vendors = forgetting.clone();
                Box::pin(async move { forget(&vendors, &users).await })
            }),
        );
        Self {
            set: Arc::new(set),
            vendors,
            clock,
        }
    }

    /// Whether this replica knows the revocations it must enforce: always without a fleet
    /// (its own, from disk); in fleet mode once it has read Redis's set, or when it started
    /// from a copy written after such a read. Until then it is not ready and refuses every
    /// signed-in request: Redis being down is no reason to serve users it may not know are
    /// revoked.
    #[inline]
    pub fn synced(&self) -> bool {
        self.set.synced()
    }

    /// The hot-path check: where `user_id` stands at `now`. Inlined into the extractor
    /// (callgrind: about 330 instructions per request when it is a call of its own).
    #[inline]
    pub fn standing(&self, user_id: &str, now: DateTime<Utc>) -> Standing {
        if !self.set.synced() {
            return Standing::Unknown;
        }
        if self.set.with(user_id, |r| r.is_some_and(|r| r.active(now))) {
            Standing::Revoked
        } else {
            Standing::Clear
        }
    }

    /// Whether `user` was revoked at or after `at`, the revocation lifted since or not: what
    /// was given out before a revocation (tickets) ends with it.
    #[inline]
    pub fn revoked_since(&self, user_id: &str, at: DateTime<Utc>) -> bool {
        self.set
            .with(user_id, |r| r.is_some_and(|r| r.revoked_at >= at))
    }

    pub fn list(&self, now: DateTime<Utc>) -> Vec<Revocation> {
        let mut out = self.set.records(now, |r| r.active(now));
        out.sort_by(|a, b| a.user.cmp(&b.user));
        out
    }

    /// Revoke (or re-revoke with a new reason/expiry): the stored revocation, and whether the
    /// fleet was told (false: this replica only, until Redis answers again).
    pub async fn revoke(&self, revocation: Revocation) -> (Revocation, bool) {
        // Everything the fleet has is seen first, so the new record is stamped after it even
        // when this replica's clock runs behind the one that made it.
        self.set.resync().await;
        let (stored, told) = self
            .set
            .record(&revocation.user, |previous| Revocation {
                revoked_at: after(previous, revocation.revoked_at),
                lifted_at: None,
                ..revocation.clone()
            })
            .await;
        forget(&self.vendors, std::slice::from_ref(&stored.user)).await;
        (stored, told)
    }

    /// Lift a revocation: Some(whether the fleet was told), or None when there was none
    /// (here, or in Redis when it answers).
    pub async fn lift(&self, user: &str) -> Option<bool> {
        self.set.resync().await;
        let now = self.clock.now();
        let current = self
            .set
            .with(user, |r| r.filter(|r| r.active(now)).cloned())?;
        let (_, told) = self
            .set
            .record(user, |previous| Revocation {
                lifted_at: Some(after(previous, now)),
                ..current.clone()
            })
            .await;
        Some(told)
    }

    /// Fleet mode: follow the revocation channel, and re-read the set every `RESYNC`.
    pub fn start_sync(&self) {
        self.set.start_sync();
    }
}

/// Sessions issued before this may still be the user's from before the revocation took effect
/// everywhere: `at` rounded up to the second, plus the STS timeout and `DENY_MARGIN_SLACK`.
pub fn deny_until(settings: &Settings, at: DateTime<Utc>) -> DateTime<Utc> {
    let whole = at
        .checked_add_signed(TimeDelta::nanoseconds(999_999_999))
        .unwrap_or(at);
    let whole = chrono::Timelike::with_nanosecond(&whole, 0).unwrap_or(whole);
    let margin = settings.sts.timeout + DENY_MARGIN_SLACK;
    whole + TimeDelta::from_std(margin).unwrap_or(TimeDelta::seconds(60))
}

/// The statement an operator attaches to the read-only role to kill the user's sessions that
/// are already out: it denies everything to sessions named for this user and issued before
/// the revocation at `at` took effect everywhere (`deny_until`); sessions issued after it
/// (once the revocation is lifted) are not affected.
pub fn deny_statement(settings: &Settings, user: &str, at: DateTime<Utc>) -> serde_json::Value {
    let issued_before = deny_until(settings, at)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let sid: String = format!("StsvendRevoke{}", crate::vend::policy::short_hash(user));
    let who = if settings.sts.source_identity {
        serde_json::json!({ "StringEquals": { "aws:SourceIdentity": session_name::source_identity(user) } })
    } else {
        let app = &settings.server.app_name;
        let own = format!("*:{}", session_name::role_session_name(user, app));
        // The sessions platforms made for the user are named for them too.
        let mut names: Vec<String> = settings
            .platforms
            .iter()
            .map(|p| {
                format!(
                    "*:{}",
                    session_name::role_session_name_via(user, app, Some(&p.name))
                )
            })
            .collect();
        if names.is_empty() {
            serde_json::json!({ "StringLike": { "aws:userid": own } })
        } else {
            names.insert(0, own);
            serde_json::json!({ "StringLike": { "aws:userid": names } })
        }
    };
    let mut condition = who;
    condition["DateLessThan"] = serde_json::json!({ "aws:TokenIssueTime": issued_before });
    serde_json::json!({
        "Sid": sid,
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": condition,
    })
}
