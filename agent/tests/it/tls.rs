//! HTTPS on the web and file roles: real clients verify the certificate (curl with the CA, HTTP/2
//! by ALPN, rclone, Python's ssl with hostname checks), plain HTTP is redirected, and a rotated
//! certificate reaches new connections without a restart while an open download finishes.

use crate::support;

use std::process::Command;
use std::time::Duration;

use hostrole_agent_core::users::hash_password;
use support::pki::{Pki, indent, served_serial, write_pair};
use support::{Agent, curl, free_port, wait_until};

struct Host {
    agent: Agent,
    data: tempfile::TempDir,
    web: u16,
    redirect: u16,
    file: u16,
    _site: tempfile::TempDir,
}

fn start(pki: &Pki) -> Host {
    let (cert, key) = pki.server("one", "1001");
    let site = tempfile::tempdir().expect("site");
    std::fs::write(site.path().join("index.html"), "<h1>over https</h1>\n").expect("index");
    let big: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.path().join("big.bin"), big).expect("big");
    let (web, redirect, file) = (free_port(), free_port(), free_port());
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cert\n  labels: {{hostrole.dev/use: \"true\"}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: accounts\n  labels: {{hostrole.dev/use: \"true\"}}\nstringData:\n  users: \"alice:{}\\n\"\n---\n\
         apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: secure}}\nspec:\n  servers:\n    web:\n      port: {web}\n      httpRedirectPort: {redirect}\n      tls: {{secret: cert}}\n      site: {{path: {}}}\n    file:\n      port: {file}\n      tls: {{secret: cert}}\n      users: {{secret: accounts}}\n",
        indent(&cert),
        indent(&key),
        hash_password("s3cret").expect("hash"),
        site.path().display(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secure.yaml");
    std::fs::write(&path, manifest).expect("manifest");
    let data = tempfile::tempdir().expect("data");
    let agent = Agent::up(&path, data.path(), &[]);
    assert!(
        agent
            .stdout()
            .contains(&format!("https://127.0.0.1:{web}/")),
        "up prints the https URL: {}",
        agent.stdout()
    );
    Host {
        agent,
        data,
        web,
        redirect,
        file,
        _site: site,
    }
}

#[test]
fn web_and_file_serve_https_that_real_clients_verify_with_http2_by_alpn() {
    let pki = Pki::new();
    let host = start(&pki);
    let ca = pki.path("ca.crt");
    let ca = ca.to_str().expect("utf-8");

    // curl verifies the chain and the name, and negotiates HTTP/2 by ALPN.
    let page = curl(&[
        "-sS",
        "--cacert",
        ca,
        "-w",
        "\n%{http_code} %{http_version}",
        &format!("https://localhost:{}/", host.web),
    ]);
    let text = String::from_utf8_lossy(&page.stdout);
    assert!(
        text.contains("over https") && text.ends_with("200 2"),
        "{text}"
    );
    let http1 = curl(&[
        "-sS",
        "--http1.1",
        "--cacert",
        ca,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
        &format!("https://localhost:{}/", host.web),
    ]);
    assert_eq!(String::from_utf8_lossy(&http1.stdout), "200 1.1");
    // Without the CA the certificate is not trusted: the server is not a stranger's.
    let untrusted = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        &format!("https://localhost:{}/", host.web),
    ]);
    assert!(
        !untrusted.status.success(),
        "verified against the system roots it fails"
    );
    // Plain HTTP on the HTTPS port gets nothing it could mistake for a page.
    let plain = curl(&[
        "-s",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{}/", host.web),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&plain.stdout),
        "000",
        "no HTTP answer in the clear"
    );

    // WebDAV over HTTPS: PUT and GET with Basic auth, then rclone with the CA.
    let url = format!("https://localhost:{}/notes.txt", host.file);
    let put = curl(&[
        "-sS",
        "--cacert",
        ca,
        "-u",
        "alice:s3cret",
        "-T",
        "-",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert_eq!(String::from_utf8_lossy(&put.stdout), "201", "{put:?}");
    let get = curl(&["-sS", "--cacert", ca, "-u", "alice:s3cret", &url]);
    assert!(get.status.success(), "{get:?}");
    let obscured = Command::new("rclone")
        .args(["obscure", "s3cret"])
        .output()
        .expect("rclone obscure");
    let remote = format!(
        ":webdav,url='https://localhost:{}/',user=alice,pass='{}':",
        host.file,
        String::from_utf8_lossy(&obscured.stdout).trim()
    );
    let listing = Command::new("rclone")
        .args(["lsf", "--ca-cert", ca, &remote])
        .env("RCLONE_CONFIG", "/dev/null")
        .output()
        .expect("rclone");
    assert!(
        listing.status.success() && String::from_utf8_lossy(&listing.stdout).contains("notes.txt"),
        "{listing:?}"
    );

    // Python's ssl: default context with the CA, hostname checked; a wrong name is refused.
    let python = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import socket, ssl, urllib.request\n\
             ctx = ssl.create_default_context(cafile={ca:?})\n\
             print(urllib.request.urlopen('https://localhost:{port}/', context=ctx).status)\n\
             try:\n    ctx.wrap_socket(socket.create_connection(('127.0.0.1', {port})), server_hostname='other.example')\nexcept ssl.SSLCertVerificationError:\n    print('refused')\n",
            port = host.web
        ))
        .output()
        .expect("python3");
    let said = String::from_utf8_lossy(&python.stdout);
    assert!(
        said.starts_with("200") && said.contains("refused"),
        "{python:?}"
    );
    drop(host);
}

#[test]
fn plain_http_is_redirected_to_the_same_path_on_https() {
    let pki = Pki::new();
    let host = start(&pki);
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        &format!("http://localhost:{}/docs/a?b=c", host.redirect),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("308 https://localhost:{}/docs/a?b=c", host.web)
    );
    let followed = curl(&[
        "-sSL",
        "--cacert",
        pki.path("ca.crt").to_str().expect("utf-8"),
        &format!("http://localhost:{}/", host.redirect),
    ]);
    assert!(String::from_utf8_lossy(&followed.stdout).contains("over https"));
}

#[test]
fn a_rotated_certificate_reaches_new_connections_without_a_restart() {
    let pki = Pki::new();
    let host = start(&pki);
    let ca = pki.path("ca.crt");
    assert_eq!(served_serial(&pki, host.web), "1001");
    let pid_before = host.agent.pid();

    // A download in flight on the old certificate.
    let target = host.data.path().join("download.bin");
    let mut download = Command::new("curl")
        .args(["-s", "--limit-rate", "600K", "--cacert"])
        .arg(&ca)
        .arg("-o")
        .arg(&target)
        .arg(format!("https://localhost:{}/big.bin", host.web))
        .spawn()
        .expect("curl");
    wait_until(
        "the download to be under way",
        Duration::from_secs(10),
        || std::fs::metadata(&target).is_ok_and(|m| m.len() > 0),
    );

    // Rotate: the standalone agent keeps the Secret's files where a pod mounts them.
    let (cert, key) = pki.server("two", "2002");
    let dir = host.data.path().join("tls/web");
    write_pair(&dir, &cert, &key);
    wait_until(
        "new connections to get the new certificate",
        Duration::from_secs(10),
        || served_serial(&pki, host.web) == "2002",
    );
    let status = download.wait().expect("curl");
    assert!(
        status.success(),
        "the download begun before the rotation finished"
    );
    assert_eq!(std::fs::metadata(&target).expect("file").len(), 3 << 20);
    assert_eq!(host.agent.pid(), pid_before, "no restart");
    // The file role's certificate is its own Secret mount: still the old one.
    assert_eq!(served_serial(&pki, host.file), "1001");
}
