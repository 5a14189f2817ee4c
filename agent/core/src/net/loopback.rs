//! Whether a request names this machine's loopback: what a UI without a login (the peer's, the
//! operator's view) checks against DNS rebinding, where a page of another site whose name is
//! rebound to 127.0.0.1 sends its own name as `Host`.

/// Whether a `Host` value (or an `Origin`'s host) names this machine's loopback: `localhost`,
/// `127.x.y.z` or `[::1]`, with any port. A DNS-rebinding page's requests carry its own name.
pub fn loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inner, port)) if port.is_empty() || port_ok(port) => {
                return inner
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok_and(|ip| ip.is_loopback());
            }
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port_ok(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn port_ok(colon_port: &str) -> bool {
    colon_port
        .strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether an `Origin` is a page served from loopback (`http://127.0.0.1:8090`).
pub fn loopback_origin(origin: &str) -> bool {
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| !rest.contains('/') && loopback_host(rest))
}
