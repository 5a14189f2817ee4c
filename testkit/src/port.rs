//! Ports for servers a test starts.

use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out: well above the well-known and registered ports our reference
/// servers take by default.
const LOW: u16 = 12_000;
/// The fewest ports a window must have to be used.
const MIN_SPAN: u16 = 2_000;

/// A free TCP port on loopback for a server the test starts (bound, then released for it to take).
///
/// - **Out of the ephemeral range.** Ports come from outside the kernel's ephemeral range
///   (`ip_local_port_range`): below it when it starts high enough, otherwise above it. No
///   client connection (of this test or of anything else on the machine) can then take the port
///   between the check and the server's bind, or while a server restarts on the same port.
/// - **Reserved across processes.** A port handed out is locked (`flock` on a file per port in
///   the temp directory) for as long as this process lives, so no other test process hands out
///   the same port, even after this process's server has let it go. The lock goes with the
///   process.
/// - Each process starts at an offset from its pid and walks forward, so concurrent test
///   binaries rarely even try the same ports.
pub fn free_port() -> u16 {
    let window = window(ephemeral_range());
    let span = u32::from(window.end - window.start);
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    let candidates = (0..span).map(|_| {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let offset = u16::try_from((start + n) % span).expect("the offset is below the span");
        window.start + offset
    });
    first_free(candidates).expect("no free loopback port outside the ephemeral range")
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

/// The kernel's ephemeral range (Linux's default when it cannot be read).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut parts = s.split_whitespace().map(str::parse::<u16>);
            Some((parts.next()?.ok()?, parts.next()?.ok()?))
        })
        .unwrap_or((32_768, 60_999))
}

/// Where ports are handed out, given the ephemeral range `(low, high)`: below it when that
/// leaves room, else above it, else (a range that covers nearly every port) the default window
/// below Linux's default range.
fn window((low, high): (u16, u16)) -> Range<u16> {
    if low >= LOW + MIN_SPAN {
        LOW..low
    } else if high <= u16::MAX - MIN_SPAN {
        high + 1..u16::MAX
    } else {
        LOW..32_768
    }
}

/// The first candidate that no test process has reserved and that binds on loopback now; it
/// stays reserved for this process's life.
fn first_free(candidates: impl Iterator<Item = u16>) -> Option<u16> {
    static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());
    let dir = reservations();
    std::fs::create_dir_all(&dir).expect("the port reservation directory can be made");
    for port in candidates {
        let path = dir.join(format!("{port}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        if file.try_lock().is_err() {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            HELD.lock().unwrap_or_else(|p| p.into_inner()).push(file);
            return Some(port);
        }
    }
    None
}

/// The directory of the per-port lock files, shared by every test process of this user.
fn reservations() -> PathBuf {
    std::env::temp_dir().join("hostrole-test-ports")
}

#[cfg(test)]
mod tests {
    use super::{first_free, free_consecutive_ports, free_port, window};

    #[test]
    fn consecutive_ports_are_in_a_row_and_distinct_from_others() {
        let first = free_consecutive_ports(3);
        let other = free_port();
        assert!(
            !(first..first + 3).contains(&other),
            "{other} in {first}..+3"
        );
    }

    #[test]
    fn ports_are_distinct_and_outside_the_ephemeral_range() {
        let (low, high) = super::ephemeral_range();
        let ports: Vec<u16> = (0..20).map(|_| free_port()).collect();
        for (i, port) in ports.iter().enumerate() {
            assert!(*port >= 12_000, "{port}");
            assert!(!(low..=high).contains(port), "{port} in {low}..={high}");
            assert!(!ports[..i].contains(port), "{port} twice in {ports:?}");
        }
    }

    #[test]
    fn a_port_in_use_is_skipped() {
        let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let port = taken.local_addr().expect("addr").port();
        assert_eq!(first_free([port].into_iter()), None);
        drop(taken);
        assert_eq!(first_free([port].into_iter()), Some(port));
    }

    #[test]
    fn a_port_handed_out_is_never_handed_out_again_though_nothing_listens_on_it() {
        let port = free_port();
        // Nothing listens on it: only the reservation keeps it, as it keeps it from another
        // process (flock locks belong to each open file, not to the process).
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
        assert_eq!(first_free([port].into_iter()), None);
    }

    #[test]
    fn the_window_stays_out_of_the_ephemeral_range() {
        assert_eq!(window((32_768, 60_999)), 12_000..32_768);
        assert_eq!(window((1_024, 60_999)), 61_000..65_535);
        assert_eq!(window((13_000, 65_535)), 12_000..32_768);
        assert_eq!(window((1_024, 65_535)), 12_000..32_768);
    }
}
