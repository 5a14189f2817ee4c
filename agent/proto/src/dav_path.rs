//! The request paths of the web and file roles and the WebDAV `Destination` header, parsed
//! without touching the filesystem: dot segments, backslashes, NUL bytes, names a role reserves
//! and (where the role hides them) hidden files are refused; a Destination must name this server
//! (scheme `http`/`https`, the request's own host and port) and a path the request path itself
//! could name.
//!
//! The path guard in `hostrole-agent-core` and the file role's checks call these and add what
//! needs the filesystem (symlinks that leave the root) or HTTP (the answers); `fuzz/` fuzzes them.

use std::fmt;
use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// What a role refuses besides `.`/`..` segments, backslashes and NUL bytes.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Refuse every segment that starts with '.' (a public web site); a file share keeps them
    /// (clients store `.DS_Store`, `._x` and dotfiles there).
    pub hide_dotfiles: bool,
    /// A top-level name the role keeps for itself (e.g. the file role's upload staging area).
    pub reserved: Option<&'static str>,
    /// Who refuses symlinks that leave the root.
    pub symlinks: Symlinks,
}

/// Where the symlink check happens (it needs the filesystem, so not here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symlinks {
    /// In the path guard, before the handler (one `canonicalize` per request).
    Guard,
    /// In the handler, which resolves every path it opens anyway (the web role's file cache).
    Handler,
}

/// Why a request path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a path a client may ask for (answered 400).
    Malformed,
    /// A path that exists only outside the public site (answered 404, revealing nothing).
    Hidden,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Malformed => "a malformed path",
            Refusal::Hidden => "a path the role refuses",
        })
    }
}

impl std::error::Error for Refusal {}

/// Decodes a request path and checks each segment. Returns the path relative to the root: only
/// normal components, none of them refused by `policy`.
pub fn relative_path(raw: &str, policy: Policy) -> Result<PathBuf, Refusal> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Refusal::Malformed)?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return Err(Refusal::Malformed);
    }
    let mut relative = PathBuf::new();
    for (i, segment) in decoded.split('/').filter(|s| !s.is_empty()).enumerate() {
        let dots = segment == "." || segment == "..";
        // With hide_dotfiles: hidden files such as .git, or a ConfigMap volume's ..data.
        let hidden = policy.hide_dotfiles && segment.starts_with('.');
        let reserved = i == 0 && policy.reserved == Some(segment);
        if dots || hidden || reserved {
            return Err(Refusal::Hidden);
        }
        relative.push(segment);
    }
    Ok(relative)
}

/// Why a Destination is refused; each holds the reason given to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationRefusal {
    /// Not something a client may send (400).
    BadRequest(&'static str),
    /// A path on this server that the share refuses (403).
    Forbidden(&'static str),
    /// A Destination on another server (502, RFC 4918 sections 9.8.5 and 9.9.4).
    BadGateway(&'static str),
}

impl fmt::Display for DestinationRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestinationRefusal::BadRequest(why)
            | DestinationRefusal::Forbidden(why)
            | DestinationRefusal::BadGateway(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for DestinationRefusal {}

/// A checked Destination: the path relative to the share root, and whether it ended in `/`.
#[derive(Debug, PartialEq, Eq)]
pub struct Destination {
    pub relative: PathBuf,
    pub collection: bool,
}

impl Destination {
    /// The Destination as it is handed on: the absolute path, each segment percent-encoded.
    /// Printable ASCII only; [`relative_path`] reads it back as `relative`.
    pub fn header_value(&self) -> String {
        let mut out = String::new();
        for segment in self.relative.iter() {
            out.push('/');
            out.extend(utf8_percent_encode(&segment.to_string_lossy(), SEGMENT));
        }
        if out.is_empty() || self.collection {
            out.push('/');
        }
        out
    }
}

/// What a path segment must not hold raw in a Destination handed on (dav-server accepts only
/// printable ASCII; `%`, `?`, `#` and `/` would change the meaning).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\');

/// True when a path relative to the root holds, at any depth, one of the names in `reserved`.
pub fn reserved_anywhere(relative: &Path, reserved: &[&str]) -> bool {
    relative.iter().any(|s| reserved.iter().any(|r| s == *r))
}

const NOT_ABSOLUTE: &str = "the Destination must be an absolute URI or an absolute path";
const ANOTHER_SCHEME: &str = "the Destination is not on this share (another scheme)";
const REFUSED_PATH: &str = "the Destination names a path the share refuses";

/// Parses and checks a Destination header (RFC 4918 section 10.3: an absolute URI or an absolute
/// path). `authority` is the request's own (`Host`, or the HTTP/2 `:authority`); `reserved`
/// the names refused at any depth.
pub fn destination(
    raw: &str,
    authority: Option<&str>,
    policy: Policy,
    reserved: &[&str],
) -> Result<Destination, DestinationRefusal> {
    use DestinationRefusal::{BadGateway, BadRequest, Forbidden};
    if raw.contains('#') {
        return Err(BadRequest("the Destination must not hold a fragment"));
    }
    if raw.contains('?') {
        return Err(BadRequest("the Destination must not hold a query"));
    }
    let path = if raw.starts_with("//") {
        // A network-path reference names a host without a scheme.
        return Err(BadRequest(NOT_ABSOLUTE));
    } else if raw.starts_with('/') {
        raw.to_string()
    } else {
        // RFC 3986: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
        let scheme = raw.split_once(':').map(|(s, _)| s).filter(|s| {
            s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        let Some(scheme) = scheme.map(str::to_ascii_lowercase) else {
            return Err(BadRequest(NOT_ABSOLUTE));
        };
        if !matches!(scheme.as_str(), "http" | "https") {
            return Err(BadGateway(ANOTHER_SCHEME));
        }
        let uri: http::Uri = raw.parse().map_err(|_| BadRequest(NOT_ABSOLUTE))?;
        let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
        let Some(scheme @ ("http" | "https")) = scheme.as_deref() else {
            return Err(BadGateway(ANOTHER_SCHEME));
        };
        let Some(theirs) = uri.authority() else {
            return Err(BadRequest("the Destination has no host"));
        };
        let Some(ours) = authority else {
            return Err(BadRequest(
                "a Destination with a host needs a Host header to compare it with",
            ));
        };
        if !same_authority(scheme, theirs.as_str(), ours) {
            return Err(BadGateway(
                "the Destination is not on this share (another host or port)",
            ));
        }
        uri.path().to_string()
    };
    let collection = path.ends_with('/');
    let relative = relative_path(&path, policy).map_err(|r| match r {
        Refusal::Malformed => BadRequest("the Destination path is malformed"),
        Refusal::Hidden => Forbidden(REFUSED_PATH),
    })?;
    if reserved_anywhere(&relative, reserved) {
        return Err(Forbidden(REFUSED_PATH));
    }
    Ok(Destination {
        relative,
        collection,
    })
}

/// Whether two authorities (`[userinfo@]host[:port]`) name the same server: host and port
/// compared without case, userinfo ignored; a missing or empty port is `scheme`'s default. A port
/// that is not one (not only digits, or above 65535) names no server, so never this one.
pub fn same_authority(scheme: &str, theirs: &str, ours: &str) -> bool {
    let default = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    let split = |a: &str| -> Option<(String, u16)> {
        let a = a
            .rsplit_once('@')
            .map_or(a, |(_, h)| h)
            .to_ascii_lowercase();
        // "[::1]:80", "host:80", "host", "[::1]", "host:"
        match a.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                let port = if port.is_empty() {
                    default
                } else if port.bytes().all(|b| b.is_ascii_digit()) {
                    port.parse().ok()?
                } else {
                    return None;
                };
                Some((host.to_string(), port))
            }
            _ => Some((a, default)),
        }
    };
    match (split(theirs), split(ours)) {
        (Some(t), Some(o)) => t == o,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: Policy = Policy {
        hide_dotfiles: true,
        reserved: None,
        symlinks: Symlinks::Handler,
    };
    const SHARE: Policy = Policy {
        hide_dotfiles: false,
        reserved: Some(".uploads"),
        symlinks: Symlinks::Guard,
    };
    /// The file role's reserved names, as it passes them.
    const RESERVED: &[&str] = &[".hostrole-props"];
    const HOST: Option<&str> = Some("127.0.0.1:8080");

    fn web(raw: &str) -> Result<PathBuf, Refusal> {
        relative_path(raw, WEB)
    }

    fn dest(raw: &str) -> Result<Destination, DestinationRefusal> {
        destination(raw, HOST, SHARE, RESERVED)
    }

    fn rel(raw: &str) -> PathBuf {
        dest(raw).expect("accepted").relative
    }

    #[test]
    fn a_share_keeps_dotfiles_but_not_dot_segments_or_its_reserved_name() {
        assert_eq!(
            relative_path("/.DS_Store", SHARE),
            Ok(PathBuf::from(".DS_Store"))
        );
        assert_eq!(relative_path("/a/._x", SHARE), Ok(PathBuf::from("a/._x")));
        assert_eq!(relative_path("/../x", SHARE), Err(Refusal::Hidden));
        assert_eq!(relative_path("/%2e%2e/x", SHARE), Err(Refusal::Hidden));
        assert_eq!(relative_path("/.uploads/tmp", SHARE), Err(Refusal::Hidden));
        assert_eq!(
            relative_path("/a/.uploads", SHARE),
            Ok(PathBuf::from("a/.uploads"))
        );
    }

    #[test]
    fn plain_paths_pass() {
        assert_eq!(web("/"), Ok(PathBuf::new()));
        assert_eq!(web("/css/site.css"), Ok(PathBuf::from("css/site.css")));
        assert_eq!(web("/a%20b.html"), Ok(PathBuf::from("a b.html")));
        assert_eq!(web("//double//slash"), Ok(PathBuf::from("double/slash")));
    }

    #[test]
    fn traversal_and_hidden_paths_are_refused() {
        for raw in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/..%2f..%2fetc/passwd",
            "/.git/config",
            "/..data/index.html",
            "/./index.html",
        ] {
            assert_eq!(web(raw), Err(Refusal::Hidden), "{raw}");
        }
    }

    #[test]
    fn malformed_paths_are_refused() {
        for raw in ["/a%00b", "/..\\..\\windows", "/%5c..%5cwin", "/%ff%fe"] {
            assert_eq!(web(raw), Err(Refusal::Malformed), "{raw}");
        }
    }

    #[test]
    fn destinations_on_this_share_are_accepted() {
        assert_eq!(rel("/a/b.txt"), PathBuf::from("a/b.txt"));
        assert_eq!(
            rel("http://127.0.0.1:8080/a/b.txt"),
            PathBuf::from("a/b.txt")
        );
        assert_eq!(rel("HTTP://127.0.0.1:8080/a%20b"), PathBuf::from("a b"));
        assert_eq!(rel("https://127.0.0.1:8080/x"), PathBuf::from("x"));
        assert_eq!(rel("http://127.0.0.1:8080"), PathBuf::new());
        assert_eq!(
            destination(
                "http://Example.COM/x",
                Some("example.com:80"),
                SHARE,
                RESERVED
            )
            .expect("default port")
            .relative,
            PathBuf::from("x")
        );
        assert_eq!(
            destination("http://[::1]:9/x", Some("[::1]:9"), SHARE, RESERVED)
                .expect("ipv6")
                .relative,
            PathBuf::from("x")
        );
    }

    #[test]
    fn destinations_elsewhere_are_bad_gateway() {
        for raw in [
            "http://evil.example.com/x",
            "http://127.0.0.1:8081/x",
            "ftp://127.0.0.1:8080/x",
            "file:///etc/passwd",
            "http://127.0.0.1/x",
        ] {
            assert!(
                matches!(dest(raw), Err(DestinationRefusal::BadGateway(_))),
                "{raw}"
            );
        }
    }

    /// Found by the dav_path fuzz target: a port that does not parse counted as the default.
    #[test]
    fn a_port_that_is_not_one_is_never_this_server() {
        for (raw, ours) in [
            ("http://127.0.0.1:65616/x", "127.0.0.1"),
            ("https://user:pw@EXAMPLE.com:443c/", "example.com"),
            ("http://127.0.0.1:abc/x", "127.0.0.1:80"),
            ("http://127.0.0.1:+80/x", "127.0.0.1:80"),
            ("http://127.0.0.1:8080/x", "127.0.0.1:8080x"),
            ("http://127.0.0.1/x", "127.0.0.1:99999"),
        ] {
            assert!(
                matches!(
                    destination(raw, Some(ours), SHARE, RESERVED),
                    Err(DestinationRefusal::BadGateway(_))
                ),
                "{raw} against {ours}"
            );
        }
        // An empty port is the default (RFC 3986 section 6.2.3), and so are leading zeros' value.
        for (raw, ours) in [
            ("http://example.com:/x", "example.com:80"),
            ("http://example.com/x", "example.com:"),
            ("https://example.com:0443/x", "example.com"),
        ] {
            assert_eq!(
                destination(raw, Some(ours), SHARE, RESERVED).map(|d| d.relative),
                Ok(PathBuf::from("x")),
                "{raw} against {ours}"
            );
        }
    }

    #[test]
    fn malformed_or_hidden_destinations_are_refused() {
        for raw in ["/a#frag", "/a?q=1", "//evil.example.com/x", "a/b", "/a%00b"] {
            assert!(
                matches!(dest(raw), Err(DestinationRefusal::BadRequest(_))),
                "{raw}"
            );
        }
        for raw in [
            "/.uploads/x",
            "http://127.0.0.1:8080/.uploads",
            "/../etc/passwd",
            "/a/.hostrole-props/b",
        ] {
            assert!(
                matches!(dest(raw), Err(DestinationRefusal::Forbidden(_))),
                "{raw}"
            );
        }
        assert!(matches!(
            destination("http://127.0.0.1:8080/x", None, SHARE, RESERVED),
            Err(DestinationRefusal::BadRequest(_))
        ));
    }

    #[test]
    fn the_header_handed_on_is_the_checked_path() {
        let d = dest("http://127.0.0.1:8080/d%C3%A9j%C3%A0/a%20b%23c%3Fd%25/").expect("ok");
        assert_eq!(d.relative, PathBuf::from("déjà/a b#c?d%"));
        assert_eq!(d.header_value(), "/d%C3%A9j%C3%A0/a%20b%23c%3Fd%25/");
        assert_eq!(relative_path(&d.header_value(), SHARE), Ok(d.relative));
        assert_eq!(rel("/"), PathBuf::new());
        assert_eq!(dest("/").expect("root").header_value(), "/");
    }
}
