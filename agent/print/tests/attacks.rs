//! What a hostile or broken client can make the print role do: each test names the bound or
//! check it exercises, and fails without it.

mod common;

use std::time::Duration;

use common::*;
use hostrole_print::attrs::{op, status};
use hostrole_print::wire::{self, Group, Value, group, tag};

fn print_job(uri: &str, user: &str, name: &str, format: &str, document: &[u8]) -> Vec<u8> {
    let mut g = operation(uri, user);
    g.push("job-name", Value::name(name));
    g.push("document-format", Value::mime(format));
    let mut bytes = message(op::PRINT_JOB, vec![g]);
    bytes.extend_from_slice(document);
    bytes
}

fn job_request(code: u16, uri: &str, user: &str, id: i32) -> Vec<u8> {
    let mut g = operation(uri, user);
    g.push("job-id", Value::integer(id));
    message(code, vec![g])
}

async fn job_state(r: &Running, id: i32, auth: Option<&str>) -> (i32, String) {
    let resp = ipp(
        r.addr,
        &job_request(op::GET_JOB_ATTRIBUTES, &r.uri(), "tester", id),
        auth,
    )
    .await
    .ipp();
    let state = find(&resp, group::JOB, "job-state")
        .and_then(Value::as_int)
        .unwrap_or(-1);
    let message = find(&resp, group::JOB, "job-state-message")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    (state, message)
}

#[tokio::test]
async fn a_document_over_max_job_bytes_is_refused_and_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(config(dir.path(), serde_json::json!({"maxJobBytes": 1000}))).await;
    let mut big = pdf(595, 842, "big");
    big.resize(200_000, b' ');
    let resp = ipp(
        r.addr,
        &print_job(&r.uri(), "u", "big", "application/pdf", &big),
        None,
    )
    .await;
    let m = resp.ipp();
    assert_eq!(m.code, status::TOO_LARGE, "{m:?}");
    let id = job_id(&m);
    let (state, message) = job_state(&r, id, None).await;
    assert_eq!(state, 8, "aborted");
    assert!(message.contains("1000 bytes"), "{message}");
    assert!(r.printouts().is_empty(), "{:?}", r.printouts());
    assert!(r.spooled().is_empty(), "{:?}", r.spooled());
    // A document within the bound prints.
    let small = pdf(595, 842, "s");
    assert!(small.len() < 1000);
    let ok = ipp(
        r.addr,
        &print_job(&r.uri(), "u", "small", "application/pdf", &small),
        None,
    )
    .await;
    assert_eq!(ok.ipp().code, status::OK);
    assert_eq!(r.printouts().len(), 1);
    r.end().await;
}

/// Printouts into a share with a quota count against it, as uploads do: a printout that
/// would take the share past it is not written, and its job is aborted with the reason.
#[tokio::test]
async fn printouts_cannot_take_their_share_past_its_quota() {
    let dir = tempfile::tempdir().expect("tempdir");
    let share = dir.path().join("share");
    std::fs::create_dir_all(share.join("docs")).expect("share");
    // What users keep in the share: 6 000 of its 10 000 bytes.
    std::fs::write(share.join("docs/minutes.txt"), vec![b'x'; 6_000]).expect("file");
    let r = start(config(
        dir.path(),
        serde_json::json!({
            "outputDir": share.join("printouts"),
            "outputQuota": {"shareRoot": share, "quotaBytes": 10_000},
        }),
    ))
    .await;
    // The file role's count of the share (as its last walk left it): a printout adds to it.
    let files = hostrole_agent_core::fsutil::tree_usage(&share);
    files.walked(6_000);
    let mut page = pdf(595, 842, "fits");
    page.resize(3_000, b' ');
    let ok = ipp(
        r.addr,
        &print_job(&r.uri(), "u", "fits", "application/pdf", &page),
        None,
    )
    .await;
    assert_eq!(ok.ipp().code, status::OK);
    assert_eq!(r.printouts().len(), 1);
    assert_eq!(
        files.fresh(std::time::Duration::from_secs(3_600)),
        Some(9_000)
    );
    // 9 000 used now: 3 000 more do not fit.
    let full = ipp(
        r.addr,
        &print_job(&r.uri(), "u", "too-much", "application/pdf", &page),
        None,
    )
    .await;
    let m = full.ipp();
    assert_eq!(m.code, status::TEMPORARY_ERROR, "{m:?}");
    let (state, message) = job_state(&r, job_id(&m), None).await;
    assert_eq!(state, 8, "aborted");
    assert!(
        message.contains("full") && message.contains("10000"),
        "{message}"
    );
    assert_eq!(r.printouts().len(), 1, "{:?}", r.printouts());
    assert!(r.spooled().is_empty(), "{:?}", r.spooled());
    let used = hostrole_agent_core::fsutil::tree_bytes(&share, None);
    assert!(used <= 10_000, "{used}");
    // Room made: it prints again.
    std::fs::remove_file(share.join("docs/minutes.txt")).expect("rm");
    let again = ipp(
        r.addr,
        &print_job(&r.uri(), "u", "again", "application/pdf", &page),
        None,
    )
    .await;
    assert_eq!(again.ipp().code, status::OK);
    assert_eq!(r.printouts().len(), 2);
    r.end().await;
}

#[tokio::test]
async fn a_share_user_who_breaks_the_output_folder_fails_jobs_never_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    // What a user of the share the printouts go to can do over WebDAV: a folder named like
    // the printer's temporary files (MKCOL), and the output folder replaced by a file (DELETE,
    // PUT).
    std::fs::create_dir_all(out.join(".hostrole-print-x.tmp")).expect("folder");
    let r = start(config(dir.path(), serde_json::json!({}))).await;
    r.end().await;
    std::fs::remove_dir_all(&out).expect("rm");
    std::fs::write(&out, b"not a folder").expect("file");
    let r = start(config(dir.path(), serde_json::json!({}))).await;
    let page = pdf(595, 842, "p");
    let failed = ipp(
        r.addr,
        &print_job(&r.uri(), "u", "p", "application/pdf", &page),
        None,
    )
    .await;
    let (state, message) = job_state(&r, job_id(&failed.ipp()), None).await;
    assert_eq!(state, 8, "aborted: {message}");
    assert!(message.contains("the output folder"), "{message}");
    // The user puts it right: the next job prints.
    std::fs::remove_file(&out).expect("rm");
    let ok = ipp(
        r.addr,
        &print_job(&r.uri(), "u", "p", "application/pdf", &page),
        None,
    )
    .await;
    assert_eq!(ok.ipp().code, status::OK);
    assert_eq!(r.printouts().len(), 1, "{:?}", r.printouts());
    r.end().await;
}

#[tokio::test]
async fn clients_that_never_finish_their_attributes_hold_a_bounded_number_of_reads() {
    // Each request's attributes are buffered (up to 64 KiB) before a login is checked: without
    // the bound, requests that never finish them make the role hold memory without end.
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(config(dir.path(), serde_json::json!({}))).await;
    let hog = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    for _ in 0..8 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind((hog, 0).into()).expect("bind");
        let mut s = socket.connect(r.addr).await.expect("connects");
        s.write_all(b"POST /ipp/print HTTP/1.1\r\nHost: p\r\nContent-Type: application/ipp\r\nContent-Length: 65536\r\n\r\n\x02\x00")
            .await
            .expect("writes");
        held.push(s);
    }
    let attrs = || message(op::GET_PRINTER_ATTRIBUTES, vec![operation(&r.uri(), "u")]);
    let mut turned_away = None;
    for _ in 0..50 {
        let answer = ipp_from(Some(hog), r.addr, &attrs(), None).await;
        if answer.status == 503 {
            turned_away = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = turned_away.expect("a ninth request from the address is turned away");
    assert_eq!(answer.header("retry-after"), Some("1"));
    // Others are still served, and the address is again once its requests go.
    let other = ipp_from(Some([127, 0, 0, 3].into()), r.addr, &attrs(), None).await;
    assert_eq!(other.ipp().code, status::OK);
    drop(held);
    let mut back = false;
    for _ in 0..50 {
        if ipp_from(Some(hog), r.addr, &attrs(), None).await.status == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the address is served again");
    r.end().await;
}

#[tokio::test]
async fn a_huge_attribute_section_is_refused_at_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(config(dir.path(), serde_json::json!({}))).await;
    let mut g = operation(&r.uri(), "u");
    for i in 0..40 {
        g.push(&format!("x-filler-{i}"), Value::text(&"a".repeat(4000)));
    }
    let bytes = message(op::GET_PRINTER_ATTRIBUTES, vec![g]);
    assert!(bytes.len() > wire::MAX_HEAD);
    let m = ipp(r.addr, &bytes, None).await.ipp();
    assert_eq!(m.code, status::TOO_LARGE, "{m:?}");
    r.end().await;
}

#[tokio::test]
async fn deeply_nested_collections_are_refused_without_exhausting_the_stack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(config(dir.path(), serde_json::json!({}))).await;
    let mut bytes = message(op::VALIDATE_JOB, vec![operation(&r.uri(), "u")]);
    bytes.pop(); // the end-of-attributes tag
    bytes.push(group::JOB);
    let record = |t: u8, name: &[u8], value: &[u8]| {
        let mut b = vec![t];
        b.extend_from_slice(&(name.len() as u16).to_be_bytes());
        b.extend_from_slice(name);
        b.extend_from_slice(&(value.len() as u16).to_be_bytes());
        b.extend_from_slice(value);
        b
    };
    bytes.extend(record(tag::BEG_COLLECTION, b"media-col", b""));
    for _ in 0..6000 {
        bytes.extend(record(tag::MEMBER_NAME, b"", b"m"));
        bytes.extend(record(tag::BEG_COLLECTION, b"", b""));
    }
    let m = ipp(r.addr, &bytes, None).await.ipp();
    assert_eq!(m.code, status::BAD_REQUEST, "{m:?}");
    // The printer still answers.
    let m = ipp(
        r.addr,
        &message(op::GET_PRINTER_ATTRIBUTES, vec![operation(&r.uri(), "u")]),
        None,
    )
    .await
    .ipp();
    assert_eq!(m.code, status::OK);
    r.end().await;
}

#[tokio::test]
async fn a_truncated_message_is_a_bad_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(config(dir.path(), serde_json::json!({}))).await;
    let whole = message(op::GET_PRINTER_ATTRIBUTES, vec![operation(&r.uri(), "u")]);
    for cut in [3, 9, whole.len() / 2, whole.len() - 1] {
        let m = ipp(r.addr, &whole[..cut], None).await.ipp();
        assert_eq!(m.code, status::BAD_REQUEST, "cut at {cut}: {m:?}");
    }
    r.end().await;
}

#[tokio::test]
async fn a_document_that_is_not_its_declared_format_aborts_its_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(config(dir.path(), serde_json::json!({}))).await;
    let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0];
    let m = ipp(
        r.addr,
        &print_job(&r.uri(), "u", "fake", "application/pdf", &jpeg),
        None,
    )
    .await
    .ipp();
    assert_eq!(m.code, status::FORMAT_ERROR, "{m:?}");
    let (state, message) = job_state(&r, job_id(&m), None).await;
    assert_eq!(state, 8);
    assert!(
        message.contains("declared application/pdf") && message.contains("image/jpeg"),
        "{message}"
    );
    // Auto-detection takes what the bytes are, and refuses what is no format it prints.
    let m = ipp(
        r.addr,
        &print_job(&r.uri(), "u", "auto", "application/octet-stream", &jpeg),
        None,
    )
    .await
    .ipp();
    assert_eq!(m.code, status::OK, "{m:?}");
    let auto = job_id(&m);
    let m = ipp(
        r.addr,
        &print_job(
            &r.uri(),
            "u",
            "text",
            "application/octet-stream",
            b"hello, printer\n",
        ),
        None,
    )
    .await
    .ipp();
    assert_eq!(m.code, status::FORMAT_ERROR, "{m:?}");
    // An unsupported declared format is refused before any job exists.
    let m = ipp(
        r.addr,
        &print_job(&r.uri(), "u", "ps", "application/postscript", b"%!PS"),
        None,
    )
    .await
    .ipp();
    assert_eq!(m.code, status::FORMAT_NOT_SUPPORTED, "{m:?}");
    assert_eq!(r.printouts(), vec![format!("{auto}-auto.jpg")]);
    r.end().await;
}

#[tokio::test]
async fn a_job_name_cannot_leave_the_output_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(config(dir.path(), serde_json::json!({}))).await;
    for name in ["../../escaped", "/etc/passwd", "..", "a\u{0}b\r\nc/../../d"] {
        let m = ipp(
            r.addr,
            &print_job(&r.uri(), "u", name, "application/pdf", &pdf(595, 842, "x")),
            None,
        )
        .await
        .ipp();
        assert_eq!(m.code, status::OK, "{name:?}: {m:?}");
    }
    let printouts = r.printouts();
    assert_eq!(printouts.len(), 4, "{printouts:?}");
    for p in &printouts {
        assert!(
            !p.contains("..") && !p.contains('/') && !p.chars().any(char::is_control),
            "{p:?}"
        );
    }
    assert!(
        printouts.contains(&"1-_._escaped.pdf".to_string()),
        "{printouts:?}"
    );
    assert!(!dir.path().join("escaped.pdf").exists());
    assert!(!dir.path().join("1-_._escaped.pdf").exists());
    r.end().await;
}

#[tokio::test]
async fn with_users_a_job_is_its_owners_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = hostrole_agent_core::users::hash_password("pw").expect("hash");
    let users = dir.path().join("users");
    std::fs::write(&users, format!("alice:{hash}\nbob:{hash}\n")).expect("users");
    let r = start(config(dir.path(), serde_json::json!({"usersFile": users}))).await;
    // Anyone may ask what the printer is; it says it wants Basic authentication.
    let m = ipp(
        r.addr,
        &message(op::GET_PRINTER_ATTRIBUTES, vec![operation(&r.uri(), "x")]),
        None,
    )
    .await
    .ipp();
    assert_eq!(m.code, status::OK);
    assert_eq!(
        find(&m, group::PRINTER, "uri-authentication-supported").and_then(Value::as_str),
        Some("basic")
    );
    // Printing needs a login.
    let doc = pdf(595, 842, "alice's");
    let resp = ipp(
        r.addr,
        &print_job(&r.uri(), "alice", "mine", "application/pdf", &doc),
        None,
    )
    .await;
    assert_eq!(resp.status, 401);
    assert!(
        resp.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic realm="))
    );
    let wrong = ipp(
        r.addr,
        &print_job(&r.uri(), "alice", "mine", "application/pdf", &doc),
        Some("alice:nope"),
    )
    .await;
    assert_eq!(wrong.status, 401);
    // Alice's pending job: the name she claims is not who she is, her login is.
    let mut create = operation(&r.uri(), "mallory");
    create.push("job-name", Value::name("held"));
    let m = ipp(
        r.addr,
        &message(op::CREATE_JOB, vec![create]),
        Some("alice:pw"),
    )
    .await
    .ipp();
    assert_eq!(m.code, status::OK, "{m:?}");
    let pending = job_id(&m);
    // Unauthenticated, nobody cancels it; Bob may not either.
    let cancel = job_request(op::CANCEL_JOB, &r.uri(), "alice", pending);
    assert_eq!(ipp(r.addr, &cancel, None).await.status, 401);
    let m = ipp(r.addr, &cancel, Some("bob:pw")).await.ipp();
    assert_eq!(m.code, status::NOT_AUTHORIZED, "{m:?}");
    let (state, _) = job_state(&r, pending, Some("alice:pw")).await;
    assert_eq!(state, 3, "still pending");
    // Bob sees that the job exists, not whose it is.
    let seen = ipp(
        r.addr,
        &job_request(op::GET_JOB_ATTRIBUTES, &r.uri(), "bob", pending),
        Some("bob:pw"),
    )
    .await
    .ipp();
    assert!(find(&seen, group::JOB, "job-state").is_some());
    assert!(find(&seen, group::JOB, "job-originating-user-name").is_none());
    let own = ipp(
        r.addr,
        &job_request(op::GET_JOB_ATTRIBUTES, &r.uri(), "alice", pending),
        Some("alice:pw"),
    )
    .await
    .ipp();
    assert_eq!(
        find(&own, group::JOB, "job-originating-user-name").and_then(Value::as_str),
        Some("alice")
    );
    // Alice prints; the output tray hands the printout to her alone.
    let m = ipp(
        r.addr,
        &print_job(&r.uri(), "alice", "mine", "application/pdf", &doc),
        Some("alice:pw"),
    )
    .await
    .ipp();
    assert_eq!(m.code, status::OK);
    let path = format!("/printouts/{}", job_id(&m));
    assert_eq!(http(r.addr, "GET", &path, &[], b"").await.status, 401);
    let basic = |who: &str| format!("Basic {}", base64_encode(who.as_bytes()));
    let bob = http(
        r.addr,
        "GET",
        &path,
        &[("Authorization", &basic("bob:pw"))],
        b"",
    )
    .await;
    assert_eq!(bob.status, 403);
    let alice = http(
        r.addr,
        "GET",
        &path,
        &[("Authorization", &basic("alice:pw"))],
        b"",
    )
    .await;
    assert_eq!(alice.status, 200);
    assert_eq!(alice.header("content-type"), Some("application/pdf"));
    assert_eq!(alice.body, doc);
    // Her own cancel works.
    let m = ipp(r.addr, &cancel, Some("alice:pw")).await.ipp();
    assert_eq!(m.code, status::OK);
    r.end().await;
}

#[tokio::test]
async fn a_queue_of_unfinished_jobs_refuses_more_and_forgets_finished_ones_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(config(dir.path(), serde_json::json!({"maxJobs": 3}))).await;
    let create = || message(op::CREATE_JOB, vec![operation(&r.uri(), "u")]);
    let mut ids = Vec::new();
    // Three senders (one job each is a sender's share of a queue of 3) fill it.
    for n in 2..5 {
        let m = ipp_from(Some([127, 0, 0, n].into()), r.addr, &create(), None)
            .await
            .ipp();
        assert_eq!(m.code, status::OK);
        ids.push(job_id(&m));
    }
    let m = ipp(r.addr, &create(), None).await.ipp();
    assert_eq!(m.code, status::TOO_MANY_JOBS, "{m:?}");
    let m = ipp(
        r.addr,
        &print_job(&r.uri(), "u", "x", "application/pdf", &pdf(595, 842, "x")),
        None,
    )
    .await
    .ipp();
    assert_eq!(m.code, status::TOO_MANY_JOBS, "{m:?}");
    assert!(r.printouts().is_empty() && r.spooled().is_empty());
    // A finished job makes room: it is forgotten for the new one.
    let m = ipp(
        r.addr,
        &job_request(op::CANCEL_JOB, &r.uri(), "u", ids[0]),
        None,
    )
    .await
    .ipp();
    assert_eq!(m.code, status::OK);
    let m = ipp(r.addr, &create(), None).await.ipp();
    assert_eq!(m.code, status::OK, "{m:?}");
    let m = ipp(
        r.addr,
        &job_request(op::GET_JOB_ATTRIBUTES, &r.uri(), "u", ids[0]),
        None,
    )
    .await
    .ipp();
    assert_eq!(m.code, status::NOT_FOUND, "the canceled job was forgotten");
    r.end().await;
}

#[tokio::test]
async fn one_sender_holds_at_most_a_quarter_of_the_queue() {
    // Without it, one client that makes jobs and sends no documents takes every place, and
    // nobody else can print until those jobs expire.
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(config(dir.path(), serde_json::json!({"maxJobs": 8}))).await;
    let create = |user: &str| message(op::CREATE_JOB, vec![operation(&r.uri(), user)]);
    let hog = Some([127, 0, 0, 2].into());
    let mut held = Vec::new();
    for user in ["a", "b"] {
        let m = ipp_from(hog, r.addr, &create(user), None).await.ipp();
        assert_eq!(m.code, status::OK, "{m:?}");
        held.push(job_id(&m));
    }
    // Another requesting-user-name does not make it another sender.
    let m = ipp_from(hog, r.addr, &create("c"), None).await.ipp();
    assert_eq!(m.code, status::TOO_MANY_JOBS, "{m:?}");
    assert!(
        find(&m, group::OPERATION, "status-message")
            .and_then(Value::as_str)
            .is_some_and(|t| t.contains("unfinished jobs")),
        "{m:?}"
    );
    // Others still print.
    let m = ipp(
        r.addr,
        &print_job(&r.uri(), "u", "x", "application/pdf", &pdf(595, 842, "x")),
        None,
    )
    .await
    .ipp();
    assert_eq!(m.code, status::OK, "{m:?}");
    // A job of the hog's finished: it may make another.
    let m = ipp_from(
        hog,
        r.addr,
        &job_request(op::CANCEL_JOB, &r.uri(), "a", held[0]),
        None,
    )
    .await
    .ipp();
    assert_eq!(m.code, status::OK);
    let m = ipp_from(hog, r.addr, &create("c"), None).await.ipp();
    assert_eq!(m.code, status::OK, "{m:?}");
    r.end().await;
}

#[tokio::test]
async fn forgotten_jobs_take_their_printouts_with_them() {
    // Without it, anyone who reaches the port fills the volume one printout at a time (the
    // pod's scratch space is sized for maxJobs printouts; past it the kubelet evicts the pod).
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(config(dir.path(), serde_json::json!({"maxJobs": 2}))).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let m = ipp(
            r.addr,
            &print_job(
                &r.uri(),
                "u",
                &format!("page {i}"),
                "application/pdf",
                &pdf(595, 842, &format!("page {i}")),
            ),
            None,
        )
        .await
        .ipp();
        assert_eq!(m.code, status::OK, "{m:?}");
        ids.push(job_id(&m));
        let printouts = r.printouts();
        assert!(
            printouts.len() <= 2,
            "at most maxJobs printouts on disk: {printouts:?}"
        );
    }
    // The two kept are the newest.
    let kept: Vec<String> = ids[3..].iter().map(|id| format!("{id}-")).collect();
    let printouts = r.printouts();
    assert_eq!(printouts.len(), 2, "{printouts:?}");
    for (printout, prefix) in printouts.iter().zip(&kept) {
        assert!(printout.starts_with(prefix.as_str()), "{printouts:?}");
    }
    r.end().await;
}

#[tokio::test]
async fn a_restart_aborts_interrupted_jobs_and_cleans_the_spool_and_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), serde_json::json!({}));
    let r = start(cfg.clone()).await;
    let m = ipp(
        r.addr,
        &print_job(
            &r.uri(),
            "u",
            "done",
            "application/pdf",
            &pdf(595, 842, "d"),
        ),
        None,
    )
    .await
    .ipp();
    let done = job_id(&m);
    let m = ipp(
        r.addr,
        &message(op::CREATE_JOB, vec![operation(&r.uri(), "u")]),
        None,
    )
    .await
    .ipp();
    let pending = job_id(&m);
    // What a crash in the middle of its Send-Document leaves: a partial spooled document, and a
    // temporary printout of another job half written.
    std::fs::write(r.spool.join(format!("{pending}.doc")), b"%PDF-1.4 partial").expect("spool");
    std::fs::write(r.output.join(".hostrole-print-99.tmp"), b"%PDF-1.4 half").expect("temp");
    let (spool, output) = (r.spool.clone(), r.output.clone());
    r.end().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = start(cfg).await;
    assert_eq!(r.spool, spool);
    let (state, why) = job_state(&r, pending, None).await;
    assert_eq!(state, 8, "aborted");
    assert!(why.contains("restart"), "{why}");
    assert!(r.spooled().is_empty(), "{:?}", r.spooled());
    assert_eq!(
        job_state(&r, done, None).await.0,
        9,
        "finished jobs stay listed"
    );
    let left: Vec<String> = r.printouts();
    assert_eq!(
        left,
        vec![format!("{done}-done.pdf")],
        "no temporary printout is left"
    );
    assert_eq!(r.output, output);
    // Ids go on.
    let m = ipp(
        r.addr,
        &message(op::CREATE_JOB, vec![operation(&r.uri(), "u")]),
        None,
    )
    .await
    .ipp();
    assert!(job_id(&m) > pending);
    r.end().await;
}

#[tokio::test]
async fn the_output_tray_serves_completed_printouts_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(config(dir.path(), serde_json::json!({}))).await;
    let doc = pdf(612, 792, "tray");
    let m = ipp(
        r.addr,
        &print_job(&r.uri(), "u", "tray", "application/octet-stream", &doc),
        None,
    )
    .await
    .ipp();
    let id = job_id(&m);
    let got = http(r.addr, "GET", &format!("/printouts/{id}"), &[], b"").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("application/pdf"));
    assert_eq!(got.body, doc);
    let m = ipp(
        r.addr,
        &message(op::CREATE_JOB, vec![operation(&r.uri(), "u")]),
        None,
    )
    .await
    .ipp();
    let pending = job_id(&m);
    assert_eq!(
        http(r.addr, "GET", &format!("/printouts/{pending}"), &[], b"")
            .await
            .status,
        404
    );
    assert_eq!(
        http(r.addr, "GET", "/printouts/../jobs.json", &[], b"")
            .await
            .status,
        404
    );
    assert_eq!(
        http(r.addr, "GET", "/printouts/999", &[], b"").await.status,
        404
    );
    r.end().await;
}

#[tokio::test]
async fn requests_are_checked_as_rfc_8011_asks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(config(dir.path(), serde_json::json!({}))).await;
    let send = |code: u16, groups: Vec<Group>, version: (u8, u8)| {
        let bytes = wire::encode(&wire::Message {
            version,
            code,
            request_id: 3,
            groups,
        });
        let addr = r.addr;
        async move { ipp(addr, &bytes, None).await.ipp() }
    };
    let m = send(
        op::GET_PRINTER_ATTRIBUTES,
        vec![operation(&r.uri(), "u")],
        (0, 0),
    )
    .await;
    assert_eq!(m.code, status::VERSION_NOT_SUPPORTED);
    let m = send(0x4242, vec![operation(&r.uri(), "u")], (2, 0)).await;
    assert_eq!(m.code, status::OPERATION_NOT_SUPPORTED);
    assert_eq!(m.request_id, 3);
    let mut twice = operation(&r.uri(), "u");
    twice.push("printer-uri", Value::uri(&r.uri()));
    let m = send(op::GET_PRINTER_ATTRIBUTES, vec![twice], (2, 0)).await;
    assert_eq!(m.code, status::BAD_REQUEST);
    let m = send(op::CANCEL_JOB, vec![operation(&r.uri(), "u")], (2, 0)).await;
    assert_eq!(m.code, status::BAD_REQUEST, "no job-id");
    let m = ipp(
        r.addr,
        &job_request(op::CANCEL_JOB, &r.uri(), "u", 4711),
        None,
    )
    .await
    .ipp();
    assert_eq!(m.code, status::NOT_FOUND);
    let not_ipp = http(
        r.addr,
        "POST",
        "/ipp/print",
        &[("Content-Type", "text/plain")],
        b"hi",
    )
    .await;
    assert_eq!(not_ipp.status, 415);
    r.end().await;
}
