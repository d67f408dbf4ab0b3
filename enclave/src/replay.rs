//! Replay protection and session reuse (DESIGN.md "Sealed requests").
//!
//! [`ReplayGuard`] refuses a request whose client timestamp is outside the window around the
//! enclave's clock, or whose request id was already seen inside the window — so a sealed body
//! captured by the host cannot be played again, and no (key, nonce) pair of a response ever repeats.
//! [`SessionCache`] holds content keys for session reuse: bounded in size, each entry expiring, the
//! soonest-expiring evicted first when full.

use secllama_protocol::RequestId;
use secllama_protocol::seal::ContentKey;
use std::collections::HashMap;

/// Why a request was refused as a replay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The client's timestamp is outside the window.
    #[error(
        "replay window: expected a client timestamp within {window_ms} ms of {now_ms}, found {found_ms}"
    )]
    Stale {
        /// The window.
        window_ms: u64,
        /// The enclave's time.
        now_ms: u64,
        /// The client's time.
        found_ms: u64,
    },
    /// The request id was already used.
    #[error("replay window: expected a fresh request id, found one already used inside the window")]
    Repeated,
    /// Too many requests inside one window to remember them all.
    #[error(
        "replay window: expected at most {max} requests per window, found more (refusing rather than forgetting)"
    )]
    Full {
        /// The capacity.
        max: usize,
    },
}

/// Remembers request ids seen inside the window.
#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    max: usize,
    seen: HashMap<[u8; 16], u64>,
}

impl ReplayGuard {
    /// A guard with a window of `window_ms` on either side of now, remembering at most `max` ids.
    pub fn new(window_ms: u64, max: usize) -> Self {
        Self {
            window_ms,
            max,
            seen: HashMap::new(),
        }
    }

    /// Accepts `id` sent at `client_ms` if it is fresh; records it.
    pub fn check(
        &mut self,
        id: &RequestId,
        client_ms: u64,
        now_ms: u64,
    ) -> Result<(), ReplayError> {
        if client_ms.abs_diff(now_ms) > self.window_ms {
            return Err(ReplayError::Stale {
                window_ms: self.window_ms,
                now_ms,
                found_ms: client_ms,
            });
        }
        // An id whose timestamp has left the window could not be accepted again anyway (its
        // timestamp is stale), so forgetting it is safe.
        let horizon = now_ms.saturating_sub(2 * self.window_ms);
        self.seen.retain(|_, t| *t >= horizon);
        if self.seen.contains_key(&id.0) {
            return Err(ReplayError::Repeated);
        }
        if self.seen.len() >= self.max {
            return Err(ReplayError::Full { max: self.max });
        }
        self.seen.insert(id.0, client_ms);
        Ok(())
    }
}

/// Content keys of live sessions, by session id.
#[derive(Debug)]
pub struct SessionCache {
    ttl_ms: u64,
    max: usize,
    entries: HashMap<[u8; 16], (ContentKey, u64)>,
}

impl SessionCache {
    /// A cache of at most `max` sessions, each living `ttl_ms` after its last insert.
    pub fn new(ttl_ms: u64, max: usize) -> Self {
        Self {
            ttl_ms,
            max,
            entries: HashMap::new(),
        }
    }

    /// Stores `key` (after the first, RSA-wrapped request of a session).
    pub fn insert(
        &mut self,
        key: ContentKey,
        now_ms: u64,
    ) -> Result<(), secllama_protocol::ProtocolError> {
        let id = key.session_id()?;
        self.entries.retain(|_, (_, exp)| *exp > now_ms);
        if self.entries.len() >= self.max && !self.entries.contains_key(&id) {
            let soonest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, exp))| *exp)
                .map(|(k, _)| *k);
            if let Some(k) = soonest {
                self.entries.remove(&k);
            }
        }
        if self.max > 0 {
            self.entries
                .insert(id, (key, now_ms.saturating_add(self.ttl_ms)));
        }
        Ok(())
    }

    /// The key of session `id`, if it is known and not expired.
    pub fn get(&mut self, id: &[u8; 16], now_ms: u64) -> Option<ContentKey> {
        match self.entries.get(id) {
            Some((key, exp)) if *exp > now_ms => Some(key.clone()),
            Some(_) => {
                self.entries.remove(id);
                None
            }
            None => None,
        }
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no session is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ContentKey {
        ContentKey::from_slice(&[b; 32]).unwrap()
    }

    #[test]
    fn replays_and_stale_timestamps_are_refused() {
        let mut g = ReplayGuard::new(1000, 3);
        let id = RequestId([1; 16]);
        g.check(&id, 10_000, 10_500).unwrap();
        assert_eq!(g.check(&id, 10_000, 10_600), Err(ReplayError::Repeated));
        assert!(matches!(
            g.check(&RequestId([2; 16]), 8_000, 10_600),
            Err(ReplayError::Stale { .. })
        ));
        assert!(
            matches!(
                g.check(&RequestId([2; 16]), 12_000, 10_600),
                Err(ReplayError::Stale { .. })
            ),
            "future too"
        );
        g.check(&RequestId([2; 16]), 10_600, 10_600).unwrap();
        g.check(&RequestId([3; 16]), 10_600, 10_600).unwrap();
        assert_eq!(
            g.check(&RequestId([4; 16]), 10_600, 10_600),
            Err(ReplayError::Full { max: 3 })
        );
        // Much later, old ids are forgotten and room is free again; the old id is stale anyway.
        g.check(&RequestId([4; 16]), 20_000, 20_000).unwrap();
        assert!(matches!(
            g.check(&id, 10_000, 20_000),
            Err(ReplayError::Stale { .. })
        ));
    }

    #[test]
    fn sessions_expire_and_the_cache_is_bounded() {
        let mut c = SessionCache::new(1000, 2);
        let (a, b, d) = (key(1), key(2), key(3));
        c.insert(a.clone(), 0).unwrap();
        c.insert(b.clone(), 100).unwrap();
        assert_eq!(c.get(&a.session_id().unwrap(), 500), Some(a.clone()));
        c.insert(d.clone(), 200).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.get(&a.session_id().unwrap(), 300),
            None,
            "the soonest-expiring entry was evicted"
        );
        assert_eq!(c.get(&b.session_id().unwrap(), 1100), None, "expired");
        assert_eq!(c.get(&d.session_id().unwrap(), 1100), Some(d));
        assert_eq!(c.get(&[9; 16], 0), None);
    }
}
