//! How much each API key is used: the requests made with it since the last
//! flush, tallied in memory (a write per request would put the database's
//! one write lock on every keyed request), and the usage as its owner reads
//! it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use time::{Date, OffsetDateTime};

/// Days of usage the owner is shown (and kept).
pub const USAGE_DAYS: u16 = 30;

/// Requests made with one key on one (UTC) day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayCount {
    pub date: Date,
    /// Every request made with the key, the denied ones included.
    pub requests: u64,
    /// Of those, the ones answered 401, 403 or 429.
    pub denied: u64,
}

/// One key's usage since the last flush: added to what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    pub key_id: String,
    pub last_used_at: OffsetDateTime,
    pub last_used_ip: IpAddr,
    /// Oldest first; usually one day, two around midnight.
    pub days: Vec<DayCount>,
}

impl UsageDelta {
    pub fn requests(&self) -> u64 {
        self.days.iter().map(|day| day.requests).sum()
    }

    /// Adds a later (or an earlier, unflushed) delta of the same key.
    fn absorb(&mut self, other: UsageDelta) {
        if other.last_used_at >= self.last_used_at {
            self.last_used_at = other.last_used_at;
            self.last_used_ip = other.last_used_ip;
        }
        for day in other.days {
            self.add(day);
        }
    }

    fn add(&mut self, count: DayCount) {
        match self.days.iter_mut().find(|day| day.date == count.date) {
            Some(day) => {
                day.requests += count.requests;
                day.denied += count.denied;
            }
            None => {
                self.days.push(count);
                self.days.sort_by_key(|day| day.date);
            }
        }
    }
}

/// A key's usage as its owner reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    /// Requests since the key was made.
    pub total: u64,
    pub last_used_at: Option<OffsetDateTime>,
    pub last_used_ip: Option<String>,
    /// The last `USAGE_DAYS` days with any use, newest first.
    pub days: Vec<DayCount>,
}

/// Usage not yet flushed, by key id. Its size is bounded by the number of
/// valid keys (only a key found in the database is tallied).
#[derive(Debug, Default)]
pub struct UsageTally {
    pending: HashMap<String, UsageDelta>,
}

impl UsageTally {
    /// One request made with `key_id` at `at` from `ip`.
    pub fn note(&mut self, key_id: &str, at: OffsetDateTime, ip: IpAddr, denied: bool) {
        let count = DayCount {
            date: at.date(),
            requests: 1,
            denied: u64::from(denied),
        };
        if let Some(delta) = self.pending.get_mut(key_id) {
            if at >= delta.last_used_at {
                delta.last_used_at = at;
                delta.last_used_ip = ip;
            }
            delta.add(count);
            return;
        }
        self.pending.insert(
            key_id.to_owned(),
            UsageDelta {
                key_id: key_id.to_owned(),
                last_used_at: at,
                last_used_ip: ip,
                days: vec![count],
            },
        );
    }

    /// Everything tallied so far, leaving the tally empty.
    pub fn take(&mut self) -> Vec<UsageDelta> {
        self.pending.drain().map(|(_, delta)| delta).collect()
    }

    /// Puts back deltas whose flush failed, merged with what came since.
    pub fn restore(&mut self, deltas: Vec<UsageDelta>) {
        for delta in deltas {
            match self.pending.get_mut(&delta.key_id) {
                Some(newer) => newer.absorb(delta),
                None => {
                    self.pending.insert(delta.key_id.clone(), delta);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// The tally shared by every request: one short lock per keyed request.
#[derive(Debug, Default)]
pub struct UsageLog(Mutex<UsageTally>);

impl UsageLog {
    pub fn note(&self, key_id: &str, at: OffsetDateTime, ip: IpAddr, denied: bool) {
        self.tally().note(key_id, at, ip, denied);
    }

    pub fn take(&self) -> Vec<UsageDelta> {
        self.tally().take()
    }

    pub fn restore(&self, deltas: Vec<UsageDelta>) {
        self.tally().restore(deltas);
    }

    /// A panic elsewhere while holding the lock leaves counts, not broken
    /// invariants: keep counting.
    fn tally(&self) -> MutexGuard<'_, UsageTally> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn requests_are_counted_per_key_and_day_and_the_last_use_wins() {
        let mut tally = UsageTally::default();
        let before_midnight = datetime!(2026-03-01 23:59:59 UTC);
        let after_midnight = datetime!(2026-03-02 00:00:01 UTC);
        tally.note("k1", before_midnight, ip("10.0.0.1"), false);
        tally.note("k1", after_midnight, ip("10.0.0.2"), true);
        tally.note("k1", after_midnight, ip("10.0.0.2"), false);
        tally.note("k2", before_midnight, ip("10.0.0.9"), true);
        // A request that finished late but started earlier moves nothing back.
        tally.note("k1", before_midnight, ip("10.0.0.3"), false);

        let mut deltas = tally.take();
        deltas.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        assert!(tally.is_empty());
        let k1 = &deltas[0];
        assert_eq!(k1.last_used_at, after_midnight);
        assert_eq!(k1.last_used_ip, ip("10.0.0.2"));
        assert_eq!(k1.requests(), 4);
        assert_eq!(
            k1.days,
            vec![
                DayCount {
                    date: before_midnight.date(),
                    requests: 2,
                    denied: 0
                },
                DayCount {
                    date: after_midnight.date(),
                    requests: 2,
                    denied: 1
                },
            ]
        );
        assert_eq!(deltas[1].requests(), 1);
        assert_eq!(deltas[1].days[0].denied, 1);
    }

    #[test]
    fn a_failed_flush_is_put_back_and_merged_with_later_use() {
        let mut tally = UsageTally::default();
        let first = datetime!(2026-03-01 10:00:00 UTC);
        let later = datetime!(2026-03-01 10:00:05 UTC);
        tally.note("k1", first, ip("10.0.0.1"), false);
        let unflushed = tally.take();
        tally.note("k1", later, ip("10.0.0.2"), true);
        tally.restore(unflushed);

        let merged = tally.take();
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].last_used_at, later);
        assert_eq!(merged[0].last_used_ip, ip("10.0.0.2"));
        assert_eq!(merged[0].requests(), 2);
        assert_eq!(merged[0].days[0].denied, 1);
    }
}
