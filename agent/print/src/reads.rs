//! A bound on the IPP requests whose attribute sections are being read at once. Each is
//! buffered (up to [`crate::wire::MAX_HEAD`]) before any login can be checked, and HTTP/2 lets
//! one connection carry many requests: unbounded, clients that never log in could make the
//! role hold hundreds of megabytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hostrole_agent_core::net::ClientKey;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Attribute sections read at once, in all (at most 64 × 64 KiB buffered).
pub const AT_ONCE: usize = 64;
/// … and from one address (an IPv6 /64), so that one client cannot take them all.
pub const PER_CLIENT: usize = 8;
/// How long a request waits for a place before it is answered 503.
const WAIT: Duration = Duration::from_secs(10);

/// The places, and how many each address holds.
pub struct Reads {
    places: Arc<Semaphore>,
    held: Mutex<HashMap<ClientKey, usize>>,
}

/// A place to read one attribute section in; given back when dropped.
pub struct Place<'a> {
    reads: &'a Reads,
    client: Option<ClientKey>,
    _permit: OwnedSemaphorePermit,
}

/// Why there is no place.
#[derive(Debug, PartialEq, Eq)]
pub enum Busy {
    /// This address holds [`PER_CLIENT`] places.
    Client,
    /// Every place stayed taken for [`WAIT`].
    All,
}

impl Default for Reads {
    fn default() -> Self {
        Reads {
            places: Arc::new(Semaphore::new(AT_ONCE)),
            held: Mutex::new(HashMap::new()),
        }
    }
}

impl Reads {
    /// A place for `client` (none known: only the overall bound), waiting up to [`WAIT`].
    pub async fn enter(&self, client: Option<ClientKey>) -> Result<Place<'_>, Busy> {
        if let Some(key) = client {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            let n = held.entry(key).or_insert(0);
            if *n >= PER_CLIENT {
                return Err(Busy::Client);
            }
            *n += 1;
        }
        // From here the count is given back by the place's drop, or below.
        let permit = tokio::time::timeout(WAIT, self.places.clone().acquire_owned()).await;
        match permit {
            Ok(Ok(permit)) => Ok(Place {
                reads: self,
                client,
                _permit: permit,
            }),
            _ => {
                self.leave(client);
                Err(Busy::All)
            }
        }
    }

    fn leave(&self, client: Option<ClientKey>) {
        if let Some(key) = client {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = held.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    held.remove(&key);
                }
            }
        }
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.reads.leave(self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn client(last: u8) -> Option<ClientKey> {
        Some(ClientKey::of(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))))
    }

    #[tokio::test]
    async fn one_client_holds_at_most_its_share_and_places_come_back() {
        let reads = Reads::default();
        let mut mine = Vec::new();
        for _ in 0..PER_CLIENT {
            mine.push(reads.enter(client(1)).await.expect("a place"));
        }
        assert_eq!(reads.enter(client(1)).await.err(), Some(Busy::Client));
        // Another client still gets one.
        let other = reads.enter(client(2)).await.expect("another's place");
        mine.pop();
        let again = reads.enter(client(1)).await.expect("given back");
        drop((mine, other, again));
        assert!(reads.held.lock().expect("lock").is_empty());
        assert_eq!(reads.places.available_permits(), AT_ONCE);
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_place_stays_taken_a_request_waits_then_is_turned_away() {
        let reads = Reads::default();
        let mut all = Vec::new();
        for i in 0..AT_ONCE {
            let last = u8::try_from(i / PER_CLIENT).expect("small");
            all.push(reads.enter(client(last)).await.expect("a place"));
        }
        assert_eq!(reads.enter(client(200)).await.err(), Some(Busy::All));
        assert!(
            !reads
                .held
                .lock()
                .expect("lock")
                .contains_key(&ClientKey::of(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 200)))),
            "the refused request holds nothing"
        );
        drop(all);
        assert!(reads.enter(client(200)).await.is_ok());
    }
}
