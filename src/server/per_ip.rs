//! The per-client connection cap. One client must not take every slot of
//! the global cap (`--max-connections`), so each client IP may hold at most
//! `--max-connections-per-ip` connections at once; trusted proxies, which
//! carry many clients over their own connections, are exempt.
//!
//! Memory stays bounded: a client has an entry only while it holds a
//! connection, so there are never more entries than open connections, and
//! every way a connection ends (closed, failed, timed out, task dropped) gives
//! its slot back through `IpSlot`'s `Drop`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;

use crate::http::client_ip::canonical;
use crate::http::ratelimit::{IpKey, OncePerMinute};

/// Clients tracked by the refusal log gate before it starts afresh.
const LOGGED_CLIENTS: usize = 100_000;

pub struct PerIpConnections {
    max: u32,
    exempt: Vec<IpNet>,
    /// Open connections per client; an entry is removed when its count drops
    /// to zero.
    open: Mutex<HashMap<IpKey, u32>>,
    /// One log line per refused client per minute: a client hammering the
    /// cap must not turn into a flood of log lines.
    logged: OncePerMinute,
    refused: AtomicU64,
}

/// A connection's place in its client's count, given back on drop.
#[must_use = "the slot is given back as soon as it is dropped"]
pub struct IpSlot {
    /// `None` for an exempt peer, which is not counted.
    held: Option<(Arc<PerIpConnections>, IpKey)>,
}

impl PerIpConnections {
    pub fn new(max: u32, exempt: Vec<IpNet>) -> Self {
        Self {
            max: max.max(1),
            exempt,
            open: Mutex::new(HashMap::new()),
            logged: OncePerMinute::new(LOGGED_CLIENTS),
            refused: AtomicU64::new(0),
        }
    }

    /// A slot for a new connection from `peer` (the TCP peer, never a
    /// forwarded address), or `None` when that client is at its cap. IPv6
    /// clients are counted by their /64, as in the rate limits: one host
    /// usually holds a whole /64.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<IpSlot> {
        let peer = canonical(peer);
        if self.exempt.iter().any(|net| net.contains(&peer)) {
            return Some(IpSlot { held: None });
        }
        let key = IpKey::from(peer);
        let admitted = match self.lock().entry(key) {
            Entry::Occupied(mut open) if *open.get() < self.max => {
                *open.get_mut() += 1;
                true
            }
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                slot.insert(1);
                true
            }
        };
        if admitted {
            return Some(IpSlot {
                held: Some((Arc::clone(self), key)),
            });
        }
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if self.logged.allows(peer) {
            tracing::warn!(
                client_ip = %peer,
                max_connections_per_ip = self.max,
                refused_total = refused,
                "per-client connection limit reached; closing its new connections"
            );
        }
        None
    }

    /// Clients that hold at least one connection.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    /// Forgets clients of the refusal log gate that were quiet for a minute;
    /// called every minute.
    pub fn tidy(&self) -> usize {
        self.logged.tidy()
    }

    fn release(&self, key: IpKey) {
        if let Entry::Occupied(mut open) = self.lock().entry(key) {
            if *open.get() <= 1 {
                open.remove();
            } else {
                *open.get_mut() -= 1;
            }
        }
    }

    /// The map is consistent after any panic (each change is one statement),
    /// so a poisoned lock is taken over rather than passed on.
    fn lock(&self) -> MutexGuard<'_, HashMap<IpKey, u32>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some((owner, key)) = self.held.take() {
            owner.release(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_gets_max_slots_and_its_entry_goes_with_the_last_one() {
        let limits = Arc::new(PerIpConnections::new(2, vec![]));
        let first = limits.admit(ip("192.0.2.1")).unwrap();
        let second = limits.admit(ip("192.0.2.1")).unwrap();
        assert!(limits.admit(ip("192.0.2.1")).is_none());
        // Another client has its own count.
        let other = limits.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(limits.tracked(), 2);

        drop(first);
        let again = limits.admit(ip("192.0.2.1")).unwrap();
        drop((second, again, other));
        assert_eq!(limits.tracked(), 0, "no entry outlives its connections");
    }

    #[test]
    fn mapped_ipv4_and_one_ipv6_64_count_as_one_client() {
        let limits = Arc::new(PerIpConnections::new(1, vec![]));
        let _v4 = limits.admit(ip("192.0.2.1")).unwrap();
        assert!(limits.admit(ip("::ffff:192.0.2.1")).is_none());
        let _v6 = limits.admit(ip("2001:db8::1")).unwrap();
        assert!(limits.admit(ip("2001:db8::2")).is_none());
        assert!(limits.admit(ip("2001:db8:0:1::1")).is_some());
    }

    #[test]
    fn trusted_proxies_are_not_counted() {
        let limits = Arc::new(PerIpConnections::new(
            1,
            vec!["10.0.0.0/8".parse().unwrap()],
        ));
        let held: Vec<IpSlot> = (0..5)
            .map(|_| limits.admit(ip("10.1.2.3")).unwrap())
            .collect();
        assert_eq!(limits.tracked(), 0);
        drop(held);
        assert!(limits.admit(ip("192.0.2.1")).is_some());
    }
}
