//! The fleet-wide AssumeRole budget, and each user's share of it: both kept on Redis's clock.

use std::time::{Duration, Instant};

use super::*;

/// GCRA on Redis's clock: takes the next slot of `interval` (ARGV[1], µs) on KEYS[1] when it
/// is at most ARGV[2] µs away and returns how far away it is (µs, 0 = now), or -1 - (how much
/// further than that it would be). The fleet's AssumeRole budget uses the tolerance as the
/// longest wait (the caller waits for its slot); a user's share uses it as the burst (the
/// call goes ahead at once).
const TAKE_SLOT: &str = r"
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
    /// was sent, so never later than the slot itself), signed no later than `SLOT_GRACE`
    /// after it (the STS client refuses to sign later): a call delayed by a busy machine
    /// forfeits the slot and reserves another, so delayed calls cannot bunch up and put more
    /// than the budget into a second.
    At(Instant),
    /// Over budget: come back after this long.
    Refused(Duration),
    /// No fleet budget (none configured, or Redis unavailable): the replica's own applies.
    Local,
}

/// How late a caller may use its fleet budget slot (see `sts_slot`).
pub const SLOT_GRACE: Duration = Duration::from_millis(40);

impl Fleet {
    /// How long a miss may wait for its budget slot (`cluster.sts_max_wait_ms`).
    pub fn max_wait(&self) -> Duration {
        self.settings.sts_max_wait
    }

    /// A slot in the fleet-wide AssumeRole budget (`cluster.sts_rate_per_second`) of the
    /// role's `account`: STS quotas are per account, so archives in one account share one.
    pub async fn sts_slot(&self, account: &str) -> Slot {
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
            .arg(TAKE_SLOT)
            .arg(1)
            .arg(format!("{}sts-budget:{account}", self.settings.key_prefix))
            .arg(interval_us)
            .arg(max_wait_us);
        match self.run::<i64>(command).await {
            Some(wait) if wait >= 0 => Slot::At(sent + Duration::from_micros(wait.unsigned_abs())),
            Some(over) => Slot::Refused(Duration::from_micros(over.unsigned_abs())),
            None => Slot::Local,
        }
    }
}

/// Whether a user may cause one more new credential, fleet-wide.
pub enum Share {
    Allowed,
    /// Over their share: come back after this long.
    Refused(Duration),
    /// Redis is not usable: the replica's own share of the user applies alone.
    Local,
}

impl Fleet {
    /// Takes one of `user_id`'s new credentials from their fleet-wide share (`per_minute`,
    /// bursts of `burst`) of `account`'s budget, under a name that does not reveal the user.
    pub async fn user_share(
        &self,
        account: &str,
        user_id: &str,
        per_minute: u32,
        burst: u32,
    ) -> Share {
        let interval_us = 60_000_000 / u64::from(per_minute.max(1));
        let tolerance_us = interval_us * u64::from(burst.max(1) - 1);
        let mut command = redis::cmd("EVAL");
        command
            .arg(TAKE_SLOT)
            .arg(1)
            .arg(format!(
                "{}user-share:{account}:{}",
                self.settings.key_prefix,
                self.text_name(user_id)
            ))
            .arg(interval_us)
            .arg(tolerance_us);
        match self.run::<i64>(command).await {
            Some(within) if within >= 0 => Share::Allowed,
            Some(over) => Share::Refused(
                Duration::from_micros(over.unsigned_abs()).max(Duration::from_secs(1)),
            ),
            None => Share::Local,
        }
    }
}
