//! `lp` through a real CUPS queue: the test runs its own `cupsd` (its own configuration,
//! spool and logs in a temporary directory, listening on a loopback port, no browsing), adds a
//! driverless queue for the print role (`lpadmin -m everywhere`, which builds the queue from
//! the role's printer attributes), prints a PDF with `lp`, and checks the printout in the
//! output folder and the job as `lpstat` lists it.
//!
//! cupsd needs root (it runs its filters as `lp`); without root the test skips with a message,
//! except on CI (`CI=true`), where it fails.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A cupsd of its own in `dir`, on 127.0.0.1:`port`.
fn cupsd(dir: &Path, port: u16) -> Child {
    need("cupsd", "cups-daemon");
    for sub in ["spool", "tmp", "cache", "state", "log", "ppd"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    let d = dir.display();
    std::fs::write(
        dir.join("cupsd.conf"),
        format!(
            "Listen 127.0.0.1:{port}\n\
             Browsing Off\n\
             BrowseLocalProtocols none\n\
             LogLevel debug\n\
             DefaultAuthType None\n\
             WebInterface No\n\
             <Location />\n  Order allow,deny\n  Allow from 127.0.0.1\n</Location>\n\
             <Location /admin>\n  Order allow,deny\n  Allow from 127.0.0.1\n</Location>\n\
             <Policy default>\n  <Limit All>\n    Order deny,allow\n  </Limit>\n</Policy>\n"
        ),
    )
    .expect("cupsd.conf");
    std::fs::write(
        dir.join("cups-files.conf"),
        format!(
            "ServerRoot {d}\nRequestRoot {d}/spool\nTempDir {d}/tmp\nCacheDir {d}/cache\n\
             StateDir {d}/state\nAccessLog {d}/log/access_log\nErrorLog {d}/log/error_log\n\
             PageLog {d}/log/page_log\nServerBin /usr/lib/cups\nDataDir /usr/share/cups\n\
             FileDevice No\n"
        ),
    )
    .expect("cups-files.conf");
    // cupsd runs filters as lp: the temporary directory must be theirs too.
    let _ = Command::new("chmod")
        .arg("1777")
        .arg(dir.join("tmp"))
        .status();
    let _ = Command::new("chmod").arg("755").arg(dir).status();
    Command::new("cupsd")
        .arg("-f")
        .arg("-c")
        .arg(dir.join("cupsd.conf"))
        .arg("-s")
        .arg(dir.join("cups-files.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cupsd starts")
}

/// Runs a CUPS client command against the test's cupsd.
async fn client(server: &str, tool: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(tool);
    cmd.env("CUPS_SERVER", server).args(args);
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("joins")
        .unwrap_or_else(|e| panic!("{tool} runs: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lp_prints_through_a_driverless_cups_queue() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cupsd needs root: run the print role's CUPS test as root on CI"
        );
        eprintln!("SKIPPED: lp_prints_through_a_driverless_cups_queue needs root (cupsd)");
        return;
    }
    need("lpadmin", "cups-client");
    need("lp", "cups-client");
    need("lpstat", "cups-client");
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = start(config(dir.path(), serde_json::json!({}))).await;
    let cups_dir = dir.path().join("cups");
    let port = hostrole_testkit::free_port();
    let _cupsd = Kill(cupsd(&cups_dir, port));
    wait_listening(([127, 0, 0, 1], port).into()).await;
    let server = format!("127.0.0.1:{port}");
    let log = || std::fs::read_to_string(cups_dir.join("log/error_log")).unwrap_or_default();

    let added = client(
        &server,
        "lpadmin",
        &[
            "-p",
            "hostrole",
            "-E",
            "-v",
            &ours.uri(),
            "-m",
            "everywhere",
        ],
    )
    .await;
    assert!(
        added.status.success(),
        "lpadmin -m everywhere: {}\n{}",
        text(&added),
        log()
    );
    let document = dir.path().join("letter.pdf");
    std::fs::write(&document, pdf(612, 792, "printed by lp")).expect("write");
    let printed = client(
        &server,
        "lp",
        &[
            "-d",
            "hostrole",
            "-t",
            "lp test",
            document.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert!(printed.status.success(), "lp: {}", text(&printed));
    let request = text(&printed);
    println!("{}", request.trim());

    let deadline = Instant::now() + Duration::from_secs(90);
    let printout = loop {
        if let Some(name) = ours.printouts().into_iter().find(|n| !n.starts_with('.')) {
            break name;
        }
        assert!(
            Instant::now() < deadline,
            "no printout after 90 s; cupsd's log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let bytes = std::fs::read(ours.output.join(&printout)).expect("read");
    println!("printout: {printout} ({} bytes)", bytes.len());
    let valid = (printout.ends_with(".pdf") && bytes.starts_with(b"%PDF-"))
        || (printout.ends_with(".pwg") && bytes.starts_with(b"RaS2PwgRaster"));
    assert!(valid, "not a PDF or PWG raster printout: {printout}");
    assert!(
        printout.starts_with("1-lp_test."),
        "the job name names the printout: {printout}"
    );

    // CUPS lists the job as completed once its backend is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = client(&server, "lpstat", &["-W", "completed", "-o", "hostrole"]).await;
        if text(&done).contains("hostrole-") {
            println!("lpstat -W completed: {}", text(&done).trim());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lpstat never listed the job completed: {}\n{}",
            text(&done),
            log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ours.end().await;
}
