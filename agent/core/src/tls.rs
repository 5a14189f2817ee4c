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
pub use tokio_rustls::TlsAcceptor;
pub use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::verify_server_cert_signed_by_trust_anchor;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::crypto::{
    WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::pki_types::{ServerName, UnixTime};
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{
    self, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
};

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

/// The CA certificates of a PEM file; an error when it holds none.
pub fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let bad = |what: String| TlsError {
        path: path.to_path_buf(),
        what,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad("no CA certificate in the file".into()));
    }
    Ok(store)
}

/// A client configuration that accepts exactly the servers whose certificate chains to one of
/// `roots` and checks the name it was reached by (HTTP/1.1 by ALPN).
pub fn client_config(roots: RootCertStore) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            path: PathBuf::new(),
            what: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration for the members of a closed network: a server is accepted when its
/// certificate chains to one of `roots` (the network's own CA, which certifies only members),
/// whatever name it was reached by. For peers reached by address (a pod's IP), which no
/// certificate names; who answers is then proven by the answer's signature, not by the name.
pub fn network_client_config(roots: RootCertStore) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let verifier = Arc::new(MemberOfNetwork {
        roots,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            path: PathBuf::new(),
            what: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Verifies the chain to the network's CA (signatures, validity dates, CA and key-usage
/// constraints, as webpki does for every server) and not the name.
#[derive(Debug)]
struct MemberOfNetwork {
    roots: RootCertStore,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for MemberOfNetwork {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
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

    fn openssl(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    }

    /// A leaf `<name>.crt`/`<name>.key` for DNS name `dns`, signed by the CA `<ca>.crt`.
    fn leaf(dir: &Path, ca: &str, name: &str, dns: &str) -> TlsFiles {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        std::fs::write(dir.join("ext.cnf"), format!("subjectAltName=DNS:{dns}\n")).expect("ext");
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                &format!("/CN={dns}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-set_serial",
                "0x10",
                "-days",
                "1",
                "-extfile",
                "ext.cnf",
                "-out",
                &crt,
            ],
        );
        TlsFiles {
            cert: dir.join(crt),
            key: dir.join(key),
        }
    }

    /// Whether a client with `config` completes a handshake, as `name`, with a server of `files`.
    async fn handshake(config: ClientConfig, files: &TlsFiles, name: &str) -> Result<(), String> {
        let acceptor = acceptor(files, ALPN_HTTP).expect("acceptor");
        let (client, server) = tokio::io::duplex(64 << 10);
        let server = tokio::spawn(async move { acceptor.accept(server).await.map(|_| ()) });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from(name.to_string()).expect("name");
        let result = connector.connect(name, client).await.map(|_| ());
        drop(server);
        result.map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn a_network_member_is_accepted_by_its_ca_whatever_its_name_and_no_one_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        make_pair(dir.path(), "network", "network CA");
        make_pair(dir.path(), "other", "another CA");
        let member = leaf(dir.path(), "network", "member", "peer-0.example");
        let stranger = leaf(dir.path(), "other", "stranger", "peer-0.example");
        let roots = || roots(&dir.path().join("network.crt")).expect("roots");

        // Peers are reached by address: a member's certificate is taken at any name.
        let network = || network_client_config(roots()).expect("config");
        handshake(network(), &member, "10.0.0.7")
            .await
            .expect("a member reached by its IP address");
        // A certificate of another CA is refused, even for the right name.
        let refused = handshake(network(), &stranger, "peer-0.example")
            .await
            .expect_err("a certificate of another CA");
        assert!(refused.contains("UnknownIssuer"), "{refused}");

        // The index's configuration checks the name too.
        handshake(
            client_config(roots()).expect("config"),
            &member,
            "peer-0.example",
        )
        .await
        .expect("the right name");
        let wrong = handshake(client_config(roots()).expect("config"), &member, "10.0.0.7")
            .await
            .expect_err("a name the certificate does not have");
        assert!(wrong.contains("not valid for name"), "{wrong}");
    }

    #[test]
    fn a_file_without_a_ca_certificate_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("ca.crt");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let Err(err) = roots(&empty) else {
            panic!("a file without a certificate gave roots");
        };
        assert!(
            err.to_string().contains(&empty.display().to_string()),
            "{err}"
        );
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
