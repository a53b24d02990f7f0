//! Taking access away from a user: a set every replica checks on every authenticated request
//! (in memory: no Redis round trip on the hot path), kept on disk (`store`, read before the
//! replica serves) so that no restart lifts it. In fleet mode the set also lives in Redis
//! (sealed like the credential cache) and every replica merges it with its own when told on
//! the revocation channel and at least every `RESYNC` anyway, so a revocation reaches the
//! whole fleet within a second. Without Redis it applies to the replica that received it.
//! A fleet replica serves no signed-in request until it has read the fleet's set from Redis,
//! or started from a copy on disk written after such a read.
//!
//! A kill switch must fail closed, so replicas merge instead of copying Redis: a record only
//! goes away when it expires, a lift is a record too (a tombstone with its own time, kept for
//! as long as the revocation it lifts would have lasted), the newer record for a user wins,
//! and a replica puts back whatever Redis lacks: a revocation made during an outage reaches
//! the fleet once Redis answers, one lost to a flush or a failover comes back (and is counted
//! in `stsvend_revocations_lost_total`). Records sealed with a previous cluster key are
//! re-sealed under the current one.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, TimeDelta, Utc};

use crate::clock::Clock;
use crate::config::Settings;
use crate::fleet::Fleet;
use crate::vend::session_name;
use crate::vend::vendor::Vendor;

mod record;
mod store;
pub use record::Revocation;
pub use store::{Loaded, Store};

/// Longest gap between two full reads of the fleet's revocations.
pub const RESYNC: Duration = Duration::from_millis(500);

/// How much later than the revocation the deny statement's time bound lies, beyond the
/// revocation's second rounded up: a replica's sync bound (under a second while Redis
/// answers), an AssumeRole that passed the check just before the revoke and is still in
/// flight (at most `sts.timeout_seconds`), and clock skew between this host and AWS.
pub const DENY_MARGIN_SLACK: Duration = Duration::from_secs(5);

/// Where a user stands with this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Clear,
    Revoked,
    /// This replica does not yet know who is revoked (fleet mode, before its first read).
    Unknown,
}

/// A record as this replica knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    record: Revocation,
    /// Redis was seen holding this record (so its absence there is a loss, not news).
    in_redis: bool,
}

/// The earliest time after `previous` (so a new record supersedes it).
fn after(previous: Option<&Known>, now: DateTime<Utc>) -> DateTime<Utc> {
    match previous {
        Some(p) if p.record.changed_at() >= now => p
            .record
            .changed_at()
            .checked_add_signed(TimeDelta::microseconds(1))
            .unwrap_or(now),
        _ => now,
    }
}

/// What one merge of the local set with Redis's decided.
#[derive(Default)]
struct Plan {
    merged: HashMap<String, Known>,
    /// Records Redis lacks, holds older, or holds under an old key.
    publish: Vec<Revocation>,
    /// Records Redis had held and no longer does.
    lost: Vec<String>,
    /// Users whose revocation is new here (their cached credentials go).
    newly_revoked: Vec<String>,
}

impl Plan {
    /// Take Redis's record for `user` (re-sealed under the current key if it needs it).
    fn adopt(&mut self, user: &str, theirs: &Revocation, reseal: bool) {
        if reseal {
            self.publish.push(theirs.clone());
        }
        self.merged.insert(
            user.to_owned(),
            Known {
                record: theirs.clone(),
                in_redis: true,
            },
        );
    }
}

/// Redis's records, newest per user: (record, its field, whether it needs re-sealing).
type InRedis = HashMap<String, (Revocation, String, bool)>;

fn merge(local: &HashMap<String, Known>, fleet: &InRedis, now: DateTime<Utc>) -> Plan {
    let mut plan = Plan::default();
    for (user, known) in local {
        if !known.record.relevant(now) {
            continue;
        }
        match fleet.get(user) {
            Some((theirs, _, reseal)) if !known.record.supersedes(theirs) => {
                plan.adopt(user, theirs, *reseal);
            }
            found => {
                if found.is_none() && known.in_redis {
                    plan.lost.push(user.clone());
                }
                plan.publish.push(known.record.clone());
                plan.merged.insert(
                    user.clone(),
                    Known {
                        record: known.record.clone(),
                        in_redis: false,
                    },
                );
            }
        }
    }
    for (user, (theirs, _, reseal)) in fleet {
        if !plan.merged.contains_key(user) {
            plan.adopt(user, theirs, *reseal);
        }
    }
    for (user, known) in &plan.merged {
        let was = local.get(user).is_some_and(|k| k.record.active(now));
        if known.record.active(now) && !was {
            plan.newly_revoked.push(user.clone());
        }
    }
    plan
}

pub struct Revocations {
    local: ArcSwap<HashMap<String, Known>>,
    vendors: Vec<Arc<Vendor>>,
    /// Where the fleet's revocations live (fleet mode).
    fleet: Option<Arc<Fleet>>,
    clock: Arc<dyn Clock>,
    /// The durable copy.
    store: Store,
    /// The fleet's set has been read from Redis since this replica started (fleet mode).
    synced: std::sync::atomic::AtomicBool,
    /// The copy on disk was written after such a read (by an earlier run of this replica).
    started_synced: bool,
}

impl Revocations {
    /// The set as `loaded` from `store` at startup.
    pub fn new(
        vendors: Vec<Arc<Vendor>>,
        fleet: Option<Arc<Fleet>>,
        clock: Arc<dyn Clock>,
        store: Store,
        loaded: Loaded,
    ) -> Arc<Self> {
        let local: HashMap<String, Known> = loaded
            .records
            .into_iter()
            .map(|record| {
                (
                    record.user.clone(),
                    Known {
                        record,
                        in_redis: false,
                    },
                )
            })
            .collect();
        Arc::new(Self {
            local: ArcSwap::from_pointee(local),
            vendors,
            fleet,
            clock,
            store,
            synced: std::sync::atomic::AtomicBool::new(false),
            started_synced: loaded.fleet_synced,
        })
    }

    /// Whether this replica knows the revocations it must enforce: always without a fleet
    /// (its own, from disk); in fleet mode once it has read Redis's set, or when it started
    /// from a copy written after such a read. Until then it is not ready and refuses every
    /// signed-in request: Redis being down is no reason to serve users it may not know are
    /// revoked.
    #[inline]
    pub fn synced(&self) -> bool {
        self.fleet.is_none() || self.started_synced || self.synced.load(Ordering::Relaxed)
    }

    /// Write the set to disk (an error in the log when it could not be: the set in memory
    /// still holds).
    fn persist(&self) {
        let now = self.clock.now();
        let local = self.local.load();
        let mut records: Vec<&Revocation> = local
            .values()
            .map(|k| &k.record)
            .filter(|r| r.relevant(now))
            .collect();
        records.sort_by(|a, b| a.user.cmp(&b.user));
        let fleet_synced = self.fleet.is_some() && self.synced();
        if let Err(e) = self.store.save(records, fleet_synced) {
            tracing::error!(
                file = %self.store.path().display(),
                error = %e,
                "cannot write the revocations file: a restart would lose what changed since"
            );
        }
    }

    /// The hot-path check: where `user_id` stands at `now`. Inlined into the extractor
    /// (callgrind: about 330 instructions per request when it is a call of its own).
    #[inline]
    pub fn standing(&self, user_id: &str, now: DateTime<Utc>) -> Standing {
        if !self.synced() {
            return Standing::Unknown;
        }
        let revoked = self
            .local
            .load()
            .get(user_id)
            .is_some_and(|k| k.record.active(now));
        if revoked {
            Standing::Revoked
        } else {
            Standing::Clear
        }
    }

    pub fn list(&self, now: DateTime<Utc>) -> Vec<Revocation> {
        let mut out: Vec<Revocation> = self
            .local
            .load()
            .values()
            .filter(|k| k.record.active(now))
            .map(|k| k.record.clone())
            .collect();
        out.sort_by(|a, b| a.user.cmp(&b.user));
        out
    }

    /// Put `record` in the local set (stamped after what it replaces) and tell Redis: the
    /// stored record, and whether the fleet was told (false: this replica only, until Redis
    /// answers again).
    async fn record(
        &self,
        user: &str,
        make: impl Fn(Option<&Known>) -> Revocation,
    ) -> (Revocation, bool) {
        let mut stored = None;
        self.local.rcu(|m| {
            let mut m = HashMap::clone(m);
            let record = make(m.get(user));
            stored = Some(record.clone());
            m.insert(
                record.user.clone(),
                Known {
                    record,
                    in_redis: false,
                },
            );
            m
        });
        // rcu runs its function at least once.
        let record = stored.unwrap_or_else(|| make(None));
        self.persist();
        let told = self.publish(std::slice::from_ref(&record), &[]).await;
        (record, told)
    }

    /// Write records to Redis; on success they are known to be there.
    async fn publish(&self, records: &[Revocation], stale: &[String]) -> bool {
        let Some(shared) = self.fleet.as_ref() else {
            return false;
        };
        let sealed: Vec<(&str, Vec<u8>)> = records
            .iter()
            .filter_map(|r| Some((r.user.as_str(), serde_json::to_vec(r).ok()?)))
            .collect();
        if sealed.is_empty() && stale.is_empty() {
            return true;
        }
        if !shared.write_revocations(&sealed, stale).await {
            return false;
        }
        self.local.rcu(|m| {
            let mut m = HashMap::clone(m);
            for r in records {
                if let Some(k) = m.get_mut(&r.user).filter(|k| k.record == *r) {
                    k.in_redis = true;
                }
            }
            m
        });
        true
    }

    /// Revoke (or re-revoke with a new reason/expiry): the stored revocation, and whether the
    /// fleet was told (false: this replica only, until Redis answers again).
    pub async fn revoke(&self, revocation: Revocation) -> (Revocation, bool) {
        // Everything the fleet has is seen first, so the new record is stamped after it even
        // when this replica's clock runs behind the one that made it.
        self.resync().await;
        let (stored, told) = self
            .record(&revocation.user, |previous| Revocation {
                revoked_at: after(previous, revocation.revoked_at),
                lifted_at: None,
                ..revocation.clone()
            })
            .await;
        for vendor in &self.vendors {
            vendor.forget_user(&stored.user).await;
        }
        (stored, told)
    }

    /// Lift a revocation: Some(whether the fleet was told), or None when there was none
    /// (here, or in Redis when it answers).
    pub async fn lift(&self, user: &str) -> Option<bool> {
        self.resync().await;
        let now = self.clock.now();
        let current = self
            .local
            .load()
            .get(user)
            .filter(|k| k.record.active(now))
            .map(|k| k.record.clone())?;
        let (_, told) = self
            .record(user, |previous| Revocation {
                lifted_at: Some(after(previous, now)),
                ..current.clone()
            })
            .await;
        Some(told)
    }

    /// Merge the fleet's set (when Redis answers) with the local one, and put back in Redis
    /// what it lacks.
    async fn resync(&self) {
        let Some(shared) = self.fleet.as_ref() else {
            return;
        };
        let Some(stored) = shared.all_revocations().await else {
            return;
        };
        let now = self.clock.now();
        let mut fleet: InRedis = HashMap::new();
        let mut stale = Vec::new();
        let mut unopened = 0usize;
        for entry in stored {
            let Some(record) = entry
                .record
                .as_deref()
                .and_then(|r| serde_json::from_slice::<Revocation>(r).ok())
            else {
                unopened += 1;
                continue;
            };
            if !record.relevant(now) {
                stale.push(entry.field);
                continue;
            }
            let home = shared.revocation_field(&record.user);
            let misplaced = entry.field != home;
            match fleet.get_mut(&record.user) {
                Some(seen) if record.supersedes(&seen.0) => {
                    let (_, loser, _) = std::mem::replace(seen, (record, entry.field, misplaced));
                    if loser != home {
                        stale.push(loser);
                    }
                }
                Some(_) => {
                    if entry.field != home {
                        stale.push(entry.field);
                    }
                }
                None => {
                    fleet.insert(record.user.clone(), (record, entry.field, misplaced));
                }
            }
        }
        if unopened > 0 {
            tracing::warn!(
                records = unopened,
                "revocation records in Redis that no configured cluster key opens: keep the key they were sealed with in cluster.previous_encryption_keys until every replica has re-sealed them"
            );
        }
        let mut plan = Plan::default();
        let mut changed = false;
        self.local.rcu(|m| {
            plan = merge(m, &fleet, now);
            changed = plan.merged.len() != m.len()
                || plan
                    .merged
                    .iter()
                    .any(|(user, k)| m.get(user).is_none_or(|old| old.record != k.record));
            std::mem::take(&mut plan.merged)
        });
        let first = !self.synced.swap(true, Ordering::Relaxed);
        if changed || first {
            self.persist();
        }
        if !plan.lost.is_empty() {
            shared
                .stats
                .revocations_lost
                .fetch_add(plan.lost.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                lost = plan.lost.len(),
                "Redis lost revocations this replica knew it held (a flush, a restart without persistence, a failover): putting them back"
            );
        }
        for user in &plan.newly_revoked {
            for vendor in &self.vendors {
                vendor.forget_user(user).await;
            }
        }
        if !plan.publish.is_empty() || !stale.is_empty() {
            self.publish(&plan.publish, &stale).await;
        }
    }

    /// Fleet mode: follow the revocation channel, and re-read the set every `RESYNC`.
    pub fn start_sync(self: &Arc<Self>) {
        let Some(shared) = self.fleet.clone() else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.resync().await;
                // Until the first read, try again soon: readiness waits for it.
                let pause = if me.synced.load(Ordering::Relaxed) {
                    RESYNC
                } else {
                    Duration::from_millis(50)
                };
                tokio::time::sleep(pause).await;
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
