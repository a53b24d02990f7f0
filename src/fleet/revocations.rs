//! Revocations shared by the fleet: a Redis hash of sealed entries (field: HMAC of the user id,
//! value: the revocation encrypted with the field as associated data), and a channel that tells
//! every replica to re-read it.

use secrecy::ExposeSecret;

use super::*;

/// One field of the fleet's revocation hash. A record is where it belongs (sealed with the
/// current key) exactly when its field is the user's `revocation_field`: fields are named
/// with the same key that seals them.
pub struct StoredRevocation {
    pub field: String,
    /// The record, when a configured key opens it.
    pub record: Option<Vec<u8>>,
}

impl Fleet {
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
