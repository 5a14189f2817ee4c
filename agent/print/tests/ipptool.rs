//! CUPS' IPP conformance tests (`ipptool` with the test files of cups-ipp-utils) against the
//! print role and, in the same run, against `ippeveprinter` (CUPS' reference IPP Everywhere
//! printer, started by the test on a loopback port). Both results are printed; the test fails
//! when ours fails a test the reference passes.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use hostrole_print::attrs::op;
use hostrole_print::wire::group;

const TEST_DIR: &str = "/usr/share/cups/ipptool";

/// One ipptool run: each test's name (numbered when it repeats), result, and the lines ipptool
/// printed under it (what a failing test expected), and the whole report.
struct Run {
    results: Vec<(String, String, Vec<String>)>,
    report: String,
}

/// What ours fails on purpose, by test: the attributes whose expectations it does not meet,
/// and why. Only these: any other expectation failing in the same test fails ours.
const KNOWN_GAPS: &[(&str, &[&str], &str)] = &[(
    "PWG 5100.14 section 5.1/5.2 - Required Operations and Attributes",
    &[
        "overrides-supported",
        "page-ranges-supported",
        "printer-supply",
        "printer-supply-description",
        "printer-supply-info-uri",
    ],
    "the printer keeps each document as sent (no page selection, no per-page overrides) and a \
     file has no supplies (toner, paper) to report",
)];

/// Whether every expectation a failing test of ours printed is a known gap of that test.
fn known_gap(name: &str, details: &[String]) -> Option<&'static str> {
    let (_, attrs, why) = KNOWN_GAPS.iter().find(|(n, ..)| *n == name)?;
    let expected: Vec<&str> = details
        .iter()
        .filter_map(|l| l.trim().strip_prefix("EXPECTED:"))
        .map(|e| {
            e.split_whitespace()
                .next()
                .unwrap_or("")
                .trim_start_matches(['?', '!'])
        })
        .collect();
    (!expected.is_empty() && expected.iter().all(|e| attrs.contains(e))).then_some(*why)
}

/// Runs `test` (a file name in `dir`) against `uri`, sending `file`.
async fn ipptool(dir: &Path, uri: &str, test: &str, file: &Path) -> Run {
    let mut cmd = Command::new("ipptool");
    cmd.current_dir(dir)
        .args(["-I", "-t", "-T", "20", "-f"])
        .arg(file)
        .arg(uri)
        .arg(test);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("joins")
        .expect("ipptool runs");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let mut results: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in report.lines() {
        let l = line.trim_end();
        let verdict = ["PASS", "FAIL", "SKIP"]
            .into_iter()
            .find_map(|v| Some((v, l.strip_suffix(&format!("[{v}]"))?)));
        match verdict {
            Some((verdict, name)) => {
                let name = name.trim().to_string();
                let n = seen.entry(name.clone()).or_default();
                *n += 1;
                let key = if *n > 1 { format!("{name} #{n}") } else { name };
                results.push((key, verdict.to_string(), Vec::new()));
            }
            None => {
                if let Some(last) = results.last_mut() {
                    last.2.push(l.to_string());
                }
            }
        }
    }
    Run { results, report }
}

/// The PWG raster samples ipp-everywhere.test sends (PWG's sample files, which CUPS does not
/// ship), rendered by Ghostscript from the test's PDFs, for the resolutions and raster types
/// either printer lists (the test skips the others on both).
fn pwg_samples(dir: &Path, a4: &Path, letter: &Path) {
    need("gs", "ghostscript");
    let test = std::fs::read_to_string(dir.join("ipp-everywhere.test")).expect("the test file");
    let mut jobs: Vec<(String, u32, &str)> = Vec::new();
    let mut others: Vec<String> = Vec::new();
    for line in test.lines() {
        let Some(path) = line.trim().strip_prefix("FILE ") else {
            continue;
        };
        let mut parts = path.split('/');
        let (Some(root), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(dpi) = root
            .strip_prefix("pwg-raster-samples-")
            .and_then(|d| d.strip_suffix("dpi"))
            .and_then(|d| d.parse::<u32>().ok())
        else {
            continue;
        };
        let ok = [150, 300, 600].contains(&dpi) && ["black-1", "sgray-8", "srgb-8"].contains(&kind);
        if !ok {
            others.push(path.to_string());
        } else if !jobs.iter().any(|(p, ..)| p == path) {
            jobs.push((
                path.to_string(),
                dpi,
                if kind == "black-1" {
                    "3:1"
                } else if kind == "sgray-8" {
                    "18:8"
                } else {
                    "19:8"
                },
            ));
        }
    }
    let render = |(path, dpi, space): &(String, u32, &str)| {
        let out = dir.join(path);
        std::fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
        let (space, bits) = space.split_once(':').expect("space:bits");
        let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let mut cmd = Command::new("gs");
        cmd.args([
            "-q",
            "-dBATCH",
            "-dNOPAUSE",
            "-dSAFER",
            "-sDEVICE=pwgraster",
        ])
        .arg(format!("-r{dpi}"))
        .arg(format!("-dcupsColorSpace={space}"))
        .arg(format!("-dcupsBitsPerColor={bits}"))
        .arg(format!("-sOutputFile={}", out.display()));
        if name.contains("4x6") {
            cmd.args([
                "-dDEVICEWIDTHPOINTS=288",
                "-dDEVICEHEIGHTPOINTS=432",
                "-dFIXEDMEDIA",
                "-dPDFFitPage",
            ]);
        }
        cmd.arg(if name.contains("-a4-") { a4 } else { letter });
        let o = cmd.output().expect("gs runs");
        assert!(
            o.status.success(),
            "gs {path}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    // Two at a time (the machines that run this have few cores).
    let (first, second) = jobs.split_at(jobs.len() / 2);
    std::thread::scope(|s| {
        s.spawn(|| first.iter().for_each(render));
        second.iter().for_each(render);
    });
    // ipptool reads every FILE when it parses a test, skipped or not: the samples of the
    // resolutions and types neither printer lists exist too, as copies of a rendered one (no
    // test sends them).
    let placeholder = dir.join(&jobs.first().expect("samples to render").0);
    for path in others {
        let out = dir.join(&path);
        std::fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&placeholder, &out).expect("copy");
    }
}

/// A private D-Bus daemon: ippeveprinter's Avahi client needs a system bus to connect to even
/// with DNS-SD off (`-r off`); no Avahi daemon runs on it, which the client tolerates. Returns
/// the daemon and its address.
fn private_bus() -> (Child, String) {
    need("dbus-daemon", "dbus-daemon");
    let mut child = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon starts");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .expect("the bus address");
    (child, line.trim().to_string())
}

/// `ippeveprinter` on `port`, keeping its jobs in `spool`, on the D-Bus at `bus`.
fn reference(port: u16, spool: &Path, bus: &str) -> Child {
    need("ippeveprinter", "cups-ipp-utils");
    std::fs::create_dir_all(spool).expect("spool");
    Command::new("ippeveprinter")
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        // `-c /bin/true`: "print" with a command that returns at once, as ours writes a file;
        // without one ippeveprinter simulates a print time for every job and the suites take
        // 18 minutes instead of seconds.
        .args([
            "-k",
            "-r",
            "off",
            "-n",
            "localhost",
            "-c",
            "/bin/true",
            "-f",
        ])
        .arg("application/pdf,image/jpeg,image/pwg-raster")
        .arg("-d")
        .arg(spool)
        .arg("-p")
        .arg(port.to_string())
        .arg("reference")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ippeveprinter starts")
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A job waiting for its document (Create-Job), so that cancel-current-job.test has one.
/// ippeveprinter prints one job at a time and answers server-error-busy meanwhile: retried.
async fn pending_job(addr: std::net::SocketAddr, uri: &str) -> u16 {
    let mut code = 0;
    for _ in 0..60 {
        let r = ipp(
            addr,
            &message(op::CREATE_JOB, vec![operation(uri, "tester")]),
            None,
        )
        .await;
        code = r.ipp().code;
        if code != 0x0507 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cups_conformance_tests_pass_where_ippeveprinter_passes() {
    need("ipptool", "cups-ipp-utils");
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("tests");
    std::fs::create_dir_all(&work).expect("mkdir");
    for entry in std::fs::read_dir(TEST_DIR).expect("CUPS' test files") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), work.join(entry.file_name())).expect("copy");
    }
    let [a4, letter, _pwg, _jpg] = fixtures(&work);
    pwg_samples(&work, &a4, &letter);
    let ours = start(config(dir.path(), serde_json::json!({}))).await;
    let port = hostrole_testkit::free_port();
    let (bus, bus_address) = private_bus();
    let _bus = Kill(bus);
    let _reference = Kill(reference(
        port,
        &dir.path().join("reference-spool"),
        &bus_address,
    ));
    let reference_addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    wait_listening(reference_addr).await;
    let printers = [
        ("ours", ours.addr, ours.uri()),
        (
            "ippeveprinter",
            reference_addr,
            format!("ipp://localhost:{port}/ipp/print"),
        ),
    ];
    let tests = [
        "ipp-1.1.test",
        "ipp-2.0.test",
        "print-job.test",
        "create-job.test",
        "validate-job.test",
        "get-jobs.test",
        "get-job-attributes.test",
        "cancel-current-job.test",
        "ipp-everywhere.test",
    ];
    let mut regressions = Vec::new();
    let mut summary = String::new();
    let ours_addr = ours.addr;
    for test in tests {
        // Both printers at once: most of a suite's time is ipptool waiting on a printer.
        let run = |addr: std::net::SocketAddr, uri: String| {
            let (work, letter) = (&work, &letter);
            async move {
                let uri = match test {
                    // A job's URI: the first job, which ipp-1.1.test made.
                    "get-job-attributes.test" => format!("{uri}/1"),
                    "cancel-current-job.test" => {
                        let code = pending_job(addr, &uri).await;
                        assert!(
                            addr != ours_addr || code == 0,
                            "Create-Job on ours: {code:#06x}"
                        );
                        uri
                    }
                    _ => uri,
                };
                ipptool(work, &uri, test, letter).await
            }
        };
        let (a, b) = tokio::join!(
            run(printers[0].1, printers[0].2.clone()),
            run(printers[1].1, printers[1].2.clone())
        );
        let runs = [a, b];
        let count = |r: &Run, v: &str| r.results.iter().filter(|(_, x, _)| x == v).count();
        let line = format!(
            "{test:<26} ours: {} pass {} fail {} skip | ippeveprinter: {} pass {} fail {} skip",
            count(&runs[0], "PASS"),
            count(&runs[0], "FAIL"),
            count(&runs[0], "SKIP"),
            count(&runs[1], "PASS"),
            count(&runs[1], "FAIL"),
            count(&runs[1], "SKIP"),
        );
        println!("{line}");
        summary.push_str(&line);
        summary.push('\n');
        let reference: BTreeMap<&str, &str> = runs[1]
            .results
            .iter()
            .map(|(n, v, _)| (n.as_str(), v.as_str()))
            .collect();
        for (name, verdict, details) in &runs[0].results {
            if verdict == "FAIL" {
                let theirs = reference.get(name.as_str()).copied().unwrap_or("absent");
                let gap = known_gap(name, details);
                println!(
                    "  ours FAIL (ippeveprinter {theirs}): {name}{}",
                    gap.map(|why| format!(" [known gap: {why}]"))
                        .unwrap_or_default()
                );
                for d in details
                    .iter()
                    .filter(|d| d.contains("EXPECTED") || d.contains("GOT"))
                {
                    println!("      {}", d.trim());
                }
                if theirs == "PASS" && gap.is_none() {
                    regressions.push(format!("{test}: {name}\n{}", details.join("\n")));
                }
            }
        }
        if runs[0].results.is_empty() {
            regressions.push(format!("{test}: no result from ours:\n{}", runs[0].report));
        }
        if std::env::var_os("IPPTOOL_REPORT").is_some() {
            println!(
                "--- ours\n{}\n--- ippeveprinter\n{}",
                runs[0].report, runs[1].report
            );
        }
    }
    println!("{summary}");
    ours.end().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        regressions.is_empty(),
        "ours fails what ippeveprinter passes:\n{}",
        regressions.join("\n")
    );
    let _ = group::JOB;
}
