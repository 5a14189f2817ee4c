//! The web and file roles' request paths and the WebDAV `Destination` header
//! (`hostrole_proto::dav_path`). Input: one policy byte (bit 0 hides dotfiles, bit 1 reserves a
//! top-level name), then `path LF destination LF authority` (a missing authority is none).
//!
//! An accepted path has only normal components, none of them a dot segment, a backslash, a NUL,
//! a hidden name (where the policy hides them) or the reserved name at the top; it stays under
//! any root it is joined to; the Destination handed on reads back as the same path. An accepted
//! absolute-URI Destination has scheme http or https and the request's own host and port (a
//! missing port is the scheme's default); the same Destination against another host or port is
//! refused as another server's.
#![no_main]

use std::path::{Component, Path};

use hostrole_proto::dav_path::{
    Destination, DestinationRefusal, Policy, Symlinks, destination, relative_path,
    reserved_anywhere, same_authority,
};
use libfuzzer_sys::fuzz_target;

const RESERVED_TOP: &str = ".hostrole-uploads";
const RESERVED: &[&str] = &[".hostrole-props"];

/// Checks what every accepted path (request path or Destination) must be.
fn check_relative(relative: &Path, policy: Policy) {
    let mut count = 0;
    for (i, component) in relative.components().enumerate() {
        let Component::Normal(name) = component else {
            panic!("a component that is not a plain name: {component:?} in {relative:?}");
        };
        let name = name.to_str().expect("decoded UTF-8");
        assert!(!name.is_empty());
        assert!(name != "." && name != "..", "{relative:?}");
        assert!(!name.contains(['/', '\\', '\0']), "{relative:?}");
        if policy.hide_dotfiles {
            assert!(!name.starts_with('.'), "a hidden name: {relative:?}");
        }
        if i == 0 {
            assert_ne!(
                Some(name),
                policy.reserved,
                "the reserved name: {relative:?}"
            );
        }
        count += 1;
    }
    let root = Path::new("/srv/share");
    let joined = root.join(relative);
    assert!(joined.starts_with(root));
    assert_eq!(
        joined.components().count(),
        root.components().count() + count
    );
}

/// `[userinfo@]host[:port]` as (lowercase host, port), or none when the port is not a port.
fn endpoint(authority: &str, default: u16) -> Option<(String, u16)> {
    let a = authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_ascii_lowercase();
    let (host, rest) = if a.starts_with('[') {
        let end = a.find(']')?;
        (a[..=end].to_string(), a[end + 1..].to_string())
    } else {
        match a.find(':') {
            Some(i) => (a[..i].to_string(), a[i..].to_string()),
            None => (a.clone(), String::new()),
        }
    };
    let port = match rest.strip_prefix(':') {
        None if rest.is_empty() => default,
        None => return None,
        Some("") => default,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
    };
    Some((host, port))
}

fn check_destination(raw: &str, authority: Option<&str>, policy: Policy) {
    let Ok(dest) = destination(raw, authority, policy, RESERVED) else {
        return;
    };
    check_relative(&dest.relative, policy);
    assert!(!reserved_anywhere(&dest.relative, RESERVED), "{raw:?}");
    assert!(!raw.contains(['?', '#']), "{raw:?}");
    assert!(!raw.starts_with("//"), "{raw:?}");

    // What dav-server gets instead: printable ASCII that reads back as the same path.
    let value = dest.header_value();
    assert!(value.starts_with('/'));
    assert!(value.bytes().all(|b| b.is_ascii_graphic()), "{value:?}");
    let again = destination(&value, None, policy, RESERVED).expect("the rewritten Destination");
    assert_eq!(again.relative, dest.relative, "{raw:?} -> {value:?}");
    if !dest.relative.as_os_str().is_empty() {
        assert_eq!(again.collection, dest.collection, "{raw:?} -> {value:?}");
    }

    if raw.starts_with('/') {
        return;
    }
    // An absolute URI: this server's scheme, host and port only.
    let ours = authority.expect("an absolute URI is compared with the request's authority");
    let (scheme, _) = raw.split_once(':').expect("a scheme");
    let scheme = scheme.to_ascii_lowercase();
    assert!(scheme == "http" || scheme == "https", "{raw:?}");
    let default = if scheme == "https" { 443 } else { 80 };
    let uri: http::Uri = raw.parse().expect("an accepted URI parses");
    let theirs = uri
        .authority()
        .expect("an accepted URI has a host")
        .as_str();
    let their_end = endpoint(theirs, default);
    let our_end = endpoint(ours, default);
    assert!(their_end.is_some(), "a port that is not one: {raw:?}");
    assert_eq!(their_end, our_end, "{raw:?} against {ours:?}");
    assert_eq!(
        relative_path(uri.path(), policy).ok(),
        Some(dest.relative.clone())
    );

    // The same Destination seen by a server on another port, or another host, is not local.
    if let Some((host, port)) = our_end {
        for other in [
            format!("{host}:{}", port.wrapping_add(1)),
            format!("x{host}:{port}"),
        ] {
            assert!(
                matches!(
                    destination(raw, Some(&other), policy, RESERVED),
                    Err(DestinationRefusal::BadGateway(_))
                ),
                "{raw:?} accepted by {other:?} and {ours:?}"
            );
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, rest)) = input.split_first() else {
        return;
    };
    let policy = Policy {
        hide_dotfiles: flags & 1 != 0,
        reserved: (flags & 2 != 0).then_some(RESERVED_TOP),
        symlinks: Symlinks::Guard,
    };
    let mut parts = rest.splitn(3, |b| *b == b'\n');
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let dest = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let authority = parts
        .next()
        .map(|a| String::from_utf8_lossy(a).into_owned());

    if let Ok(relative) = relative_path(&path, policy) {
        check_relative(&relative, policy);
        // Encoded again, it reads back the same: nothing dropped or merged.
        let back = Destination {
            relative: relative.clone(),
            collection: false,
        }
        .header_value();
        assert_eq!(relative_path(&back, policy), Ok(relative));
    }

    check_destination(&dest, authority.as_deref(), policy);
    // The request path as a Destination too (an absolute path there).
    check_destination(&path, authority.as_deref(), policy);

    if let Some(ours) = authority.as_deref() {
        for scheme in ["http", "https"] {
            assert_eq!(
                same_authority(scheme, &dest, ours),
                same_authority(scheme, ours, &dest)
            );
        }
    }
});
