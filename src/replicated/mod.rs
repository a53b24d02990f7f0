//! A set of records every replica holds in memory (no Redis round trip on the hot path),
//! keeps on disk (`store`, read before the replica serves, so that no restart undoes a
//! change) and, in fleet mode, shares through Redis (sealed like the credential cache). Every
//! replica merges its set with Redis's when told on the set's channel and at least every
//! `RESYNC` anyway, so a change reaches the whole fleet within a second. Without Redis a
//! change applies to the replica that made it.
//!
//! What takes access away must fail closed, so replicas merge instead of copying Redis: a
//! record goes away only once it is no longer `relevant`; two records for one key become
//! their `join`; a replica puts back whatever Redis lacks (a change made during an outage
//! reaches the fleet once Redis answers, one lost to a flush or a failover comes back and is
//! counted in `stsvend_revocations_lost_total`). Records sealed with a previous cluster key
//! are re-sealed under the current one. Revocations (`revoke`) and tickets (`tickets`) are
//! such sets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::clock::Clock;
use crate::fleet::records::RecordSet;
use crate::fleet::Fleet;

mod store;
pub use store::{Loaded, Store};

/// Longest gap between two looks at the fleet's set (its version: a full read when it moved).
pub const RESYNC: Duration = Duration::from_millis(500);
/// Longest gap between two full reads, moved or not (a hash deleted by hand, say).
const FULL_RESYNC: Duration = Duration::from_secs(30);

/// What one record of a replicated set must say about itself.
pub trait Record:
    Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + std::fmt::Debug + 'static
{
    /// The set holds one record per key.
    fn key(&self) -> &str;
    /// The record that stands for both: commutative and idempotent, so that every replica
    /// ends with the same record whatever order it sees them in.
    fn join(&self, other: &Self) -> Self;
    /// Whether the record still matters (otherwise it is dropped everywhere).
    fn relevant(&self, now: DateTime<Utc>) -> bool;
    /// Whether it takes something away at `now` (a revocation in force, a deleted ticket).
    fn effective(&self, now: DateTime<Utc>) -> bool;
}

/// Called with the keys whose records became effective here (their cached credentials go).
pub type OnEffective = Arc<dyn Fn(Vec<String>) -> BoxFuture<'static, ()> + Send + Sync>;

/// A record as this replica knows it.
#[derive(Debug, Clone, PartialEq)]
struct Known<R> {
    record: R,
    /// Redis was seen holding this record (so its absence there is a loss, not news).
    in_redis: bool,
}

/// What one merge of the local set with Redis's decided.
struct Plan<R> {
    merged: HashMap<String, Known<R>>,
    /// Records Redis lacks, holds older, or holds under an old key.
    publish: Vec<R>,
    /// Keys whose records Redis had held and no longer does.
    lost: Vec<String>,
    /// Keys whose records became effective here.
    newly_effective: Vec<String>,
}

impl<R> Default for Plan<R> {
    fn default() -> Self {
        Self {
            merged: HashMap::new(),
            publish: Vec::new(),
            lost: Vec::new(),
            newly_effective: Vec::new(),
        }
    }
}

/// Redis's records, one per key: (record, its field, whether it needs re-sealing).
type InRedis<R> = HashMap<String, (R, String, bool)>;

fn merge<R: Record>(
    local: &HashMap<String, Known<R>>,
    fleet: &InRedis<R>,
    now: DateTime<Utc>,
) -> Plan<R> {
    let mut plan = Plan::default();
    for (key, known) in local {
        if !known.record.relevant(now) {
            continue;
        }
        let (record, in_redis) = match fleet.get(key) {
            Some((theirs, _, reseal)) => {
                let joined = known.record.join(theirs);
                let same = joined == *theirs;
                if !same || *reseal {
                    plan.publish.push(joined.clone());
                }
                (joined, same && !*reseal)
            }
            None => {
                if known.in_redis {
                    plan.lost.push(key.clone());
                }
                plan.publish.push(known.record.clone());
                (known.record.clone(), false)
            }
        };
        plan.merged.insert(key.clone(), Known { record, in_redis });
    }
    for (key, (theirs, _, reseal)) in fleet {
        if plan.merged.contains_key(key) {
            continue;
        }
        if *reseal {
            plan.publish.push(theirs.clone());
        }
        plan.merged.insert(
            key.clone(),
            Known {
                record: theirs.clone(),
                in_redis: !*reseal,
            },
        );
    }
    for (key, known) in &plan.merged {
        let was = local.get(key).is_some_and(|k| k.record.effective(now));
        if known.record.effective(now) && !was {
            plan.newly_effective.push(key.clone());
        }
    }
    plan
}

pub struct Set<R: Record> {
    local: ArcSwap<HashMap<String, Known<R>>>,
    /// Where the fleet's set lives (fleet mode).
    fleet: Option<(Arc<Fleet>, RecordSet)>,
    clock: Arc<dyn Clock>,
    /// The durable copy.
    store: Store<R>,
    /// The fleet's set has been read from Redis since this replica started (fleet mode).
    synced: AtomicBool,
    /// The copy on disk was written after such a read (by an earlier run of this replica).
    started_synced: bool,
    on_effective: OnEffective,
    /// The set's version at the last full read, and when that was.
    read_at: std::sync::Mutex<(Option<i64>, std::time::Instant)>,
}

impl<R: Record> Set<R> {
    /// The set as `loaded` from `store` at startup.
    pub fn new(
        fleet: Option<(Arc<Fleet>, RecordSet)>,
        clock: Arc<dyn Clock>,
        store: Store<R>,
        loaded: Loaded<R>,
        on_effective: OnEffective,
    ) -> Self {
        let local: HashMap<String, Known<R>> = loaded
            .records
            .into_iter()
            .map(|record| {
                (
                    record.key().to_owned(),
                    Known {
                        record,
                        in_redis: false,
                    },
                )
            })
            .collect();
        Self {
            local: ArcSwap::from_pointee(local),
            fleet,
            clock,
            store,
            synced: AtomicBool::new(false),
            started_synced: loaded.fleet_synced,
            on_effective,
            read_at: std::sync::Mutex::new((None, std::time::Instant::now())),
        }
    }

    /// Whether this replica knows the records it must enforce: always without a fleet (its
    /// own, from disk); in fleet mode once it has read Redis's set, or when it started from a
    /// copy written after such a read.
    #[inline]
    pub fn synced(&self) -> bool {
        self.fleet.is_none() || self.started_synced || self.synced.load(Ordering::Relaxed)
    }

    /// What the set holds for `key`, looked at without copying (the hot path).
    #[inline]
    pub fn with<T>(&self, key: &str, look: impl FnOnce(Option<&R>) -> T) -> T {
        let local = self.local.load();
        // Mostly empty (no one revoked): nothing to hash the key for.
        if local.is_empty() {
            return look(None);
        }
        look(local.get(key).map(|k| &k.record))
    }

    /// Every record still relevant at `now` that `keep` accepts.
    pub fn records(&self, now: DateTime<Utc>, keep: impl Fn(&R) -> bool) -> Vec<R> {
        self.local
            .load()
            .values()
            .map(|k| &k.record)
            .filter(|r| r.relevant(now) && keep(r))
            .cloned()
            .collect()
    }

    /// Write the set to disk (an error in the log when it could not be: the set in memory
    /// still holds).
    fn persist(&self) {
        let now = self.clock.now();
        let local = self.local.load();
        let mut records: Vec<&R> = local
            .values()
            .map(|k| &k.record)
            .filter(|r| r.relevant(now))
            .collect();
        records.sort_by(|a, b| a.key().cmp(b.key()));
        let fleet_synced = self.fleet.is_some() && self.synced();
        if let Err(e) = self.store.save(records, fleet_synced) {
            tracing::error!(
                file = %self.store.path().display(),
                error = %e,
                "cannot write a replicated set's file: a restart would lose what changed since"
            );
        }
    }

    /// Put the record `make` returns (given what the set holds for `key`) in the local set,
    /// write it to disk and tell Redis: the stored record, and whether the fleet was told
    /// (false: this replica only, until Redis answers again). A caller whose record depends
    /// on what the fleet has reads it first (`resync`), once for all its changes.
    pub async fn record(&self, key: &str, make: impl Fn(Option<&R>) -> R) -> (R, bool) {
        let mut stored = None;
        self.local.rcu(|m| {
            let mut m = HashMap::clone(m);
            let record = make(m.get(key).map(|k| &k.record));
            stored = Some(record.clone());
            m.insert(
                record.key().to_owned(),
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

    /// Change the record the set holds for `key` (as `record`, the caller having read the
    /// fleet's set when that matters): the stored record and whether the fleet was told; None
    /// when there is none.
    pub async fn update(&self, key: &str, change: impl Fn(&R) -> R) -> Option<(R, bool)> {
        let mut stored = None;
        self.local.rcu(|m| {
            stored = None;
            let Some(known) = m.get(key) else {
                return HashMap::clone(m);
            };
            let record = change(&known.record);
            stored = Some(record.clone());
            let mut m = HashMap::clone(m);
            m.insert(
                key.to_owned(),
                Known {
                    record,
                    in_redis: false,
                },
            );
            m
        });
        let record = stored?;
        self.persist();
        let told = self.publish(std::slice::from_ref(&record), &[]).await;
        Some((record, told))
    }

    /// Write records to Redis; on success they are known to be there.
    async fn publish(&self, records: &[R], stale: &[String]) -> bool {
        let Some((shared, set)) = self.fleet.as_ref() else {
            return false;
        };
        let sealed: Vec<(&str, Vec<u8>)> = records
            .iter()
            .filter_map(|r| Some((r.key(), serde_json::to_vec(r).ok()?)))
            .collect();
        if sealed.is_empty() && stale.is_empty() {
            return true;
        }
        if !shared.write_records(*set, &sealed, stale).await {
            return false;
        }
        self.local.rcu(|m| {
            let mut m = HashMap::clone(m);
            for r in records {
                if let Some(k) = m.get_mut(r.key()).filter(|k| k.record == *r) {
                    k.in_redis = true;
                }
            }
            m
        });
        true
    }

    /// Merge the fleet's set (when Redis answers) with the local one, and put back in Redis
    /// what it lacks: whether Redis's set was read.
    pub async fn resync(&self) -> bool {
        let Some((shared, set)) = self.fleet.as_ref() else {
            return false;
        };
        let Some(stored) = shared.all_records(*set).await else {
            return false;
        };
        let now = self.clock.now();
        let mut fleet: InRedis<R> = HashMap::new();
        let mut stale = Vec::new();
        let mut unopened = 0usize;
        for entry in stored {
            let Some(record) = entry
                .record
                .as_deref()
                .and_then(|r| serde_json::from_slice::<R>(r).ok())
            else {
                unopened += 1;
                continue;
            };
            if !record.relevant(now) {
                stale.push(entry.field);
                continue;
            }
            let home = shared.record_field(record.key());
            let misplaced = entry.field != home;
            match fleet.get_mut(record.key()) {
                Some(seen) => {
                    // The same key under two fields (one sealed with an older key): one
                    // record of both, kept under the current field.
                    let joined = seen.0.join(&record);
                    let (_, loser, _) = std::mem::replace(seen, (joined, home.clone(), true));
                    for field in [loser, entry.field] {
                        if field != home {
                            stale.push(field);
                        }
                    }
                }
                None => {
                    fleet.insert(record.key().to_owned(), (record, entry.field, misplaced));
                }
            }
        }
        if unopened > 0 {
            tracing::warn!(
                set = set.name(),
                records = unopened,
                "records in Redis that no configured cluster key opens: keep the key they were sealed with in cluster.previous_encryption_keys until every replica has re-sealed them"
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
                    .any(|(key, k)| m.get(key).is_none_or(|old| old.record != k.record));
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
                set = set.name(),
                lost = plan.lost.len(),
                "Redis lost records this replica knew it held (a flush, a restart without persistence, a failover): putting them back"
            );
        }
        if !plan.newly_effective.is_empty() {
            (self.on_effective)(plan.newly_effective).await;
        }
        if !plan.publish.is_empty() || !stale.is_empty() {
            self.publish(&plan.publish, &stale).await;
        }
        true
    }

    /// Re-read the fleet's set when its version moved (or is missing, or `FULL_RESYNC` passed):
    /// a replica looks every `RESYNC`, and a large set costs a read only when it changed.
    async fn resync_if_moved(&self) {
        let Some((shared, set)) = self.fleet.as_ref() else {
            return;
        };
        let Some(version) = shared.set_version(*set).await else {
            return;
        };
        let due = self.read_at.lock().map_or(true, |last| {
            !self.synced.load(Ordering::Relaxed)
                || version.is_none()
                || last.0 != version
                || last.1.elapsed() >= FULL_RESYNC
        });
        // The version read before the full read: a change in between is read next time.
        if due && self.resync().await {
            if let Ok(mut last) = self.read_at.lock() {
                *last = (version, std::time::Instant::now());
            }
        }
    }

    /// Fleet mode: follow the set's channel, and look at the set every `RESYNC`.
    pub fn start_sync(self: &Arc<Self>) {
        let Some((shared, set)) = self.fleet.clone() else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.resync_if_moved().await;
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
                if let Ok(pubsub) = shared.subscribe(set).await {
                    let mut messages = pubsub.into_on_message();
                    while messages.next().await.is_some() {
                        me.resync_if_moved().await;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}
