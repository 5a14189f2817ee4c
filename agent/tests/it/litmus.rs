//! litmus 0.13 (the WebDAV compliance suite; Debian package litmus), all five suites, against the
//! file role, and the same run against nginx's DAV module (Debian nginx with
//! libnginx-mod-http-dav-ext) printed beside it for comparison (not asserted).

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hostrole_agent_core::users::hash_password;
use support::{Agent, curl, free_port};

/// Warnings litmus gives that the file role cannot remove (see the report / docs/decisions.md):
/// the fragment of a Request-URI is dropped by the HTTP parser (the `http` crate's `Uri`) before
/// any handler sees it, and dav-server leaves properties that do not exist out of a PROPFIND
/// `prop` answer instead of listing them with 404.
const KNOWN_WARNINGS: &[&str] = &[
    "DELETE removed collection resource with Request-URI including fragment",
    "omitted from results with no status",
];

/// One suite's line of litmus' summary.
#[derive(Debug)]
struct Suite {
    name: String,
    run: u32,
    passed: u32,
    failed: u32,
    warnings: u32,
}

/// Runs litmus against `url` and returns its summary and every warning line.
fn litmus(url: &str, credentials: &[&str]) -> (Vec<Suite>, Vec<String>, String) {
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = Command::new("litmus")
        // Every suite, even after one fails (nginx fails one of basic).
        .arg("--keep-going")
        .arg(url)
        .args(credentials)
        .current_dir(cwd.path())
        .env("TESTS", "basic copymove props locks http")
        .stdin(Stdio::null())
        .output()
        .expect("litmus is installed (Debian package litmus; scripts/install-deps.sh)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut suites: Vec<Suite> = Vec::new();
    let mut warnings = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("<- summary for `") {
            // <- summary for `basic': of 16 tests run: 16 passed, 0 failed. 100.0%
            let name = rest.split('\'').next().unwrap_or("").to_string();
            let numbers: Vec<u32> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            suites.push(Suite {
                name,
                run: numbers.first().copied().unwrap_or(0),
                passed: numbers.get(1).copied().unwrap_or(0),
                failed: numbers.get(2).copied().unwrap_or(0),
                warnings: 0,
            });
        } else if let Some(rest) = line.strip_prefix("-> ")
            && let Some(n) = rest
                .strip_suffix(" warnings were issued.")
                .or(rest.strip_suffix(" warning was issued."))
            && let Some(last) = suites.last_mut()
        {
            last.warnings = n.trim().parse().unwrap_or(0);
        }
        if let Some(at) = line.find("WARNING: ") {
            warnings.push(line[at + 9..].to_string());
        }
    }
    (suites, warnings, text)
}

fn table(title: &str, suites: &[Suite]) -> String {
    let mut out = format!(
        "{title}\n| suite | run | passed | failed | warnings |\n| --- | --- | --- | --- | --- |\n"
    );
    for s in suites {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            s.name, s.run, s.passed, s.failed, s.warnings
        ));
    }
    out
}

/// nginx with the DAV modules, serving a temporary directory on `port`; killed on drop.
struct Nginx {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(port: u16) -> Option<Nginx> {
        let module = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so";
        if !Path::new("/usr/sbin/nginx").exists() || !Path::new(module).exists() {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("litmus")).expect("root");
        std::fs::create_dir_all(dir.path().join("tmp")).expect("tmp");
        let conf = dir.path().join("nginx.conf");
        let user = if unsafe_is_root() { "user root;\n" } else { "" };
        std::fs::write(
            &conf,
            format!(
                "{user}load_module {module};\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n\
                 server {{\n    listen 127.0.0.1:{port};\n    root {root};\n    location / {{\n      dav_methods PUT DELETE MKCOL COPY MOVE;\n      dav_ext_methods PROPFIND OPTIONS LOCK UNLOCK;\n      dav_ext_lock zone=litmus;\n      create_full_put_path on;\n      dav_access user:rw group:rw all:r;\n    }}\n  }}\n  dav_ext_lock_zone zone=litmus:1m;\n}}\n",
                d = dir.path().display(),
                root = root.display(),
            ),
        )
        .expect("nginx.conf");
        let child = Command::new("/usr/sbin/nginx")
            .args(["-g", "daemon off;", "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = format!("http://127.0.0.1:{port}/litmus/");
        while Instant::now() < deadline {
            let out = curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", &url]);
            if out.stdout != b"000" {
                return Some(Nginx { child, _dir: dir });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(Nginx { child, _dir: dir });
        None
    }
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers (SIGKILL would orphan them); SIGKILL only
    /// if it has not exited within 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[test]
fn litmus_passes_every_suite_against_the_file_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let alice = hash_password("change-me").expect("hash");
    let manifest = dir.path().join("share.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: share-users, labels: {{hostrole.dev/use: \"true\"}}}}\nstringData:\n  users: |\n    alice:{alice}\n---\n\
             apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: share}}\nspec:\n  servers:\n    file:\n      port: {port}\n      users: {{secret: share-users}}\n"
        ),
    )
    .expect("manifest");
    let _agent = Agent::up(&manifest, &dir.path().join("data"), &[]);
    let base = format!("http://127.0.0.1:{port}/litmus/");
    let made = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-u",
        "alice:change-me",
        "-X",
        "MKCOL",
        &base,
    ]);
    assert_eq!(made.stdout, b"201");

    let (ours, warnings, output) = litmus(&base, &["alice", "change-me"]);

    // nginx, for comparison only.
    let nginx_port = free_port();
    match Nginx::start(nginx_port) {
        Some(_nginx) => {
            let (theirs, _, _) = litmus(&format!("http://127.0.0.1:{nginx_port}/litmus/"), &[]);
            println!(
                "{}",
                table(
                    "litmus 0.13 against nginx 1.22 (dav + dav-ext), for comparison",
                    &theirs
                )
            );
        }
        None => println!("nginx with libnginx-mod-http-dav-ext is not installed: no comparison"),
    }
    println!("{}", table("litmus 0.13 against the file role", &ours));

    let names: Vec<&str> = ours.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["basic", "copymove", "props", "locks", "http"],
        "{output}"
    );
    for suite in &ours {
        assert!(
            suite.run > 0 && suite.failed == 0 && suite.passed == suite.run,
            "{suite:?}\n{output}"
        );
    }
    let unknown: Vec<&String> = warnings
        .iter()
        .filter(|w| !KNOWN_WARNINGS.iter().any(|k| w.contains(k)))
        .collect();
    assert!(
        unknown.is_empty(),
        "new litmus warnings: {unknown:?}\n{output}"
    );
}
