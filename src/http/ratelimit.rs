//! Per-client rate limits (GCRA, through `governor`): a general limit on
//! `/api/` and stricter ones on login, register and refresh. Memory stays
//! bounded: idle clients are forgotten every minute, and past `max_keys`
//! tracked clients a limiter starts afresh rather than grow.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

pub use crate::domain::rate::{Rate, RateError};

/// The GCRA quota of a rate: one request per `period / count`, bursts of `count`.
fn quota(rate: Rate) -> Option<Quota> {
    Quota::with_period(rate.period / rate.count.get()).map(|q| q.allow_burst(rate.count))
}

/// `None` turns that one limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub api: Option<Rate>,
    pub login: Option<Rate>,
    pub register: Option<Rate>,
    pub refresh: Option<Rate>,
    /// Clients tracked per limiter before it starts afresh.
    pub max_keys: usize,
}

/// The headers a limited response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateInfo {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the budget is whole again.
    pub reset_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed(RateInfo),
    Limited {
        info: RateInfo,
        retry_after_secs: u64,
    },
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// IPv4 addresses, and IPv6 addresses by their /64: one host hands out a
/// whole /64, so single IPv6 addresses would be free fresh budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpKey(IpAddr);

impl From<IpAddr> for IpKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => IpKey(ip),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpKey(IpAddr::V6(prefix.into()))
            }
        }
    }
}

/// One rate for many clients, each with its own budget (an IP, an API key).
struct Limiter<K: Hash + Eq + Clone = IpKey> {
    rate: Rate,
    quota: Quota,
    inner: RwLock<Arc<Keyed<K>>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    fn new(rate: Rate) -> Option<Self> {
        Some(Self::with_quota(rate, quota(rate)?))
    }

    fn with_quota(rate: Rate, quota: Quota) -> Self {
        Self {
            rate,
            quota,
            inner: RwLock::new(Arc::new(RateLimiter::dashmap(quota).with_middleware())),
        }
    }

    fn current(&self) -> Arc<Keyed<K>> {
        match self.inner.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn check(&self, key: K) -> Decision {
        let limiter = self.current();
        let limit = self.rate.count.get();
        let interval = self.quota.replenish_interval();
        match limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let missing = limit.saturating_sub(remaining);
                Decision::Allowed(RateInfo {
                    limit,
                    remaining,
                    reset_secs: ceil_secs(interval * missing),
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                Decision::Limited {
                    info: RateInfo {
                        limit,
                        remaining: 0,
                        reset_secs: ceil_secs(interval * limit),
                    },
                    retry_after_secs: ceil_secs(wait).max(1),
                }
            }
        }
    }

    /// Forgets clients whose budget is whole again; starts afresh when even
    /// then too many are tracked (a spray of addresses must not grow memory).
    fn tidy(&self, max_keys: usize) -> usize {
        let limiter = self.current();
        limiter.retain_recent();
        limiter.shrink_to_fit();
        let tracked = limiter.len();
        if tracked > max_keys {
            tracing::warn!(
                tracked,
                max_keys,
                "rate limiter tracks too many clients; starting afresh"
            );
            let fresh = Arc::new(RateLimiter::dashmap(self.quota).with_middleware());
            match self.inner.write() {
                Ok(mut guard) => *guard = fresh,
                Err(poisoned) => *poisoned.into_inner() = fresh,
            }
            return 0;
        }
        tracked
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Per-API-key limits: each key has its own budget at its own rate (keys
/// with the same rate share one keyed limiter). Memory stays bounded like
/// the per-IP limits: budgets that are whole again are forgotten, and past
/// `max_keys` tracked keys a limiter starts afresh.
pub struct KeyLimits {
    by_rate: RwLock<HashMap<Rate, Arc<Limiter<Arc<str>>>>>,
    max_keys: usize,
    checks: AtomicU64,
}

impl KeyLimits {
    pub fn new(max_keys: usize) -> Self {
        Self {
            by_rate: RwLock::new(HashMap::new()),
            max_keys: max_keys.max(1),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request of the key `key_id`, limited to `rate`.
    pub fn check(&self, key_id: &str, rate: Rate) -> Decision {
        if self.checks.fetch_add(1, Ordering::Relaxed) % TIDY_EVERY == TIDY_EVERY - 1 {
            self.tidy();
        }
        let existing = match self.by_rate.read() {
            Ok(map) => map.get(&rate).cloned(),
            Err(poisoned) => poisoned.into_inner().get(&rate).cloned(),
        };
        let limiter = match existing {
            Some(limiter) => limiter,
            None => {
                let Some(made) = Limiter::new(rate) else {
                    // Finer than governor can count: no budget to keep.
                    return Decision::Allowed(RateInfo {
                        limit: rate.count.get(),
                        remaining: rate.count.get(),
                        reset_secs: 0,
                    });
                };
                let mut map = match self.by_rate.write() {
                    Ok(map) => map,
                    Err(poisoned) => poisoned.into_inner(),
                };
                Arc::clone(map.entry(rate).or_insert_with(|| Arc::new(made)))
            }
        };
        limiter.check(Arc::from(key_id))
    }

    pub fn tidy(&self) {
        let limiters: Vec<_> = match self.by_rate.read() {
            Ok(map) => map.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        };
        for limiter in limiters {
            limiter.tidy(self.max_keys);
        }
    }
}

/// Which limits a path is under, besides the general `/api/` one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Specific {
    Login,
    Register,
    Refresh,
}

fn specific(path: &str) -> Option<Specific> {
    match path.strip_suffix('/').unwrap_or(path) {
        // Change-password checks a password too: a stolen access token must
        // not become a faster way to guess it than the login form.
        "/api/v1/auth/login" | "/api/v1/users/me/change-password" => Some(Specific::Login),
        "/api/v1/auth/register" => Some(Specific::Register),
        "/api/v1/auth/refresh" => Some(Specific::Refresh),
        _ => None,
    }
}

/// Lets one event per client through each minute: for the audit events a
/// flood would otherwise turn into a flood of rows (a client over its rate
/// limit, a client presenting bad tokens). Bounded like the limiters.
pub struct OncePerMinute {
    gate: Limiter,
    max_keys: usize,
}

impl OncePerMinute {
    pub fn new(max_keys: usize) -> Self {
        let rate = Rate {
            count: NonZeroU32::MIN,
            period: Duration::from_secs(60),
        };
        Self {
            gate: Limiter::with_quota(rate, Quota::per_minute(NonZeroU32::MIN)),
            max_keys: max_keys.max(1),
        }
    }

    /// True the first time `client` asks within a minute.
    pub fn allows(&self, client: IpAddr) -> bool {
        matches!(self.gate.check(IpKey::from(client)), Decision::Allowed(_))
    }

    pub fn tidy(&self) -> usize {
        self.gate.tidy(self.max_keys)
    }
}

pub struct RateLimits {
    api: Option<Limiter>,
    login: Option<Limiter>,
    register: Option<Limiter>,
    refresh: Option<Limiter>,
    /// One `rate_limited` audit event per client per minute, not per request.
    audit_gate: OncePerMinute,
    max_keys: usize,
    checks: AtomicU64,
}

/// How often (in checks) the tracked-client count is looked at between the
/// periodic tidy-ups.
const TIDY_EVERY: u64 = 4096;

impl RateLimits {
    pub fn new(config: RateLimitConfig) -> Result<Self, RateError> {
        let build = |rate: Rate| Limiter::new(rate).ok_or(RateError::TooFine(rate));
        let optional = |rate: Option<Rate>| rate.map(build).transpose();
        Ok(Self {
            api: optional(config.api)?,
            login: optional(config.login)?,
            register: optional(config.register)?,
            refresh: optional(config.refresh)?,
            audit_gate: OncePerMinute::new(config.max_keys),
            max_keys: config.max_keys.max(1),
            checks: AtomicU64::new(0),
        })
    }

    /// `None` for paths outside `/api/` (health checks are never limited).
    /// The strictest answer wins; a refusal consumes nothing elsewhere.
    pub fn check(&self, path: &str, client: IpAddr) -> Option<Decision> {
        if !path.starts_with("/api/") {
            return None;
        }
        if self.checks.fetch_add(1, Ordering::Relaxed) % TIDY_EVERY == TIDY_EVERY - 1 {
            self.tidy();
        }
        let key = IpKey::from(client);
        let specific = specific(path).and_then(|s| match s {
            Specific::Login => self.login.as_ref(),
            Specific::Register => self.register.as_ref(),
            Specific::Refresh => self.refresh.as_ref(),
        });
        let general = self.api.as_ref().map(|l| l.check(key));
        if let Some(limited @ Decision::Limited { .. }) = general {
            return Some(limited);
        }
        let narrow = specific.map(|l| l.check(key));
        match (general, narrow) {
            (Some(limited @ Decision::Limited { .. }), _)
            | (_, Some(limited @ Decision::Limited { .. })) => Some(limited),
            (Some(Decision::Allowed(g)), Some(Decision::Allowed(n))) => {
                Some(Decision::Allowed(if n.remaining < g.remaining {
                    n
                } else {
                    g
                }))
            }
            (decision, None) | (None, decision) => decision,
        }
    }

    /// True the first time a client is limited within a minute.
    pub fn should_audit(&self, client: IpAddr) -> bool {
        self.audit_gate.allows(client)
    }

    /// Run every minute: drops idle clients and bounds the rest. Returns how
    /// many clients are tracked in all.
    pub fn tidy(&self) -> usize {
        [&self.api, &self.login, &self.register, &self.refresh]
            .into_iter()
            .flatten()
            .map(|l| l.tidy(self.max_keys))
            .sum::<usize>()
            + self.audit_gate.tidy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_budget_and_too_many_keys_start_afresh() {
        let limits = KeyLimits::new(2);
        let one_an_hour = Rate::parse("1/hour").unwrap();
        assert!(matches!(
            limits.check("a", one_an_hour),
            Decision::Allowed(_)
        ));
        assert!(matches!(
            limits.check("a", one_an_hour),
            Decision::Limited { .. }
        ));
        // Another key at the same rate has a budget of its own.
        assert!(matches!(
            limits.check("b", one_an_hour),
            Decision::Allowed(_)
        ));
        // A third tracked key is one too many: the next tidy forgets them all
        // rather than let a spray of keys grow memory.
        assert!(matches!(
            limits.check("c", one_an_hour),
            Decision::Allowed(_)
        ));
        limits.tidy();
        assert!(matches!(
            limits.check("a", one_an_hour),
            Decision::Allowed(_)
        ));
    }

    fn config(api: &str, login: &str) -> RateLimitConfig {
        RateLimitConfig {
            api: Rate::parse_optional(api).unwrap(),
            login: Rate::parse_optional(login).unwrap(),
            register: Rate::parse_optional("3/minute").unwrap(),
            refresh: Rate::parse_optional("10/minute").unwrap(),
            max_keys: 1000,
        }
    }

    #[test]
    fn rates_parse_and_refuse_nonsense() {
        assert_eq!(Rate::parse("60/minute").unwrap().count.get(), 60);
        assert_eq!(
            Rate::parse("2/hour").unwrap().period,
            Duration::from_secs(3600)
        );
        for bad in [
            "",
            "60",
            "0/minute",
            "-1/minute",
            "ten/second",
            "5/day",
            "5/",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_strictest_limit_decides_and_reports_honest_numbers() {
        let limits = RateLimits::new(config("60/minute", "5/minute")).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for expected_remaining in (0..5).rev() {
            match limits.check("/api/v1/auth/login", ip) {
                Some(Decision::Allowed(info)) => {
                    assert_eq!((info.limit, info.remaining), (5, expected_remaining));
                }
                other => panic!("{other:?}"),
            }
        }
        match limits.check("/api/v1/auth/login", ip) {
            Some(Decision::Limited {
                info,
                retry_after_secs,
            }) => {
                assert_eq!(info.remaining, 0);
                assert!((1..=12).contains(&retry_after_secs), "{retry_after_secs}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            limits.check("/api/v1/users/me", ip),
            Some(Decision::Allowed(_))
        ));
        assert_eq!(limits.check("/health", ip), None);
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(matches!(
            limits.check("/api/v1/auth/login", other),
            Some(Decision::Allowed(_))
        ));
    }

    #[test]
    fn a_limit_turned_off_is_not_applied() {
        let limits = RateLimits::new(config("off", "1/minute")).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..100 {
            assert!(matches!(
                limits.check("/api/x", ip),
                None | Some(Decision::Allowed(_))
            ));
        }
        assert!(matches!(
            limits.check("/api/v1/auth/login", ip),
            Some(Decision::Allowed(_))
        ));
        assert!(matches!(
            limits.check("/api/v1/auth/login", ip),
            Some(Decision::Limited { .. })
        ));
    }

    #[test]
    fn an_ipv6_slash_64_shares_one_budget() {
        let limits = RateLimits::new(config("2/minute", "5/minute")).unwrap();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(matches!(
            limits.check("/api/x", a),
            Some(Decision::Allowed(_))
        ));
        assert!(matches!(
            limits.check("/api/x", b),
            Some(Decision::Allowed(_))
        ));
        assert!(matches!(
            limits.check("/api/x", a),
            Some(Decision::Limited { .. })
        ));
    }

    #[test]
    fn a_spray_of_addresses_is_bounded() {
        let mut cfg = config("60/minute", "5/minute");
        cfg.max_keys = 100;
        let limits = RateLimits::new(cfg).unwrap();
        for i in 0..500u32 {
            limits.check("/api/x", IpAddr::from(i.to_be_bytes()));
        }
        let api = limits.api.as_ref().unwrap();
        assert!(api.current().len() <= 500);
        limits.tidy();
        assert!(api.current().len() <= 100, "{}", api.current().len());
    }
}
