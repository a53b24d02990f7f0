//! Login states claimed fleet-wide, so a replayed callback is refused on every replica.

use std::time::Duration;

use super::*;

impl Fleet {
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
}
