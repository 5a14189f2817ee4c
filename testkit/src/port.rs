//! Ports for servers a test starts.

use std::sync::atomic::{AtomicU32, Ordering};

/// A free TCP port on loopback for a server the test starts (bound, then released for it to take).
///
/// Ports come from below the kernel's ephemeral range (`ip_local_port_range`), so no
/// client connection made by a concurrent test can take the port between the check and
/// the server's bind, or while a server restarts on the same port. Each process starts
/// at an offset from its pid and walks forward, so concurrent test binaries rarely meet.
pub fn free_port() -> u16 {
    const LOW: u32 = 12_000;
    let high: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
        .max(LOW + 2_000);
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = high - LOW;
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (start + n) % span;
        let port = u16::try_from(port).expect("ports are below 65536");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below the ephemeral range")
}

/// `n` free loopback ports in a row (for a process that takes the ports after the one it is
/// given: `hostrole-agent up` with several hosts); the first is returned.
pub fn free_consecutive_ports(n: u16) -> u16 {
    'search: for _ in 0..1_000 {
        let first = free_port();
        for i in 1..n {
            if free_port() != first + i {
                continue 'search;
            }
        }
        return first;
    }
    panic!("no {n} free loopback ports in a row")
}

#[cfg(test)]
mod tests {
    use super::{free_consecutive_ports, free_port};

    #[test]
    fn consecutive_ports_are_free() {
        let first = free_consecutive_ports(3);
        for port in first..first + 3 {
            assert!(
                std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "{port}"
            );
        }
    }

    #[test]
    fn ports_are_free_distinct_and_below_the_ephemeral_range() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
        for port in [a, b] {
            assert!(port >= 12_000);
            std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        }
    }
}
