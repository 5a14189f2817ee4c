//! A test CA and server certificates made with openssl (Debian's), and what the TLS tests of
//! several roles ask of a served certificate: its serial, and a rotation done the way a kubelet
//! swaps a Secret volume.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it, made with openssl.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki { dir };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=hostrole test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn openssl(&self, args: &[&str]) -> String {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A server certificate `<name>.crt`/`<name>.key` with serial `serial` (hex).
    pub fn server(&self, name: &str, serial: &str) -> (String, String) {
        self.leaf(name, serial, "DNS:localhost,IP:127.0.0.1")
    }

    /// The files of a server certificate made by [`Pki::server`] or [`Pki::leaf`].
    pub fn files(&self, name: &str) -> hostrole_config::TlsFiles {
        hostrole_config::TlsFiles {
            cert: self.path(&format!("{name}.crt")),
            key: self.path(&format!("{name}.key")),
        }
    }

    /// A certificate `<name>.crt`/`<name>.key` with serial `serial` (hex) for the names `san`
    /// (`subjectAltName` syntax: `DNS:a,IP:1.2.3.4`).
    pub fn leaf(&self, name: &str, serial: &str, san: &str) -> (String, String) {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        std::fs::write(self.path("ext.cnf"), format!("subjectAltName={san}\n")).expect("ext");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &format!("0x{serial}"),
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            &crt,
        ]);
        let read = |f: &str| std::fs::read_to_string(self.path(f)).expect("pem");
        (read(&crt), read(&key))
    }
}

/// A PEM text indented for a YAML block scalar under `tls.crt: |`.
pub fn indent(pem: &str) -> String {
    pem.lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
}

/// The serial of the certificate a fresh TLS connection to `port` is given.
pub fn served_serial(pki: &Pki, port: u16) -> String {
    serial_after(pki, port, &[])
}

/// The same after STARTTLS in `protocol` (`smtp`, `imap`, `pop3`: openssl's `-starttls`).
pub fn served_serial_starttls(pki: &Pki, port: u16, protocol: &str) -> String {
    serial_after(pki, port, &["-starttls", protocol])
}

fn serial_after(pki: &Pki, port: u16, extra: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(extra)
        .args(["-servername", "localhost", "-CAfile"])
        .arg(pki.path("ca.crt"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("s_client");
    let out = {
        use std::io::Read;
        let mut s = String::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut s)
            .expect("read");
        s
    };
    let _ = child.wait();
    let pem_start = out
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let pem_end = out.find("-----END CERTIFICATE-----").expect("end") + 25;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("x509");
    {
        use std::io::Write;
        x509.stdin
            .take()
            .expect("stdin")
            .write_all(&out.as_bytes()[pem_start..pem_end])
            .expect("write");
    }
    let serial = x509.wait_with_output().expect("serial");
    String::from_utf8_lossy(&serial.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

/// Replaces a certificate and key the way a kubelet swaps a Secret volume: new files, then one
/// rename each.
pub fn write_pair(dir: &Path, cert: &str, key: &str) {
    for (name, content) in [("tls.key", key), ("tls.crt", cert)] {
        let staged = dir.join(format!(".{name}.new"));
        std::fs::write(&staged, content).expect("write");
        std::fs::rename(&staged, dir.join(name)).expect("rename");
    }
}
