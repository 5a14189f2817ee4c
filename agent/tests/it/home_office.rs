//! examples/home-office.yaml standalone: one host serving web, file, mail, chat, radio and print
//! at once, each on its own ports, used with curl (HTTP, WebDAV, SMTP, IMAP, POP3, IPP).

use crate::support;

use support::{Agent, curl, fetch, repo_root, with_free_ports};

#[test]
fn the_home_office_example_serves_every_role_at_once() {
    let text =
        std::fs::read_to_string(repo_root().join("examples/home-office.yaml")).expect("example");
    let (manifest, ports) = with_free_ports(
        &text,
        &[8080, 8081, 2525, 2587, 1143, 1110, 6667, 8000, 8631],
    );
    let port = |p: &str| ports[&p.parse::<u16>().expect("a port")];
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("home-office.yaml");
    std::fs::write(&path, manifest).expect("write");
    let agent = Agent::up(&path, &dir.path().join("data"), &["--name", "office"]);
    let stdout = agent.stdout();
    for label in [
        "web",
        "file",
        "smtp",
        "imap",
        "pop3",
        "submission",
        "irc",
        "radio",
        "ipp",
    ] {
        assert!(stdout.contains(label), "{label} is listed: {stdout}");
    }

    // web
    let page = fetch(&[&format!("http://127.0.0.1:{}/", port("8080"))]);
    assert!(page.text().contains("The office"));

    // radio: the playlist from the manifest's ConfigMap is on the air.
    let status = fetch(&[&format!(
        "http://127.0.0.1:{}/status-json.xsl",
        port("8000")
    )]);
    let status: serde_json::Value = serde_json::from_str(&status.text()).expect("json");
    assert_eq!(status["icestats"]["source"]["server_name"], "Office FM");
    assert_eq!(status["icestats"]["source"]["title"], "01-tone");

    // print: anyone may ask the printer what it is (only printing needs a login).
    let answer = support::get_printer_attributes(
        dir.path(),
        &format!("ipp://127.0.0.1:{}/ipp/print", port("8631")),
    );
    assert!(answer.len() > 8 && answer[2..4] == [0, 0], "{answer:?}");
    assert!(answer.windows(14).any(|w| w == b"Office printer"));

    // file
    let note = dir.path().join("note.txt");
    std::fs::write(&note, "minutes of the meeting\n").expect("note");
    let put = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-u",
        "alice:change-me",
        "-T",
        note.to_str().expect("utf-8"),
        &format!("http://127.0.0.1:{}/note.txt", port("8081")),
    ]);
    assert_eq!(String::from_utf8_lossy(&put.stdout), "201");
    let back = fetch(&[
        "-u",
        "alice:change-me",
        &format!("http://127.0.0.1:{}/note.txt", port("8081")),
    ]);
    assert_eq!(back.text(), "minutes of the meeting\n");

    // mail: SMTP in, IMAP and POP3 out
    let message = dir.path().join("message.eml");
    std::fs::write(
        &message,
        "From: alice@office.lan\r\nTo: bob@office.lan\r\nSubject: lunch\r\n\r\nNoon at the usual place.\r\n",
    )
    .expect("message");
    let sent = curl(&[
        "-s",
        "--url",
        &format!("smtp://127.0.0.1:{}", port("2525")),
        "--mail-from",
        "alice@office.lan",
        "--mail-rcpt",
        "bob@office.lan",
        "-T",
        message.to_str().expect("utf-8"),
    ]);
    assert!(
        sent.status.success(),
        "SMTP delivery: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let search = curl(&[
        "-s",
        "-u",
        "bob:change-me-too",
        &format!("imap://127.0.0.1:{}/INBOX", port("1143")),
        "-X",
        "SEARCH ALL",
    ]);
    assert!(
        String::from_utf8_lossy(&search.stdout).contains("SEARCH 1"),
        "{}",
        String::from_utf8_lossy(&search.stdout)
    );
    let fetched = curl(&[
        "-s",
        "-u",
        "bob:change-me-too",
        &format!("imap://127.0.0.1:{}/INBOX;UID=1", port("1143")),
    ]);
    assert!(String::from_utf8_lossy(&fetched.stdout).contains("Noon at the usual place."));
    let popped = curl(&[
        "-s",
        "-u",
        "bob:change-me-too",
        &format!("pop3://127.0.0.1:{}/1", port("1110")),
    ]);
    assert!(String::from_utf8_lossy(&popped.stdout).contains("Subject: lunch"));

    let ready = fetch(&[&agent.admin_url("/readyz")]);
    assert_eq!(ready.status, 200);
    let metrics = fetch(&[&agent.admin_url("/metrics")]).text();
    for role in ["web", "file", "mail"] {
        assert!(
            metrics.contains(&format!("hostrole_agent_role_ready{{role=\"{role}\"}} 1")),
            "{role}: {metrics}"
        );
    }
}
