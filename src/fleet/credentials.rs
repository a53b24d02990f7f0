//! The credential cache fleet mode shares: entries sealed per key, and the lock that makes
//! one replica call STS for a user while the others wait for its credential.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, AeadCore, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::vend::sts::StsCredentials;

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

const RELEASE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// Extend a lock this replica holds (compare-and-PEXPIRE: never another replica's).
const RENEW: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

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

impl Fleet {
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
                Lock::Acquired(token) => return Waited::TookOver(token),
                Lock::Held => {}
                Lock::Unavailable => break,
            }
        }
        self.stats.wait_timeouts.fetch_add(1, Ordering::Relaxed);
        Waited::TimedOut
    }
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
