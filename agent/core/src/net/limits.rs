//! The limits every HTTP listener of the agent applies, their defaults, and the agent-wide
//! setting (`http:` in the agent configuration).

use std::sync::OnceLock;
use std::time::Duration;

use hostrole_config::HttpLimitsConfig;

/// Default time to send a complete request head (and the first byte of a new connection).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// Default time a connection may stay open with no request in flight.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default age after which a connection takes no new request (the one in flight finishes):
/// a client that keeps one connection busy forever still reconnects, so a NetworkPolicy or
/// certificate changed since is applied to it (nginx's `keepalive_time`, 1 h there).
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(600);
/// Request line and header fields together, HTTP/1 (hyper's read buffer, so also the most read
/// at once); HTTP/2's SETTINGS_MAX_HEADER_LIST_SIZE is the same. nginx's defaults allow 1 KiB +
/// 4 × 8 KiB.
pub const MAX_HEADER_BYTES: usize = 32 << 10;
/// The per-address cap when not configured: this fraction of the listener's limit…
const PER_IP_DIVISOR: usize = 4;
/// …but at least this many (a browser opens six connections per host).
const PER_IP_MIN: usize = 8;

/// The limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// From accept to the first complete request head (covers HTTP version detection), and for
    /// each later request head once the previous response is sent.
    pub header_timeout: Duration,
    /// With no request in flight for this long, the connection is closed.
    pub idle_timeout: Duration,
    /// Connections one address may hold; `None`: derived from the listener's limit.
    pub max_connections_per_ip: Option<usize>,
    /// After this long a connection is closed gracefully: no new request, the ones in flight
    /// finish.
    pub max_connection_age: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections_per_ip: None,
            max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
        }
    }
}

impl HttpLimits {
    /// HTTP/2: a PING every half idle timeout (30 s by default)…
    pub fn h2_ping_interval(&self) -> Duration {
        self.idle_timeout / 2
    }

    /// …which the client must answer within the header timeout (20 s), else it is dropped.
    pub fn h2_ping_timeout(&self) -> Duration {
        self.header_timeout
    }

    /// The defaults with the configured overrides (a zero duration counts as one second).
    pub fn from_config(config: Option<&HttpLimitsConfig>) -> Self {
        let mut limits = Self::default();
        let Some(c) = config else { return limits };
        if let Some(s) = c.header_timeout_seconds {
            limits.header_timeout = Duration::from_secs(s.max(1));
        }
        if let Some(s) = c.idle_timeout_seconds {
            limits.idle_timeout = Duration::from_secs(s.max(1));
        }
        limits.max_connections_per_ip = c.max_connections_per_ip.map(|n| n.max(1));
        if let Some(s) = c.max_connection_age_seconds {
            limits.max_connection_age = Duration::from_secs(s.max(1));
        }
        limits
    }

    /// The stricter of two sets of limits, field by field: what one process serving several
    /// hosts (`hostrole-agent up` with several HostRoles) applies to all of them.
    pub fn strictest(self, other: Self) -> Self {
        Self {
            header_timeout: self.header_timeout.min(other.header_timeout),
            idle_timeout: self.idle_timeout.min(other.idle_timeout),
            max_connections_per_ip: match (
                self.max_connections_per_ip,
                other.max_connections_per_ip,
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            max_connection_age: self.max_connection_age.min(other.max_connection_age),
        }
    }

    /// The per-address cap of a listener that serves `max_connections` at once.
    pub fn per_ip(&self, max_connections: usize) -> usize {
        let max_connections = max_connections.max(1);
        self.max_connections_per_ip
            .unwrap_or_else(|| (max_connections / PER_IP_DIVISOR).max(PER_IP_MIN))
            .min(max_connections)
    }
}

static AGENT_LIMITS: OnceLock<HttpLimits> = OnceLock::new();

/// Sets the limits of every listener started from now on (the supervisor, once, from the agent
/// configuration). Later calls are ignored.
pub fn configure(limits: HttpLimits) {
    let _ = AGENT_LIMITS.set(limits);
}

/// The agent's limits: configured, else the defaults.
pub fn current() -> HttpLimits {
    AGENT_LIMITS.get().copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strictest_of_two_limits_takes_each_field_from_the_stricter() {
        let a = HttpLimits {
            header_timeout: Duration::from_secs(5),
            max_connections_per_ip: None,
            ..HttpLimits::default()
        };
        let b = HttpLimits {
            idle_timeout: Duration::from_secs(7),
            max_connections_per_ip: Some(3),
            ..HttpLimits::default()
        };
        let s = a.strictest(b);
        assert_eq!(s.header_timeout, Duration::from_secs(5));
        assert_eq!(s.idle_timeout, Duration::from_secs(7));
        assert_eq!(s.max_connections_per_ip, Some(3));
        assert_eq!(s.max_connection_age, DEFAULT_MAX_CONNECTION_AGE);
        assert_eq!(b.strictest(a), s);
    }

    #[test]
    fn the_per_address_cap_is_a_quarter_of_the_listener_at_least_eight_at_most_all() {
        let d = HttpLimits::default();
        assert_eq!(d.per_ip(1024), 256);
        assert_eq!(d.per_ip(64), 16);
        assert_eq!(d.per_ip(20), 8);
        assert_eq!(d.per_ip(2), 2);
        let c = HttpLimits::from_config(Some(&HttpLimitsConfig {
            max_connections_per_ip: Some(3),
            header_timeout_seconds: Some(0),
            idle_timeout_seconds: Some(5),
            max_connection_age_seconds: Some(30),
        }));
        assert_eq!(c.max_connection_age, Duration::from_secs(30));
        assert_eq!(d.max_connection_age, DEFAULT_MAX_CONNECTION_AGE);
        assert_eq!(c.per_ip(1024), 3);
        assert_eq!(c.header_timeout, Duration::from_secs(1));
        assert_eq!(c.idle_timeout, Duration::from_secs(5));
    }
}
