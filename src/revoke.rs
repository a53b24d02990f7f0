//! Taking access away from a user: a set every replica checks on every authenticated request
//! (in memory: no Redis round trip on the hot path). In fleet mode the set lives in Redis
//! (sealed like the credential cache) and every replica re-reads it when told on the
//! revocation channel and at least every `RESYNC` anyway, so a revocation reaches the whole
//! fleet within a second. Without Redis it applies to the replica that received it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::vend::cache::Vendor;
use crate::vend::session_name;

/// Longest gap between two full reads of the fleet's revocations.
pub const RESYNC: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub user: String,
    pub reason: Option<String>,
    pub revoked_at: DateTime<Utc>,
    /// None: until lifted.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Revocation {
    fn active(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

pub struct Revocations {
    local: ArcSwap<HashMap<String, Revocation>>,
    vendor: Arc<Vendor>,
}

impl Revocations {
    pub fn new(vendor: Arc<Vendor>) -> Arc<Self> {
        Arc::new(Self {
            local: ArcSwap::from_pointee(HashMap::new()),
            vendor,
        })
    }

    /// The hot-path check.
    pub fn is_revoked(&self, user_id: &str, now: DateTime<Utc>) -> bool {
        self.local
            .load()
            .get(user_id)
            .is_some_and(|r| r.active(now))
    }

    pub fn list(&self, now: DateTime<Utc>) -> Vec<Revocation> {
        let mut out: Vec<Revocation> = self
            .local
            .load()
            .values()
            .filter(|r| r.active(now))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.user.cmp(&b.user));
        out
    }

    /// Revoke (or re-revoke with a new reason/expiry). Returns whether the fleet was told
    /// (false: this replica only).
    pub async fn revoke(&self, revocation: Revocation) -> bool {
        let user = revocation.user.clone();
        self.local.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(user.clone(), revocation.clone());
            m
        });
        let shared = match self.vendor.shared() {
            Some(shared) => match serde_json::to_vec(&revocation) {
                Ok(record) => shared.put_revocation(&user, &record).await,
                Err(_) => false,
            },
            None => false,
        };
        self.vendor.forget_user(&user).await;
        shared
    }

    /// Lift a revocation: Some(whether the fleet was told), or None when there was none
    /// (here, or in Redis when it answers).
    pub async fn lift(&self, user: &str) -> Option<bool> {
        let existed = self.local.load().contains_key(user);
        self.local.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.remove(user);
            m
        });
        match self.vendor.shared() {
            Some(shared) => match shared.delete_revocation(user).await {
                Some(removed) => (existed || removed).then_some(true),
                None => existed.then_some(false),
            },
            None => existed.then_some(false),
        }
    }

    /// Replace the local set with the fleet's (when Redis answers).
    async fn resync(&self) {
        let Some(shared) = self.vendor.shared() else {
            return;
        };
        let Some(records) = shared.all_revocations().await else {
            return;
        };
        let fleet: HashMap<String, Revocation> = records
            .iter()
            .filter_map(|r| serde_json::from_slice::<Revocation>(r).ok())
            .map(|r| (r.user.clone(), r))
            .collect();
        let before = self.local.load_full();
        for user in fleet.keys().filter(|u| !before.contains_key(*u)) {
            self.vendor.forget_user(user).await;
        }
        if *before != fleet {
            self.local.store(Arc::new(fleet));
        }
    }

    /// Fleet mode: follow the revocation channel, and re-read the set every `RESYNC`.
    pub fn start_sync(self: &Arc<Self>) {
        let Some(shared) = self.vendor.shared().cloned() else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.resync().await;
                tokio::time::sleep(RESYNC).await;
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            loop {
                if let Ok(pubsub) = shared.subscribe().await {
                    let mut messages = pubsub.into_on_message();
                    while messages.next().await.is_some() {
                        me.resync().await;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

/// The statement an operator attaches to the read-only role to kill the user's sessions that
/// are already out: it denies everything to sessions named for this user and issued before
/// now (new sessions after the revocation is lifted are not affected).
pub fn deny_statement(settings: &Settings, user: &str, at: DateTime<Utc>) -> serde_json::Value {
    let issued_before = at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let sid: String = format!("StsvendRevoke{}", crate::vend::policy::short_hash(user));
    let who = if settings.sts.source_identity {
        serde_json::json!({ "StringEquals": { "aws:SourceIdentity": session_name::source_identity(user) } })
    } else {
        serde_json::json!({ "StringLike": { "aws:userid": format!("*:{}", session_name::role_session_name(user, &settings.server.app_name)) } })
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
