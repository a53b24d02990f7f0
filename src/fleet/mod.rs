//! Fleet mode (`[cluster]`): the replicas' shared Redis. This module holds the connection and
//! its outage handling; `credentials` the shared credential cache and the lock that makes one
//! AssumeRole per user serve every replica, `budget` the fleet-wide AssumeRole budget,
//! `records` the replicated sets (revocations, tickets) and their channels, `logins` the
//! login-replay claims.
//!
//! Entries are AES-256-GCM encrypted with the cache key as associated data (an entry cannot be
//! moved to another key) and stored under an HMAC of the cache key: Redis never holds a user
//! id, bucket name or credential in clear. Every Redis operation is bounded by
//! `command_timeout`; a failure makes the replica skip Redis for `retry_after_failure` and work
//! alone (its own cache, its own STS calls), logged once per outage and counted. Redis trouble
//! therefore costs a request at most one command timeout and never fails it.

pub mod budget;
pub mod credentials;
pub mod logins;
pub mod records;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use arc_swap::ArcSwapOption;
use hmac::{Hmac, Mac};
use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

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

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct FleetStats {
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

pub struct Fleet {
    settings: ClusterSettings,
    keys: Vec<KeySet>,
    connection: ArcSwapOption<ConnectionManager>,
    /// While set (monotonic milliseconds since `epoch`), Redis is skipped.
    skip_until_ms: AtomicU64,
    down: AtomicBool,
    epoch: Instant,
    pub stats: FleetStats,
}

impl Fleet {
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
            stats: FleetStats::default(),
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

    /// The Redis name part standing for `text` (a user id, a login state): an HMAC of its
    /// SHA-256 under the current key, never the text itself.
    fn text_name(&self, text: &str) -> String {
        text_name_under(&self.keys[0], text)
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
