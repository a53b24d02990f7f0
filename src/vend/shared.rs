//! Fleet mode's second-level credential cache on Redis (`[cluster]`), and the lock that makes
//! one AssumeRole per user serve every replica.
//!
//! Entries are AES-256-GCM encrypted with the cache key as associated data (an entry cannot be
//! moved to another key) and stored under an HMAC of the cache key: Redis never holds a user
//! id, bucket name or credential in clear. Every Redis operation is bounded by
//! `command_timeout`; a failure makes the replica skip Redis for `retry_after_failure` and work
//! alone (its own cache, its own STS calls), logged once per outage and counted. Redis trouble
//! therefore costs a request at most one command timeout and never fails it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use redis::aio::ConnectionManager;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::sts::StsCredentials;
use crate::config::ClusterSettings;

type HmacSha256 = Hmac<Sha256>;

/// One encryption key's two derived keys: for entries and for key names.
struct KeySet {
    aead: Aes256Gcm,
    /// Keyed once at startup; cloned per name.
    names: HmacSha256,
}

impl KeySet {
    /// Startup only (HMAC takes keys of any length; AES-256 takes the 32-byte HMAC output).
    #[allow(clippy::expect_used)]
    fn derive(secret: &[u8]) -> Self {
        let derive = |label: &[u8]| -> Vec<u8> {
            let mut mac =
                <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
            mac.update(label);
            mac.finalize().into_bytes().to_vec()
        };
        let aead_key = derive(b"stsvend cluster cache entries v1");
        let names_key = derive(b"stsvend cluster cache names v1");
        Self {
            aead: Aes256Gcm::new_from_slice(&aead_key).expect("a 32-byte AES key"),
            names: <HmacSha256 as Mac>::new_from_slice(&names_key)
                .expect("HMAC takes any key length"),
        }
    }

    /// The Redis name of a cache key: hex of HMAC(names key, cache key).
    fn name(&self, key: &[u8; 32]) -> String {
        let mut mac = self.names.clone();
        mac.update(key);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// What is encrypted: the credential itself.
#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: DateTime<Utc>,
    packed_policy_size: Option<i32>,
}

/// How a lock attempt went.
pub enum Lock {
    /// This replica calls STS; release with the token afterwards.
    Acquired(String),
    /// Another replica is calling STS for this key.
    Held,
    /// Redis is not usable right now: work alone.
    Unavailable,
}

/// How waiting for another replica's AssumeRole ended.
pub enum Waited {
    /// Its credential.
    Found(StsCredentials),
    /// Its lock lapsed without a credential (the holder died or lost Redis): this replica
    /// holds the lock now and calls STS; release with the token afterwards.
    TookOver(String),
    /// `cluster.lock_wait_ms` passed, or Redis went away.
    TimedOut,
}

/// One field of the fleet's revocation hash. A record is where it belongs (sealed with the
/// current key) exactly when its field is the user's `revocation_field`: fields are named
/// with the same key that seals them.
pub struct StoredRevocation {
    pub field: String,
    /// The record, when a configured key opens it.
    pub record: Option<Vec<u8>>,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct SharedStats {
    /// Revocations this replica knew Redis had, found missing there (a flush, a restart
    /// without persistence, a failover) and put back.
    pub revocations_lost: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub writes: AtomicU64,
    pub waits: AtomicU64,
    /// Waits that ended without the winner's credential (this replica then called STS).
    pub wait_timeouts: AtomicU64,
    /// Waits that found the lock lapsed (its holder died or stopped renewing) and took it.
    pub lock_takeovers: AtomicU64,
    pub errors: AtomicU64,
    /// Fleet budget slots given up because the caller woke too late for them.
    pub slots_forfeited: AtomicU64,
}

pub struct SharedCache {
    settings: ClusterSettings,
    keys: Vec<KeySet>,
    connection: ArcSwapOption<ConnectionManager>,
    /// While set (monotonic milliseconds since `epoch`), Redis is skipped.
    skip_until_ms: AtomicU64,
    down: AtomicBool,
    epoch: Instant,
    pub stats: SharedStats,
}

/// Fleet-wide AssumeRole budget: GCRA without burst on Redis's clock, so calls are spaced
/// at least `interval` apart across all replicas. Reserves the caller's slot and returns
/// how long to wait for it (µs), or -1 - (how much longer than `max_wait` it would be).
const RESERVE_STS_SLOT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now
if wait > max_wait then return -1 - (wait - max_wait) end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.floor((wait + interval) / 1000) + 1000)
return wait
";

/// Whether an AssumeRole may go ahead under the fleet budget.
pub enum Slot {
    /// Go ahead at this instant (this machine's clock, measured from before the reservation
    /// was sent, so never later than the slot itself), but no later than `SLOT_GRACE` after
    /// it: a caller that wakes later forfeits the slot and reserves another, so that calls
    /// delayed by a busy machine cannot bunch up and put more than the budget into a second.
    At(Instant),
    /// Over budget: come back after this long.
    Refused(Duration),
    /// No fleet budget (none configured, or Redis unavailable): the replica's own applies.
    Local,
}

/// How late a caller may use its fleet budget slot (see `sts_slot`).
pub const SLOT_GRACE: Duration = Duration::from_millis(40);

const RELEASE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// Extend a lock this replica holds (compare-and-PEXPIRE: never another replica's).
const RENEW: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

impl SharedCache {
    /// Connects in the background (Redis may come up after stsvend, or never).
    pub fn start(settings: ClusterSettings) -> Arc<Self> {
        let keys = settings
            .encryption_keys
            .iter()
            .map(|k| KeySet::derive(&k.0))
            .collect();
        let shared = Arc::new(Self {
            settings,
            keys,
            connection: ArcSwapOption::empty(),
            skip_until_ms: AtomicU64::new(0),
            down: AtomicBool::new(false),
            epoch: Instant::now(),
            stats: SharedStats::default(),
        });
        let me = shared.clone();
        tokio::spawn(async move { me.connect_until_done().await });
        shared
    }

    async fn connect_until_done(self: Arc<Self>) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.connect().await {
                Ok(manager) => {
                    self.connection.store(Some(Arc::new(manager)));
                    tracing::info!("connected to Redis: the credential cache is shared");
                    return;
                }
                Err(e) => {
                    self.failed(&e);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn connect(&self) -> Result<ConnectionManager, String> {
        let client = redis::Client::open(self.settings.redis_url.expose_secret())
            .map_err(|e| e.to_string())?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.settings.connect_timeout))
            .set_response_timeout(Some(self.settings.command_timeout))
            .set_number_of_retries(1);
        tokio::time::timeout(
            self.settings.connect_timeout * 2,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the last attempt to use Redis failed (connecting included): the replica works
    /// alone until it answers.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Whether Redis answered recently (readiness and metrics).
    pub fn available(&self) -> bool {
        self.connection.load().is_some() && !self.down.load(Ordering::Relaxed)
    }

    fn failed(&self, error: &dyn std::fmt::Display) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        let retry = u64::try_from(self.settings.retry_after_failure.as_millis()).unwrap_or(1000);
        self.skip_until_ms
            .store(self.now_ms().saturating_add(retry), Ordering::Relaxed);
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %error, retry_ms = retry, "Redis unavailable: working alone until it answers again");
        }
    }

    fn succeeded(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis answers again: the credential cache is shared");
        }
    }

    /// The connection, unless Redis is being skipped after a failure.
    fn usable(&self) -> Option<Arc<ConnectionManager>> {
        if self.now_ms() < self.skip_until_ms.load(Ordering::Relaxed) {
            return None;
        }
        self.connection.load_full()
    }

    /// Run one bounded command; None when Redis is skipped, failed or too slow.
    async fn run<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Option<T> {
        let connection = self.usable()?;
        let mut connection = (*connection).clone();
        self.bounded(command.query_async::<T>(&mut connection))
            .await
    }

    /// Run a pipeline whose answers are not needed; false when it did not complete.
    async fn run_pipe(&self, pipe: redis::Pipeline) -> bool {
        let Some(connection) = self.usable() else {
            return false;
        };
        let mut connection = (*connection).clone();
        self.bounded(pipe.query_async::<()>(&mut connection))
            .await
            .is_some()
    }

    /// A Redis call within `cluster.command_timeout_ms`, its failure recorded.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        match tokio::time::timeout(self.settings.command_timeout, call).await {
            Ok(Ok(value)) => {
                self.succeeded();
                Some(value)
            }
            Ok(Err(e)) => {
                self.failed(&e);
                None
            }
            Err(_) => {
                self.failed(&"no answer within cluster.command_timeout_ms");
                None
            }
        }
    }

    fn entry_name(&self, keys: &KeySet, key: &[u8; 32]) -> String {
        format!("{}c:{}", self.settings.key_prefix, keys.name(key))
    }

    fn lock_name(&self, key: &[u8; 32]) -> String {
        format!("{}l:{}", self.settings.key_prefix, self.keys[0].name(key))
    }

    /// The shared credential for `key`, if any replica stored one (any configured key may
    /// have encrypted it).
    pub async fn get(&self, key: &[u8; 32]) -> Option<StsCredentials> {
        for keys in &self.keys {
            let mut command = redis::cmd("GET");
            command.arg(self.entry_name(keys, key));
            let Some(Some(blob)) = self.run::<Option<Vec<u8>>>(command).await else {
                continue;
            };
            if let Some(credentials) = open(keys, key, &blob) {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Some(credentials);
            }
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// The Redis name part standing for `text` (a user id, a login state): an HMAC of its
    /// SHA-256 under the current key, never the text itself.
    fn text_name(&self, text: &str) -> String {
        text_name_under(&self.keys[0], text)
    }

    /// The Redis set naming a user's entries (so revoking them can drop them).
    fn user_index(&self, user_id: &str) -> String {
        format!("{}u:{}", self.settings.key_prefix, self.text_name(user_id))
    }

    /// Store a fresh credential for `ttl` (its usable lifetime), indexed under its user.
    pub async fn put(
        &self,
        key: &[u8; 32],
        user_id: &str,
        credentials: &StsCredentials,
        ttl: Duration,
    ) {
        let Some(blob) = seal(&self.keys[0], key, credentials) else {
            return;
        };
        let ttl_ms = millis(ttl);
        let name = self.entry_name(&self.keys[0], key);
        let index = self.user_index(user_id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&name)
            .arg(blob)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("SADD")
            .arg(&index)
            .arg(&name)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&index)
            .arg(ttl_ms)
            .arg("GT")
            .ignore()
            .cmd("PEXPIRE")
            .arg(&index)
            .arg(ttl_ms)
            .arg("NX")
            .ignore();
        if self.run_pipe(pipe).await {
            self.stats.writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drop a user's shared entries (revocation).
    pub async fn forget_user(&self, user_id: &str) {
        let index = self.user_index(user_id);
        let mut command = redis::cmd("SMEMBERS");
        command.arg(&index);
        let names: Vec<String> = self.run(command).await.unwrap_or_default();
        let mut command = redis::cmd("DEL");
        command.arg(&index);
        for name in names {
            command.arg(name);
        }
        let _ = self.run::<i64>(command).await;
    }

    /// How long a lock lives unless its holder renews it. Short, so that a holder that dies
    /// mid-call holds the others up only briefly; long enough for renewals that take up to
    /// two command timeouts.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(1) + self.settings.command_timeout * 2
    }

    /// Try to become the one replica that calls STS for `key`, for one `lease`.
    pub async fn lock(&self, key: &[u8; 32]) -> Lock {
        let ttl = self.lease();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut command = redis::cmd("SET");
        command
            .arg(self.lock_name(key))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        match self.run::<Option<String>>(command).await {
            Some(Some(_)) => Lock::Acquired(token),
            Some(None) => Lock::Held,
            None => Lock::Unavailable,
        }
    }

    /// Release a lock this replica holds (compare-and-delete: never another replica's).
    pub async fn unlock(&self, key: &[u8; 32], token: &str) {
        let mut command = redis::cmd("EVAL");
        command
            .arg(RELEASE)
            .arg(1)
            .arg(self.lock_name(key))
            .arg(token);
        let _ = self.run::<i64>(command).await;
    }

    /// Run `work` (the STS call) while holding the lock on `key`, renewing it every quarter
    /// lease. If this process dies, the renewals stop with it and the lock lapses.
    pub async fn holding<F: std::future::Future>(
        &self,
        key: &[u8; 32],
        token: &str,
        work: F,
    ) -> F::Output {
        let renew = async {
            let every = self.lease() / 4;
            loop {
                tokio::time::sleep(every).await;
                let mut command = redis::cmd("EVAL");
                command
                    .arg(RENEW)
                    .arg(1)
                    .arg(self.lock_name(key))
                    .arg(token)
                    .arg(millis(self.lease()));
                let _ = self.run::<i64>(command).await;
            }
        };
        tokio::select! {
            out = work => out,
            never = renew => never,
        }
    }

    /// How long a miss may wait for its budget slot (`cluster.sts_max_wait_ms`).
    pub fn max_wait(&self) -> Duration {
        self.settings.sts_max_wait
    }

    /// A slot in the fleet-wide AssumeRole budget (`cluster.sts_rate_per_second`).
    pub async fn sts_slot(&self) -> Slot {
        let rate = u64::from(self.settings.sts_rate_per_second);
        if rate == 0 {
            return Slot::Local;
        }
        // Slots 8 % wider than 1/rate, and a slot is used at most SLOT_GRACE late (else it is
        // given up for a new one): `rate + 1` calls then span at least
        // rate * interval - grace = 1.08 s - 40 ms, more than a second, with 40 ms left for
        // the SDK between the check and signing. Whatever the rate, no second sees more
        // calls than the budget, however late a busy machine wakes the callers.
        let interval_us = 1_080_000 / rate;
        let max_wait_us = u64::try_from(self.settings.sts_max_wait.as_micros()).unwrap_or(u64::MAX);
        let sent = Instant::now();
        let mut command = redis::cmd("EVAL");
        command
            .arg(RESERVE_STS_SLOT)
            .arg(1)
            .arg(format!("{}sts-budget", self.settings.key_prefix))
            .arg(interval_us)
            .arg(max_wait_us);
        match self.run::<i64>(command).await {
            Some(wait) if wait >= 0 => Slot::At(sent + Duration::from_micros(wait.unsigned_abs())),
            Some(over) => Slot::Refused(Duration::from_micros(over.unsigned_abs())),
            None => Slot::Local,
        }
    }

    /// Wait for the lock holder's credential, up to `cluster.lock_wait_ms`; polls, because a
    /// credential appears at most once per key and lifetime. A poll that finds neither the
    /// credential nor the lock takes the lock: of all the waiters, exactly one.
    pub async fn wait_for(
        &self,
        key: &[u8; 32],
        usable: impl Fn(&StsCredentials) -> bool,
    ) -> Waited {
        self.stats.waits.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + self.settings.lock_wait;
        let mut pause = Duration::from_millis(10);
        while Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
            if self.usable().is_none() {
                break;
            }
            if let Some(c) = self.get(key).await {
                if usable(&c) {
                    return Waited::Found(c);
                }
            }
            match self.lock(key).await {
                Lock::Acquired(token) => {
                    self.stats.lock_takeovers.fetch_add(1, Ordering::Relaxed);
                    return Waited::TookOver(token);
                }
                Lock::Held => {}
                Lock::Unavailable => break,
            }
        }
        self.stats.wait_timeouts.fetch_add(1, Ordering::Relaxed);
        Waited::TimedOut
    }
}

fn seal(keys: &KeySet, key: &[u8; 32], c: &StsCredentials) -> Option<Vec<u8>> {
    let entry = Entry {
        access_key_id: c.access_key_id.clone(),
        secret_access_key: c.secret_access_key.expose_secret().to_owned(),
        session_token: c.session_token.expose_secret().to_owned(),
        expiration: c.expiration,
        packed_policy_size: c.packed_policy_size,
    };
    let plain = serde_json::to_vec(&entry).ok()?;
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let sealed = keys
        .aead
        .encrypt(
            &nonce,
            Payload {
                msg: &plain,
                aad: key,
            },
        )
        .ok()?;
    let mut blob = nonce.to_vec();
    blob.extend(sealed);
    Some(blob)
}

fn open(keys: &KeySet, key: &[u8; 32], blob: &[u8]) -> Option<StsCredentials> {
    if blob.len() < 12 {
        return None;
    }
    let (nonce, sealed) = blob.split_at(12);
    let plain = keys
        .aead
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: key,
            },
        )
        .ok()?;
    let entry: Entry = serde_json::from_slice(&plain).ok()?;
    Some(StsCredentials::new(
        entry.access_key_id,
        SecretString::from(entry.secret_access_key),
        SecretString::from(entry.session_token),
        entry.expiration,
        entry.packed_policy_size,
    ))
}

// ---------------------------------------------------------------------------------------------
// Revocations shared by the fleet: a Redis hash of sealed entries (field: HMAC of the user id,
// value: the revocation encrypted with the field as associated data), and a channel that tells
// every replica to re-read it.
// ---------------------------------------------------------------------------------------------

impl SharedCache {
    fn revocations_key(&self) -> String {
        format!("{}revocations", self.settings.key_prefix)
    }

    pub fn revocations_channel(&self) -> String {
        format!("{}revocations:changed", self.settings.key_prefix)
    }

    /// A user's revocation field under the current key (where a record belongs).
    pub fn revocation_field(&self, user_id: &str) -> String {
        self.text_name(user_id)
    }

    /// Write sealed revocation records (each under its user's current field, its fields
    /// under older keys removed), delete `stale` fields, and tell the fleet when anything was
    /// written. False when Redis is not usable.
    pub async fn write_revocations(&self, records: &[(&str, Vec<u8>)], stale: &[String]) -> bool {
        let key = self.revocations_key();
        let mut pipe = redis::pipe();
        let mut deletes: Vec<String> = stale.to_vec();
        for (user, record) in records {
            let field = self.text_name(user);
            let Some(sealed) = seal_bytes(&self.keys[0], field.as_bytes(), record) else {
                return false;
            };
            deletes.extend(self.keys[1..].iter().map(|k| text_name_under(k, user)));
            pipe.cmd("HSET").arg(&key).arg(field).arg(sealed).ignore();
        }
        if !deletes.is_empty() {
            pipe.cmd("HDEL").arg(&key).arg(deletes).ignore();
        }
        if !records.is_empty() {
            pipe.cmd("PUBLISH")
                .arg(self.revocations_channel())
                .arg("changed")
                .ignore();
        }
        self.run_pipe(pipe).await
    }

    /// Every revocation record Redis holds; None when Redis is not usable.
    pub async fn all_revocations(&self) -> Option<Vec<StoredRevocation>> {
        let mut command = redis::cmd("HGETALL");
        command.arg(self.revocations_key());
        let entries: Vec<(String, Vec<u8>)> = self.run(command).await?;
        Some(
            entries
                .into_iter()
                .map(|(field, sealed)| StoredRevocation {
                    record: self
                        .keys
                        .iter()
                        .find_map(|k| open_bytes(k, field.as_bytes(), &sealed)),
                    field,
                })
                .collect(),
        )
    }

    /// Claim `value` for the whole fleet, once, for `ttl` (login states): Some(true) the first
    /// time, Some(false) after; None when Redis is not usable.
    pub async fn claim_once(&self, value: &str, ttl: Duration) -> Option<bool> {
        let mut command = redis::cmd("SET");
        command
            .arg(format!(
                "{}once:{}",
                self.settings.key_prefix,
                self.text_name(value)
            ))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        self.run::<Option<String>>(command)
            .await
            .map(|r| r.is_some())
    }

    /// A dedicated connection for the revocation channel (pub/sub needs its own).
    pub async fn subscribe(&self) -> Result<redis::aio::PubSub, String> {
        let client = redis::Client::open(self.settings.redis_url.expose_secret())
            .map_err(|e| e.to_string())?;
        let mut pubsub =
            tokio::time::timeout(self.settings.connect_timeout, client.get_async_pubsub())
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
        pubsub
            .subscribe(self.revocations_channel())
            .await
            .map_err(|e| e.to_string())?;
        Ok(pubsub)
    }
}

/// `text` (a user id, a login state) as a Redis name part under `keys`.
fn text_name_under(keys: &KeySet, text: &str) -> String {
    keys.name(&Sha256::digest(text.as_bytes()).into())
}

/// A Redis expiry in milliseconds (at least 1: PX 0 is an error).
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A record sealed to its hash field (it cannot be moved to another user's field).
fn seal_bytes(keys: &KeySet, aad: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let sealed = keys
        .aead
        .encrypt(&nonce, Payload { msg: plain, aad })
        .ok()?;
    let mut blob = nonce.to_vec();
    blob.extend(sealed);
    Some(blob)
}

fn open_bytes(keys: &KeySet, aad: &[u8], blob: &[u8]) -> Option<Vec<u8>> {
    if blob.len() < 12 {
        return None;
    }
    let (nonce, sealed) = blob.split_at(12);
    keys.aead
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn credentials() -> StsCredentials {
        StsCredentials::new(
            "ASIAEXAMPLE".into(),
            SecretString::from("secret/+x".to_owned()),
            SecretString::from("token".to_owned()),
            Utc::now(),
            Some(7),
        )
    }

    #[test]
    fn entries_open_only_under_their_own_key_and_with_their_encryption_key() {
        let keys = KeySet::derive(&[7; 32]);
        let other = KeySet::derive(&[8; 32]);
        let (a, b) = ([1; 32], [2; 32]);
        let blob = seal(&keys, &a, &credentials()).unwrap();
        let opened = open(&keys, &a, &blob).unwrap();
        assert_eq!(opened.access_key_id, "ASIAEXAMPLE");
        assert_eq!(opened.secret_access_key.expose_secret(), "secret/+x");
        assert!(open(&keys, &b, &blob).is_none(), "moved to another key");
        assert!(open(&other, &a, &blob).is_none(), "another encryption key");
        let mut tampered = blob.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(open(&keys, &a, &tampered).is_none());
        let text = String::from_utf8_lossy(&blob);
        assert!(
            !text.contains("ASIA") && !text.contains("secret"),
            "nothing in clear"
        );
        assert_ne!(keys.name(&a), keys.name(&b));
        assert_ne!(keys.name(&a), other.name(&a));
        assert_eq!(keys.name(&a).len(), 64);
    }
}
