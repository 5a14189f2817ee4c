//! TLS for the agent's listeners: rustls with the ring provider, TLS 1.2 and 1.3, the
//! certificate and key read from PEM files (a mounted `kubernetes.io/tls` Secret, or files on a
//! machine) and **read again when they change**, so a rotated Secret is served without a
//! restart: connections already open keep the certificate they started with, new handshakes get
//! the new one. A file that is half-written or does not match its key is not used; the previous
//! certificate stays until a good pair appears.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use hostrole_config::TlsFiles;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// How often a handshake may look at the files again (a stat of each; no read unless changed).
const RECHECK: Duration = Duration::from_secs(1);

/// ALPN for HTTP listeners: HTTP/2 first, then HTTP/1.1.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the TLS file {path} is not usable: {what}")]
pub struct TlsError {
    pub path: PathBuf,
    pub what: String,
}

/// An acceptor for `files`, offering `alpn` (empty for protocols without ALPN, such as mail's
/// STARTTLS), that follows changes of the files.
pub fn acceptor(files: &TlsFiles, alpn: &[&[u8]]) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let resolver = Reloading::new(files.clone(), provider.clone())?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            path: files.cert.clone(),
            what: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Reads a certificate chain and its key, checking that they belong together.
pub fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let bad = |path: &Path, what: String| TlsError {
        path: path.to_path_buf(),
        what,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad(&files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(&files.cert, "no certificate in the file".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad(&files.key, e.to_string()))?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| {
        bad(
            &files.key,
            format!("the key does not fit the certificate: {e}"),
        )
    })
}

/// What identifies a version of a file: a Secret volume swaps a symlink, an editor renames, a
/// writer rewrites in place; any of them changes one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &Metadata) -> Self {
        Self {
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }

    fn read(path: &Path) -> Option<Self> {
        std::fs::metadata(path).ok().map(|m| Stamp::of(&m))
    }
}

struct State {
    key: Arc<CertifiedKey>,
    stamps: (Option<Stamp>, Option<Stamp>),
    checked: Instant,
}

/// Serves the newest good certificate of `files`.
struct Reloading {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Reloading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("cert", &self.files.cert)
            .finish()
    }
}

impl Reloading {
    fn new(files: TlsFiles, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let stamps = (Stamp::read(&files.cert), Stamp::read(&files.key));
        let key = Arc::new(load(&files, &provider)?);
        Ok(Self {
            files,
            provider,
            state: Mutex::new(State {
                key,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let stamps = (Stamp::read(&self.files.cert), Stamp::read(&self.files.key));
            if stamps != state.stamps {
                match load(&self.files, &self.provider) {
                    Ok(key) => {
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate changed: new connections get the new one");
                        state.key = Arc::new(key);
                        state.stamps = stamps;
                    }
                    // Half-written or mismatched: keep serving the old pair, look again later
                    // (the stamps are not taken, so the next check tries again).
                    Err(e) => {
                        tracing::warn!(error = %e, "the TLS files changed but cannot be used yet; keeping the previous certificate")
                    }
                }
            }
        }
        state.key.clone()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and key made with openssl (Debian's, as the tests use).
    fn make_pair(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj"])
            .arg(format!("/CN={cn}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{out:?}");
        (cert, key)
    }

    fn subject(key: &CertifiedKey) -> Vec<u8> {
        key.cert[0].as_ref().to_vec()
    }

    #[test]
    fn a_rotated_pair_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = make_pair(dir.path(), "live", "one");
        let files = TlsFiles { cert, key };
        let provider = Arc::new(ring::default_provider());
        let r = Reloading::new(files.clone(), provider).expect("loads");
        let first = subject(&r.current());

        // A broken write (a certificate without its matching key) is not taken.
        let (cert2, key2) = make_pair(dir.path(), "next", "two");
        std::fs::copy(&cert2, &files.cert).expect("cert");
        r.state.lock().expect("lock").checked -= RECHECK;
        assert_eq!(subject(&r.current()), first, "mismatched pair ignored");

        // The key follows: the new pair is served.
        std::fs::copy(&key2, &files.key).expect("key");
        r.state.lock().expect("lock").checked -= RECHECK;
        let now = subject(&r.current());
        let second: Vec<u8> = CertificateDer::pem_file_iter(&cert2)
            .expect("pem")
            .next()
            .expect("one")
            .expect("der")
            .as_ref()
            .to_vec();
        assert_ne!(now, first, "rotated");
        assert_eq!(now, second, "the new certificate");
    }

    #[test]
    fn a_key_that_does_not_fit_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, _) = make_pair(dir.path(), "a", "a");
        let (_, key) = make_pair(dir.path(), "b", "b");
        let Err(err) = acceptor(
            &TlsFiles {
                cert,
                key: key.clone(),
            },
            ALPN_HTTP,
        ) else {
            panic!("a key of another certificate was accepted");
        };
        let err = err.to_string();
        assert!(
            err.contains("does not fit") && err.contains(&key.display().to_string()),
            "{err}"
        );
    }
}
