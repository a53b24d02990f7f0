//! Replicated sets shared by the fleet (`replicated::Set`: revocations, tickets): per set a
//! Redis hash of sealed entries (field: HMAC of the record's key, value: the record encrypted
//! with the field as associated data), and a channel that tells every replica to re-read it.

use secrecy::ExposeSecret;

use super::*;

/// Which set: its Redis hash and channel are named after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordSet {
    Revocations,
    Tickets,
}

impl RecordSet {
    pub fn name(self) -> &'static str {
        match self {
            Self::Revocations => "revocations",
            Self::Tickets => "tickets",
        }
    }
}

/// One field of a set's hash. A record is where it belongs (sealed with the current key)
/// exactly when its field is its key's `record_field`: fields are named with the same key
/// that seals them.
pub struct StoredRecord {
    pub field: String,
    /// The record, when a configured key opens it.
    pub record: Option<Vec<u8>>,
}

impl Fleet {
    fn set_key(&self, set: RecordSet) -> String {
        format!("{}{}", self.settings.key_prefix, set.name())
    }

    /// Every set's version, one field each: read with HGET, which no request path sends, so
    /// the polls are told apart from requests in Redis's command statistics.
    fn versions_key(&self) -> String {
        format!("{}set-versions", self.settings.key_prefix)
    }

    /// The set's version: Some(None) when Redis has none (never written, or lost); None when
    /// Redis is not usable.
    pub async fn set_version(&self, set: RecordSet) -> Option<Option<i64>> {
        let mut command = redis::cmd("HGET");
        command.arg(self.versions_key()).arg(set.name());
        self.run::<Option<i64>>(command).await
    }

    pub fn set_channel(&self, set: RecordSet) -> String {
        format!("{}{}:changed", self.settings.key_prefix, set.name())
    }

    /// A record's field under the current key (where it belongs).
    pub fn record_field(&self, key: &str) -> String {
        self.text_name(key)
    }

    /// Write sealed records of `set` (each under its key's current field, its fields under
    /// older keys removed), delete `stale` fields, and tell the fleet when anything was
    /// written. False when Redis is not usable.
    pub async fn write_records(
        &self,
        set: RecordSet,
        records: &[(&str, Vec<u8>)],
        stale: &[String],
    ) -> bool {
        let key = self.set_key(set);
        let mut pipe = redis::pipe();
        let mut deletes: Vec<String> = stale.to_vec();
        for (name, record) in records {
            let field = self.text_name(name);
            let Some(sealed) = seal_bytes(&self.keys[0], field.as_bytes(), record) else {
                return false;
            };
            deletes.extend(self.keys[1..].iter().map(|k| text_name_under(k, name)));
            pipe.cmd("HSET").arg(&key).arg(field).arg(sealed).ignore();
        }
        if !deletes.is_empty() {
            pipe.cmd("HDEL").arg(&key).arg(deletes).ignore();
        }
        // Every change moves the set's version, so replicas re-read the whole set only when it
        // moved (or went missing: a flush).
        pipe.cmd("HINCRBY")
            .arg(self.versions_key())
            .arg(set.name())
            .arg(1)
            .ignore();
        if !records.is_empty() {
            pipe.cmd("PUBLISH")
                .arg(self.set_channel(set))
                .arg("changed")
                .ignore();
        }
        self.run_pipe(pipe).await
    }

    /// Every record of `set` Redis holds; None when Redis is not usable.
    pub async fn all_records(&self, set: RecordSet) -> Option<Vec<StoredRecord>> {
        let mut command = redis::cmd("HGETALL");
        command.arg(self.set_key(set));
        let entries: Vec<(String, Vec<u8>)> = self.run(command).await?;
        Some(
            entries
                .into_iter()
                .map(|(field, sealed)| StoredRecord {
                    record: self
                        .keys
                        .iter()
                        .find_map(|k| open_bytes(k, field.as_bytes(), &sealed)),
                    field,
                })
                .collect(),
        )
    }

    /// A dedicated connection for a set's channel (pub/sub needs its own).
    pub async fn subscribe(&self, set: RecordSet) -> Result<redis::aio::PubSub, String> {
        let client = redis::Client::open(self.settings.redis_url.expose_secret())
            .map_err(|e| e.to_string())?;
        let mut pubsub =
            tokio::time::timeout(self.settings.connect_timeout, client.get_async_pubsub())
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
        pubsub
            .subscribe(self.set_channel(set))
            .await
            .map_err(|e| e.to_string())?;
        Ok(pubsub)
    }

    /// Where a ticket's last use is kept: a key of its own that expires with the ticket.
    fn ticket_use_key(&self, id: &str) -> String {
        format!(
            "{}tickets:used:{}",
            self.settings.key_prefix,
            self.text_name(id)
        )
    }

    /// Note that ticket `id` was used at `at` (Unix seconds), kept for `ttl_seconds` (the
    /// ticket's remaining life): the later of this and what another replica noted stays.
    pub async fn note_ticket_use(&self, id: &str, at: i64, ttl_seconds: i64) {
        let mut command = redis::cmd("EVAL");
        command
            .arg("local t = tonumber(redis.call('GET', KEYS[1]) or '0') if tonumber(ARGV[1]) > t then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end return 0")
            .arg(1)
            .arg(self.ticket_use_key(id))
            .arg(at)
            .arg(ttl_seconds.max(1));
        let _ = self.run::<i64>(command).await;
    }

    /// When each of `ids` was last used anywhere in the fleet, as far as Redis knows.
    pub async fn ticket_uses(&self, ids: &[&str]) -> Vec<Option<i64>> {
        if ids.is_empty() {
            return Vec::new();
        }
        let mut command = redis::cmd("MGET");
        for id in ids {
            command.arg(self.ticket_use_key(id));
        }
        self.run::<Vec<Option<i64>>>(command)
            .await
            .unwrap_or_else(|| vec![None; ids.len()])
    }
}
