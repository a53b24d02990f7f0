//! The clock is injected so expiry logic (sessions, tokens, cached credentials) can be tested
//! by moving time forward instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        at(since_epoch()).unwrap_or_else(Utc::now)
    }
}

/// The wall clock, as time since the Unix epoch (zero before it).
pub fn since_epoch() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

thread_local! {
    /// The day last read on this thread (days since the epoch) and its date: working out a
    /// date is most of what reading the time costs, and it changes once a day.
    static TODAY: std::cell::Cell<(i64, chrono::NaiveDate)> =
        const { std::cell::Cell::new((i64::MIN, chrono::NaiveDate::MIN)) };
}

/// The instant `since_epoch` after the Unix epoch (None past chrono's range).
fn at(since_epoch: std::time::Duration) -> Option<DateTime<Utc>> {
    let secs = i64::try_from(since_epoch.as_secs()).ok()?;
    let (day, second) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (cached, date) = TODAY.with(std::cell::Cell::get);
    let date = if cached == day {
        date
    } else {
        let date = DateTime::from_timestamp(day.checked_mul(86_400)?, 0)?.date_naive();
        TODAY.with(|cell| cell.set((day, date)));
        date
    };
    let time = chrono::NaiveTime::from_num_seconds_from_midnight_opt(
        u32::try_from(second).ok()?,
        since_epoch.subsec_nanos(),
    )?;
    Some(chrono::NaiveDateTime::new(date, time).and_utc())
}

/// Wall-clock time plus an offset that only grows: tests jump ahead with `advance`.
#[derive(Debug, Default)]
pub struct ManualClock {
    offset_ms: AtomicI64,
}

impl ManualClock {
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + TimeDelta::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod clock_tests {
    use super::*;

    /// The cached day gives what chrono works out from scratch, across day boundaries.
    #[test]
    fn the_system_clock_reads_as_chrono_does() {
        let day = 86_400;
        for secs in [
            0,
            1,
            day - 1,
            day,
            day + 1,
            1_764_892_800 - 1,
            1_764_892_800,
            4_102_444_799,
            4_102_444_800,
        ] {
            for nanos in [0, 1, 999_999_999] {
                let since = std::time::Duration::new(secs, nanos);
                let expected =
                    DateTime::from_timestamp(i64::try_from(secs).unwrap(), nanos).unwrap();
                assert_eq!(at(since), Some(expected), "{secs}.{nanos}");
            }
        }
        let before = Utc::now();
        let read = SystemClock.now();
        assert!(before <= read && read <= Utc::now());
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let read = since_epoch();
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        assert!(before <= read && read <= after);
    }
}
