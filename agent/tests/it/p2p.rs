//! The index and peer roles as real agent processes on loopback: a file seeded on one peer
//! reaches every other, verified by BLAKE3 on disk, drawn from several peers at once; bad
//! chunks are rejected and refetched; a source killed mid-transfer does not stop the others;
//! the index recovers from a restart (how fast is measured by bench/index-recovery.sh); requests
//! without the network's secret are refused.

use crate::support;

use std::time::Duration;

use hostrole_p2p::{auth, envelope};
use support::curl;
use support::p2p::*;

const SIZE: usize = 24 << 20;
const CHUNK: usize = 1 << 20;

fn sources(record: &serde_json::Value) -> Vec<String> {
    record["sources"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn status_of(args: &[&str]) -> (u16, String) {
    let mut all = vec!["-s", "-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    let out = curl(&all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn hybrid_network_spreads_a_file_survives_a_killed_source_and_an_index_restart() {
    let net = Net::new();
    let index_port = free_port();
    let mut index = net.index(index_port, 5);
    let index_url = format!("http://127.0.0.1:{index_port}");

    // Requests without the secret are refused, with a JSON reason.
    let (code, body) = status_of(&[&format!("{index_url}/v1/networks/{NETWORK}/peers")]);
    assert_eq!(code, 401, "{body}");
    assert!(
        body.contains("\"error\"") && body.contains("Authorization"),
        "{body}"
    );
    let path = format!("/v1/networks/{NETWORK}/peers");
    let me = auth::Identity::generate("intruder").expect("key");
    let wrong = auth::sign_request(b"not the secret", &me, "GET", &path, b"").expect("sign");
    let (code, body) = status_of(&[
        "-H",
        &format!("Authorization: {wrong}"),
        &format!("{index_url}{path}"),
    ]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("bad signature"), "{body}");
    let stale = auth::sign_request_with(
        SECRET.as_bytes(),
        &me,
        "GET",
        &path,
        auth::now() - 3600,
        auth::nonce().expect("nonce"),
        auth::digest(b""),
    )
    .expect("sign");
    let (code, body) = status_of(&[
        "-H",
        &format!("Authorization: {stale}"),
        &format!("{index_url}{path}"),
    ]);
    assert_eq!((code, body.contains("timestamp")), (401, true), "{body}");
    let good = auth::sign_request(SECRET.as_bytes(), &me, "GET", &path, b"").expect("sign");
    let (code, _) = status_of(&[
        "-H",
        &format!("Authorization: {good}"),
        &format!("{index_url}{path}"),
    ]);
    assert_eq!(code, 200);
    // A network added later is served without a restart.
    std::fs::write(net.networks_dir().join("later"), "s2").expect("secret");
    let later = "/v1/networks/later/peers";
    let signed = auth::sign_request(b"s2", &me, "GET", later, b"").expect("sign");
    let (code, _) = status_of(&[
        "-H",
        &format!("Authorization: {signed}"),
        &format!("{index_url}{later}"),
    ]);
    assert_eq!(code, 200, "a network added after start");

    // A large catalog (over axum's 2 MB default body limit) registers, and deregisters.
    let chunks = 40_000usize;
    let body = format!(
        "{{\"address\":\"127.0.0.1:9\",\"resources\":[{{\"name\":\"huge.iso\",\"size\":{},\"hash\":\"{}\",\"chunkSize\":{CHUNK},\"chunks\":[{}]}}]}}",
        chunks * CHUNK,
        "ab".repeat(32),
        vec![format!("\"{}\"", "cd".repeat(32)); chunks].join(",")
    );
    assert!(body.len() > 2 << 20);
    let body_file = net.dir.path().join("catalog.json");
    std::fs::write(&body_file, &body).expect("write");
    let bulky = auth::Identity::generate("bulky").expect("key");
    let own = format!("/v1/networks/{NETWORK}/peers/{}", bulky.id());
    let put =
        auth::sign_request(SECRET.as_bytes(), &bulky, "PUT", &own, body.as_bytes()).expect("sign");
    let (code, text) = status_of(&[
        "-X",
        "PUT",
        "-H",
        &format!("Authorization: {put}"),
        "--data-binary",
        &format!("@{}", body_file.display()),
        &format!("{index_url}{own}"),
    ]);
    assert_eq!(code, 204, "{text}");
    let other = format!("/v1/networks/{NETWORK}/peers/{}", me.id());
    let forged =
        auth::sign_request(SECRET.as_bytes(), &bulky, "DELETE", &other, b"").expect("sign");
    let (code, _) = status_of(&[
        "-X",
        "DELETE",
        "-H",
        &format!("Authorization: {forged}"),
        &format!("{index_url}{other}"),
    ]);
    assert_eq!(code, 403, "a peer deregisters only itself");
    let delete = auth::sign_request(SECRET.as_bytes(), &bulky, "DELETE", &own, b"").expect("sign");
    let (code, _) = status_of(&[
        "-X",
        "DELETE",
        "-H",
        &format!("Authorization: {delete}"),
        &format!("{index_url}{own}"),
    ]);
    assert_eq!(code, 204);

    let data = random_bytes(SIZE, 7);
    let hash = blake3_hex(&data);
    // Every peer serves chunks slowly enough to kill a source mid-transfer.
    let options = PeerOptions {
        index_url: Some(index_url.clone()),
        chunk_delay_ms: Some(250),
        ..PeerOptions::default()
    };
    let a = net.peer("a", options.clone(), &[("big.bin", &data)]);
    let mut b = net.peer("b", options.clone(), &[]);
    let c = net.peer("c", options.clone(), &[]);
    let d = net.peer("d", options.clone(), &[]);
    let e = net.peer("e", options.clone(), &[]);
    let a_id = a.id();
    let b_id = b.id();

    // The peer protocol refuses strangers too.
    let (code, _) = status_of(&[&format!("http://{}/v1/resources", a.address())]);
    assert_eq!(code, 401);

    // B finds the file at the index and fetches it from A.
    let hit = b.find("B to find big.bin at the index", "BIG", &hash);
    assert_eq!(hit["peers"], serde_json::json!([a_id]));
    b.fetch_as(&hash, "big.bin");

    // The index restarts empty; the peers register again and lookups work. (How fast: a
    // benchmark, bench/index-recovery.sh, not a bound here.)
    index.restart();
    wait_for(
        "lookups to work after the index restart",
        Duration::from_secs(30),
        || {
            let hits = c.search("big");
            let peers = hits.iter().find(|h| h["hash"] == hash.as_str())?["peers"].clone();
            let peers: Vec<&str> = peers
                .as_array()?
                .iter()
                .filter_map(|p| p.as_str())
                .collect();
            (peers.contains(&a_id.as_str()) && peers.contains(&b_id.as_str())).then_some(())
        },
    );
    let metrics = index.metrics();
    assert!(metric(&metrics, "hostrole_index_peers") >= 2.0, "{metrics}");

    // C, D and E fetch from A and B at once; B is killed mid-transfer.
    for peer in [&c, &d, &e] {
        assert_eq!(peer.start_download(&hash).0, 202);
    }
    wait_for(
        "every download to draw from B",
        Duration::from_secs(20),
        || {
            [&c, &d, &e]
                .iter()
                .all(|p| {
                    p.download(&hash)
                        .is_some_and(|r| r["sources"][&b_id].as_u64() > Some(0))
                })
                .then_some(())
        },
    );
    b.kill();
    let at_kill = c.download(&hash).expect("record");
    assert_eq!(
        at_kill["state"], "running",
        "B was killed mid-transfer: {at_kill}"
    );
    for peer in [&c, &d, &e] {
        let record = wait_complete(peer, &hash, Duration::from_secs(60));
        let from = sources(&record);
        assert!(from.len() > 1, "chunks from several peers: {record}");
        assert!(from.contains(&a_id) && from.contains(&b_id), "{record}");
        assert_eq!(record["chunksDone"], (SIZE / CHUNK) as u64);
        assert_eq!(file_hash(&peer.share().join("big.bin")), Some(hash.clone()));
    }
    let metrics = c.metrics();
    assert_eq!(
        metric(&metrics, "hostrole_peer_chunks_verified_total"),
        (SIZE / CHUNK) as f64,
        "{metrics}"
    );
    assert!(metric(&metrics, "hostrole_peer_fetched_bytes_total") >= SIZE as f64);
    assert!(metric(&a.metrics(), "hostrole_peer_served_bytes_total") > 0.0);
}

#[test]
fn decentralized_network_gossips_rejects_corrupt_chunks_and_mirrors() {
    let net = Net::new();
    let data = random_bytes(SIZE, 11);
    let hash = blake3_hex(&data);
    let a = net.peer(
        "a",
        PeerOptions {
            seeds: vec![],
            ..Default::default()
        }
        .with_seed_self(),
        &[("big.bin", &data)],
    );
    let seeds = vec![a.address()];
    let opts = |fetch: Vec<String>, mirror: bool| PeerOptions {
        seeds: seeds.clone(),
        fetch,
        mirror,
        ..PeerOptions::default()
    };
    // B fetches by name, unattended.
    let b = net.peer("b", opts(vec!["big.bin".into()], false), &[]);
    let c = net.peer("c", opts(vec![], false), &[]);
    let d = net.peer("d", opts(vec![], false), &[]);
    let a_id = a.id();
    let b_id = b.id();
    let b_record = wait_complete(&b, &hash, Duration::from_secs(30));
    assert_eq!(sources(&b_record), vec![a_id.clone()]);
    let b_file = b.share().join("big.bin");
    assert_eq!(file_hash(&b_file), Some(hash.clone()));

    // Gossip: A learns of B, C and D though they only know A's address.
    wait_for(
        "A to learn every peer by gossip",
        Duration::from_secs(10),
        || {
            let peers = get_json(&a.ui("/api/peers"));
            (peers.as_array()?.len() == 3).then_some(())
        },
    );

    // B's copy rots on disk (same size, same mtime): the cached hashes still say it is good.
    let mtime = std::fs::metadata(&b_file)
        .expect("meta")
        .modified()
        .expect("mtime");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&b_file)
            .expect("open");
        for chunk in 0..SIZE / CHUNK {
            f.write_all_at(b"rot", (chunk * CHUNK) as u64)
                .expect("corrupt");
        }
        f.set_modified(mtime).expect("keep mtime");
    }

    // C fetches from A and B: B's chunks are rejected, B is skipped, the file is still right.
    wait_for(
        "C to see the file at A and B",
        Duration::from_secs(10),
        || {
            let hit = c
                .search("big")
                .into_iter()
                .find(|h| h["hash"] == hash.as_str())?;
            (hit["peers"].as_array()?.len() == 2).then_some(())
        },
    );
    assert_eq!(c.start_download(&hash).0, 202);
    let record = wait_complete(&c, &hash, Duration::from_secs(30));
    assert!(record["rejected"][&b_id].as_u64() >= Some(1), "{record}");
    assert!(!sources(&record).contains(&b_id), "{record}");
    assert_eq!(file_hash(&c.share().join("big.bin")), Some(hash.clone()));
    assert!(metric(&c.metrics(), "hostrole_peer_chunks_rejected_total") >= 1.0);

    // D draws from A and C at once (and rejects B).
    wait_for("D to see C's copy", Duration::from_secs(10), || {
        let hit = d
            .search("big")
            .into_iter()
            .find(|h| h["hash"] == hash.as_str())?;
        (hit["peers"].as_array()?.len() == 3).then_some(())
    });
    assert_eq!(d.start_download(&hash).0, 202);
    let record = wait_complete(&d, &hash, Duration::from_secs(30));
    assert!(sources(&record).len() > 1, "{record}");
    assert_eq!(file_hash(&d.share().join("big.bin")), Some(hash.clone()));

    // A mirror joins late and takes everything the network shares.
    let e = net.peer("e", opts(vec![], true), &[]);
    wait_complete(&e, &hash, Duration::from_secs(30));
    assert_eq!(file_hash(&e.share().join("big.bin")), Some(hash.clone()));
    let _ = (a, b);
}

#[test]
fn quota_and_uploads_are_enforced_through_the_ui() {
    let net = Net::new();
    let data = random_bytes(3 * CHUNK, 3);
    let hash = blake3_hex(&data);
    let a = net.peer(
        "a",
        PeerOptions::default().with_seed_self(),
        &[("three.bin", &data)],
    );
    let small = net.peer(
        "small",
        PeerOptions {
            seeds: vec![a.address()],
            quota: Some(2 * CHUNK as u64),
            ..PeerOptions::default()
        },
        &[],
    );
    wait_for("the file to be found", Duration::from_secs(10), || {
        (!small.search("three").is_empty()).then_some(())
    });
    let (code, body) = small.start_download(&hash);
    assert_eq!(code, 507, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("quota")),
        "{body}"
    );

    // Uploads: staged, then renamed into the share; a taken name is never overwritten.
    let upload = |name: &str, bytes: &str| {
        status_of(&[
            "-H",
            "X-Requested-With: test",
            "--data-binary",
            bytes,
            &small.ui(&format!("/api/upload?name={name}")),
        ])
    };
    let (code, body) = upload("note.txt", "hello");
    assert_eq!(code, 201, "{body}");
    let (code, body) = upload("note.txt", "other");
    assert_eq!(code, 201, "{body}");
    assert!(body.contains("note (2).txt"), "{body}");
    assert_eq!(
        std::fs::read_to_string(small.share().join("note.txt")).expect("read"),
        "hello"
    );
    assert_eq!(upload("..%2Fescape", "x").0, 400);
    let big = net.dir.path().join("big.txt");
    std::fs::write(&big, vec![b'x'; 2 * CHUNK + 1]).expect("write");
    assert_eq!(upload("big.txt", &format!("@{}", big.display())).0, 507);
    // Another site's form cannot post: no X-Requested-With.
    let (code, _) = status_of(&["--data-binary", "x", &small.ui("/api/upload?name=y.txt")]);
    assert_eq!(code, 403);
    let files = get_json(&small.ui("/api/files"));
    let names: Vec<&str> = files
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, ["note (2).txt", "note.txt"]);
}

trait SeedSelf {
    fn with_seed_self(self) -> Self;
}

impl SeedSelf for PeerOptions {
    /// The first peer of a decentralized network has nobody to ask yet; it lists a seed that
    /// never answers, so it waits to be called.
    fn with_seed_self(mut self) -> Self {
        self.seeds = vec![format!("127.0.0.1:{}", free_port())];
        self
    }
}

#[test]
fn a_download_killed_mid_way_resumes_after_a_restart_without_refetching() {
    let net = Net::new();
    let data = random_bytes(SIZE, 13);
    let hash = blake3_hex(&data);
    let a = net.peer(
        "a",
        PeerOptions {
            chunk_delay_ms: Some(200),
            ..PeerOptions::default()
        }
        .with_seed_self(),
        &[("big.bin", &data)],
    );
    let mut b = net.peer(
        "b",
        PeerOptions {
            seeds: vec![a.address()],
            ..PeerOptions::default()
        },
        &[],
    );
    wait_for("B to see A's file", Duration::from_secs(10), || {
        (!b.search("big").is_empty()).then_some(())
    });
    assert_eq!(b.start_download(&hash).0, 202);
    let before = wait_for("a third of the chunks", Duration::from_secs(20), || {
        let done = b.download(&hash)?["chunksDone"].as_u64()?;
        (done >= 8).then_some(done)
    });
    b.kill();
    let partial = b.share().join(format!(".hostrole/partial/{hash}.part"));
    assert!(partial.exists(), "the partial file stays");
    assert!(!b.share().join("big.bin").exists());

    b.restart();
    let record = wait_complete(&b, &hash, Duration::from_secs(30));
    assert_eq!(file_hash(&b.share().join("big.bin")), Some(hash.clone()));
    assert!(!partial.exists(), "the partial file became the file");
    let fetched = metric(&b.metrics(), "hostrole_peer_chunks_verified_total") as u64;
    assert!(
        fetched <= (SIZE / CHUNK) as u64 - before,
        "after the restart only the missing chunks were fetched: {fetched} fetched, {before} kept; {record}"
    );
}

#[test]
fn peers_downloading_at_once_trade_verified_chunks_of_their_partial_copies() {
    let net = Net::new();
    let data = random_bytes(SIZE, 17);
    let hash = blake3_hex(&data);
    // The only complete copy is slow to serve; the downloaders are not.
    let a = net.peer(
        "a",
        PeerOptions {
            chunk_delay_ms: Some(400),
            ..PeerOptions::default()
        }
        .with_seed_self(),
        &[("big.bin", &data)],
    );
    let a_id = a.id();
    let peers: Vec<Node> = ["b", "c", "d"]
        .iter()
        .map(|name| {
            net.peer(
                name,
                PeerOptions {
                    seeds: vec![a.address()],
                    ..PeerOptions::default()
                },
                &[],
            )
        })
        .collect();
    for p in &peers {
        wait_for(
            "every peer to know every other",
            Duration::from_secs(10),
            || {
                let known = get_json(&p.ui("/api/peers"));
                (known.as_array()?.len() == 3 && !p.search("big").is_empty()).then_some(())
            },
        );
    }
    for p in &peers {
        assert_eq!(p.start_download(&hash).0, 202);
    }
    let mut traded = 0;
    for p in &peers {
        let record = wait_complete(p, &hash, Duration::from_secs(60));
        assert_eq!(file_hash(&p.share().join("big.bin")), Some(hash.clone()));
        println!("{}: {}", p.id(), record["sources"]);
        traded += sources(&record).iter().filter(|s| **s != a_id).count();
    }
    assert!(
        traded > 0,
        "chunks also came from peers that were downloading"
    );
}

/// The ids the index lists for the network (asked as `who`).
fn listed(who: &auth::Identity, index: &str) -> Vec<String> {
    let r = signed(
        who,
        index,
        "GET",
        &format!("/v1/networks/{NETWORK}/peers"),
        b"",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice::<Vec<serde_json::Value>>(&r.body)
        .expect("a peer list")
        .iter()
        .filter_map(|p| p["id"].as_str().map(str::to_string))
        .collect()
}

// Item 13: with one shared secret, any member could register, deregister or answer as any
// peer id, and replay what it captured.
#[test]
fn a_member_cannot_deregister_impersonate_or_replay_as_another_peer() {
    let net = Net::new();
    let index_port = free_port();
    let _index = net.index(index_port, 30);
    let index = format!("127.0.0.1:{index_port}");
    let a = net.peer(
        "a",
        PeerOptions {
            index_url: Some(format!("http://{index}")),
            ..PeerOptions::default()
        },
        &[("a.txt", b"from a")],
    );
    let a_id = a.id();
    // Mallory is a member (she holds the secret) and even takes A's name; not A's key.
    let mallory = auth::Identity::generate("a").expect("key");
    assert_ne!(mallory.id(), a_id);
    wait_for("A to register", Duration::from_secs(10), || {
        listed(&mallory, &index).contains(&a_id).then_some(())
    });

    // A request that names A's id, with a correct membership MAC, signed by Mallory's key.
    let path = format!("/v1/networks/{NETWORK}/peers/{a_id}");
    let (ts, nonce, body) = (
        auth::now(),
        auth::nonce().expect("nonce"),
        auth::digest(b""),
    );
    let message = envelope::request_message("DELETE", &path, &a_id, ts, &nonce, &body);
    let forged = envelope::RequestAuth {
        peer: a_id.clone(),
        ts,
        nonce,
        body,
        mac: auth::membership_mac(SECRET.as_bytes(), &message).expect("mac"),
        sig: mallory.sign(&message),
    }
    .header();
    let mut stream = connect(&index, None);
    write_head(
        &mut stream,
        "DELETE",
        &path,
        &[("Authorization", forged)],
        0,
    );
    let r = read_response(&mut stream);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        r.text().contains("not signed by the key its id names"),
        "{}",
        r.text()
    );
    // As herself she may not touch A's entry either.
    let r = signed(&mallory, &index, "DELETE", &path, b"", None);
    assert_eq!(r.status, 403, "{}", r.text());
    let r = signed(
        &mallory,
        &index,
        "PUT",
        &path,
        &registration("127.0.0.1:9", "x"),
        None,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        listed(&mallory, &index).contains(&a_id),
        "A is still listed"
    );

    // A captured request is accepted once.
    let list = format!("/v1/networks/{NETWORK}/peers");
    let header = auth::sign_request(SECRET.as_bytes(), &mallory, "GET", &list, b"").expect("sign");
    for (round, want) in [(1, 200), (2, 401)] {
        let mut stream = connect(&index, None);
        write_head(
            &mut stream,
            "GET",
            &list,
            &[("Authorization", header.clone())],
            0,
        );
        let r = read_response(&mut stream);
        assert_eq!(r.status, want, "request #{round}: {}", r.text());
        if want == 401 {
            assert!(r.text().contains("seen before"), "{}", r.text());
        }
    }

    // Answers are signed too: A's catalog verifies as A's, for this request only.
    let nonce = auth::nonce().expect("nonce");
    let header = auth::sign_request_with(
        SECRET.as_bytes(),
        &mallory,
        "GET",
        "/v1/resources",
        auth::now(),
        nonce,
        auth::digest(b""),
    )
    .expect("sign");
    let mut stream = connect(&a.address(), None);
    write_head(
        &mut stream,
        "GET",
        "/v1/resources",
        &[("Authorization", header)],
        0,
    );
    let r = read_response(&mut stream);
    assert_eq!(r.status, 200, "{}", r.text());
    let reply = r.header("x-hostrole-reply").expect("a signed answer");
    let ok = auth::verify_reply(
        SECRET.as_bytes(),
        Some(reply),
        200,
        &nonce,
        auth::Expect::Peer(&a_id),
    )
    .expect("signed by A");
    assert_eq!(ok.body, auth::digest(&r.body));
    assert!(
        auth::verify_reply(
            SECRET.as_bytes(),
            Some(reply),
            200,
            &nonce,
            auth::Expect::Peer(mallory.id())
        )
        .is_err(),
        "the answer names A, not anyone else"
    );
    assert_eq!(
        auth::verify_reply(
            SECRET.as_bytes(),
            Some(reply),
            200,
            &auth::nonce().expect("n"),
            auth::Expect::Peer(&a_id)
        ),
        Err(auth::AuthError::Replayed),
        "the answer belongs to its request"
    );
}

// Item 14: the index read (up to 8 MiB of) a body before checking who sent it, and any number
// of bodies at once.
#[test]
fn the_index_refuses_strangers_before_their_body_and_bounds_uploads() {
    let net = Net::new();
    let index_port = free_port();
    let _index = net.index(index_port, 30);
    let index = format!("127.0.0.1:{index_port}");
    let path = format!("/v1/networks/{NETWORK}/peers/x");

    // A stranger announces 8 MB and sends none of it: the refusal comes first.
    let mut stream = connect(&index, None);
    write_head(
        &mut stream,
        "PUT",
        &path,
        &[("Authorization", "HostRole-HMAC peer=x, ts=1, sig=00".into())],
        8_000_000,
    );
    let r = read_response(&mut stream);
    assert_eq!(r.status, 401, "answered before the body: {}", r.text());

    // A member announcing more than the limit is refused before sending it.
    let mallory = auth::Identity::generate("m").expect("key");
    let own = format!("/v1/networks/{NETWORK}/peers/{}", mallory.id());
    let big = vec![b' '; 9 << 20];
    let header = auth::sign_request(SECRET.as_bytes(), &mallory, "PUT", &own, &big).expect("sign");
    let mut stream = connect(&index, None);
    write_head(
        &mut stream,
        "PUT",
        &own,
        &[("Authorization", header)],
        big.len(),
    );
    let r = read_response(&mut stream);
    assert_eq!(r.status, 413, "{}", r.text());

    // Four uploads that never finish hold every upload slot; the next is refused at once
    // (and a GET still works). The server takes the slots in the order it gets to the requests,
    // not the order they were sent: a probe can win a slot from the fourth upload, which is then
    // the one refused. An upload that got an answer has no slot, so it is started again.
    let slow_upload = || {
        let body = vec![b' '; 4 << 20];
        let header =
            auth::sign_request(SECRET.as_bytes(), &mallory, "PUT", &own, &body).expect("sign");
        let mut stream = connect(&index, None);
        write_head(
            &mut stream,
            "PUT",
            &own,
            &[("Authorization", header)],
            body.len(),
        );
        use std::io::Write;
        stream.write_all(&body[..1024]).expect("a first part");
        stream
    };
    let answered = |stream: &std::net::TcpStream| {
        stream.set_nonblocking(true).expect("nonblocking");
        let got = stream.peek(&mut [0u8; 1]);
        stream.set_nonblocking(false).expect("blocking");
        !matches!(got, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
    };
    let mut slow: Vec<std::net::TcpStream> = (0..4).map(|_| slow_upload()).collect();
    let refused = wait_for(
        "an upload to be refused while four are in progress",
        Duration::from_secs(20),
        || {
            for stream in slow.iter_mut() {
                if answered(stream) {
                    *stream = slow_upload();
                }
            }
            let r = signed(
                &mallory,
                &index,
                "PUT",
                &own,
                &registration("127.0.0.1:9", "x"),
                None,
            );
            (r.status == 503).then_some(r)
        },
    );
    assert!(
        refused.text().contains("too many uploads"),
        "{}",
        refused.text()
    );
    assert_eq!(
        signed(
            &mallory,
            &index,
            "GET",
            &format!("/v1/networks/{NETWORK}/peers"),
            b"",
            None
        )
        .status,
        200
    );
    drop(slow);
    wait_for(
        "uploads to be accepted again",
        Duration::from_secs(20),
        || {
            let r = signed(
                &mallory,
                &index,
                "PUT",
                &own,
                &registration("127.0.0.1:9", "x"),
                None,
            );
            (r.status == 204).then_some(())
        },
    );
}

// Item 15: a registered address with a path made every peer's GETs hit that path (blind SSRF);
// chunk sizes other than the protocol's and answers of any size were taken.
#[test]
fn registered_addresses_cannot_carry_a_path_and_odd_chunk_sizes_are_refused() {
    let net = Net::new();
    let index_port = free_port();
    let _index = net.index(index_port, 30);
    let index = format!("127.0.0.1:{index_port}");
    let mallory = auth::Identity::generate("m").expect("key");
    let own = format!("/v1/networks/{NETWORK}/peers/{}", mallory.id());
    // Each would make other peers request http://127.0.0.1:9901/metrics?x=:80/v1/... (any path
    // of any host the victims reach): a port at the end was all that was checked.
    for address in [
        "127.0.0.1:9901/metrics?x=:80",
        "127.0.0.1:9901#:80",
        "user@127.0.0.1:9901",
        "127.0.0.1:0",
    ] {
        let r = signed(
            &mallory,
            &index,
            "PUT",
            &own,
            &registration(address, "x"),
            None,
        );
        assert_eq!(r.status, 422, "{address}: {}", r.text());
        assert!(r.text().contains("host:port"), "{}", r.text());
    }
    let huge = format!(
        "{{\"address\":\"127.0.0.1:9\",\"resources\":[{{\"name\":\"x\",\"size\":1099511627776,\"hash\":\"{}\",\"chunkSize\":1099511627776,\"chunks\":[\"{}\"]}}]}}",
        "ab".repeat(32),
        "cd".repeat(32)
    );
    let r = signed(&mallory, &index, "PUT", &own, huge.as_bytes(), None);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("chunkSize"), "{}", r.text());
    assert!(listed(&mallory, &index).is_empty());
}

/// Rounds, catalogs pulled whole and signed 304s so far, from a peer's metrics.
fn gossip_counts(peer: &Node) -> (f64, f64, f64) {
    let text = peer.metrics();
    let contacts = |result: &str| {
        let name = format!("hostrole_peer_gossip_contacts_total{{result=\"{result}\"}}");
        if text.contains(&name) {
            metric(&text, &name)
        } else {
            0.0
        }
    };
    (
        metric(&text, "hostrole_peer_gossip_rounds_total"),
        contacts("Catalog"),
        contacts("Unchanged"),
    )
}

// Gossip used to contact every known peer every round and pull its whole catalog each time:
// per peer O(N) requests a round, O(N²) bytes for the network (bench/p2p-scale.sh).
#[test]
fn gossip_contacts_a_few_peers_per_round_and_pulls_a_catalog_only_when_it_changed() {
    use hostrole_p2p::peer::KNOWN_PER_ROUND;
    let net = Net::new();
    let first = random_bytes(64 << 10, 21);
    let a = net.peer(
        "a",
        PeerOptions::default().with_seed_self(),
        &[("first.bin", &first)],
    );
    let a_id = a.id();
    let others = KNOWN_PER_ROUND + 5;
    let peers: Vec<Node> = (0..others)
        .map(|i| {
            net.peer(
                &format!("p{i}"),
                PeerOptions {
                    seeds: vec![a.address()],
                    ..PeerOptions::default()
                },
                &[],
            )
        })
        .collect();
    // Every peer learns every other through A's list and theirs.
    wait_for(
        "every peer to know all the others",
        Duration::from_secs(60),
        || {
            peers
                .iter()
                .all(|p| {
                    get_json(&p.ui("/api/peers"))
                        .as_array()
                        .is_some_and(|l| l.len() == others)
                })
                .then_some(())
        },
    );
    // Settled: each round contacts at most KNOWN_PER_ROUND of the others, and almost every
    // contact is a 304 (nothing changed).
    let before: Vec<_> = peers.iter().map(gossip_counts).collect();
    std::thread::sleep(Duration::from_secs(5));
    for (p, (r0, c0, u0)) in peers.iter().zip(before) {
        let (r1, c1, u1) = gossip_counts(p);
        let (rounds, catalogs, unchanged) = (r1 - r0, c1 - c0, u1 - u0);
        assert!(rounds >= 2.0, "{rounds} rounds in 5 s");
        assert!(
            catalogs + unchanged <= rounds * KNOWN_PER_ROUND as f64,
            "{} contacts in {rounds} rounds with {others} peers known",
            catalogs + unchanged
        );
        assert!(
            unchanged > catalogs,
            "{unchanged} catalogs unchanged (304), {catalogs} pulled whole, with nothing new"
        );
    }
    // A file added at A still reaches every peer's view within a few rounds: the peers that
    // contact A pull its new catalog; the others learn from their lists that theirs is stale.
    std::fs::write(a.share().join("second.bin"), random_bytes(64 << 10, 22)).expect("write");
    wait_for(
        "every peer to find the new file at A",
        Duration::from_secs(30),
        || {
            peers
                .iter()
                .all(|p| {
                    p.search("second").iter().any(|h| {
                        h["peers"]
                            .as_array()
                            .is_some_and(|l| l.contains(&a_id.clone().into()))
                    })
                })
                .then_some(())
        },
    );
}

#[test]
fn a_peer_stops_reading_an_answer_larger_than_it_asked_for() {
    use std::io::{Read, Write};
    // A "peer" that answers every request with an endless body.
    let rogue = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let rogue_addr = rogue.local_addr().expect("addr").to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = rogue.accept() else {
            return;
        };
        let mut head = [0u8; 4096];
        let _ = s.read(&mut head);
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        );
        let block = vec![b' '; 1 << 20];
        let mut sent = 0usize;
        while sent < 256 << 20 {
            if s.write_all(&block).is_err() {
                break;
            }
            sent += block.len();
        }
        let _ = tx.send(sent);
    });
    let net = Net::new();
    let _b = net.peer(
        "b",
        PeerOptions {
            seeds: vec![rogue_addr],
            ..PeerOptions::default()
        },
        &[],
    );
    let sent = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the rogue finished sending");
    assert!(
        sent < 64 << 20,
        "the peer read {} MiB of a catalog limited to 16 MiB",
        sent >> 20
    );
}

// A peer bound to one address of a machine that has several (or one of several hosts on one
// machine) sent its requests from another: the index counted it against the wrong client
// address, and peers knew it by an address it does not serve on.
#[test]
fn a_peer_bound_to_an_address_calls_from_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let seed = listener.local_addr().expect("addr").to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((_, from)) = listener.accept() {
            let _ = tx.send(from.ip());
        }
    });
    let net = Net::new();
    let bind: std::net::IpAddr = "127.0.0.9".parse().expect("ip");
    let _p = net.peer(
        "p",
        PeerOptions {
            seeds: vec![seed],
            bind: Some(bind),
            ..PeerOptions::default()
        },
        &[],
    );
    let from = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the peer called its seed");
    assert_eq!(from, bind, "the request left from another address");
}

// Item 16: the index listed names like `../../x`, and a flood of registrations from one place
// filled the network so that genuine peers got 507.
#[test]
fn the_index_refuses_path_names_and_a_registration_flood_from_one_client() {
    let net = Net::new();
    let index_port = free_port();
    let _index = net.index(index_port, 60);
    let index = format!("127.0.0.1:{index_port}");
    let mallory = auth::Identity::generate("m").expect("key");
    let own = format!("/v1/networks/{NETWORK}/peers/{}", mallory.id());
    for name in ["../../x", "/etc/passwd", ".hostrole/id", "a/../../b"] {
        let r = signed(
            &mallory,
            &index,
            "PUT",
            &own,
            &registration("127.0.0.1:9", name),
            None,
        );
        assert_eq!(r.status, 422, "{name}: {}", r.text());
        assert!(r.text().contains("plain relative path"), "{}", r.text());
    }

    // 1100 fake identities from one other address (the network's cap is 1024).
    let flood_from: std::net::IpAddr = "127.0.0.2".parse().expect("ip");
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..1100 {
        let fake = auth::Identity::generate(&format!("fake{i}")).expect("key");
        let path = format!("/v1/networks/{NETWORK}/peers/{}", fake.id());
        let r = signed(
            &fake,
            &index,
            "PUT",
            &path,
            &registration("127.0.0.2:9", "f"),
            Some(flood_from),
        );
        match r.status {
            204 => accepted += 1,
            429 => refused += 1,
            other => panic!("fake {i}: {other} {}", r.text()),
        }
    }
    println!("flood: {accepted} accepted, {refused} refused");
    assert!(refused > 0, "the flood was never refused");

    // A genuine peer still registers and is found.
    let a = net.peer(
        "a",
        PeerOptions {
            index_url: Some(format!("http://{index}")),
            ..PeerOptions::default()
        },
        &[("a.txt", b"from a")],
    );
    let a_id = a.id();
    wait_for(
        "the genuine peer to be listed",
        Duration::from_secs(15),
        || listed(&mallory, &index).contains(&a_id).then_some(()),
    );
    // The refusal as the client logs it ("…: HTTP 507: …"); a bare "507" also matches peer
    // ids and ports (a run once failed on an id holding "22507cd").
    assert!(
        !a.log().contains("HTTP 507"),
        "the genuine peer was refused: {}",
        a.log()
    );
}

// Item 17: a peer restarted while its index is down knew no one (a stall of about a minute
// with holders reachable).
#[test]
fn a_peer_restarted_while_the_index_is_down_still_fetches_from_the_peers_it_knew() {
    let net = Net::new();
    let index_port = free_port();
    let mut index = net.index(index_port, 30);
    let options = PeerOptions {
        index_url: Some(format!("http://127.0.0.1:{index_port}")),
        ..PeerOptions::default()
    };
    let data = random_bytes(3 * CHUNK + 5, 23);
    let hash = blake3_hex(&data);
    let a = net.peer("a", options.clone(), &[("kept.bin", &data)]);
    let c = net.peer("c", options.clone(), &[("kept.bin", &data)]);
    let mut b = net.peer("b", options, &[]);
    let a_id = a.id();
    wait_for("B to know A and C", Duration::from_secs(15), || {
        let peers = get_json(&b.ui("/api/peers"));
        let ids: Vec<&str> = peers
            .as_array()?
            .iter()
            .filter_map(|p| p["id"].as_str())
            .collect();
        (ids.len() == 2 && ids.contains(&a_id.as_str())).then_some(())
    });
    wait_for(
        "B to remember them on its volume",
        Duration::from_secs(15),
        || {
            let text = std::fs::read_to_string(b.share().join(".hostrole/peers.json")).ok()?;
            text.contains(&a_id).then_some(())
        },
    );

    index.kill();
    b.restart();
    let hit = b.find("B to find the file without the index", "kept", &hash);
    assert_eq!(hit["peers"].as_array().map(Vec::len), Some(2), "{hit}");
    b.fetch_as(&hash, "kept.bin");
    drop(c);
}

// Issue 19: the index and the peers over HTTPS. The index is checked by name and CA; peers,
// reached by address, by the network's CA (their certificates name no address here).
#[test]
fn peers_and_their_index_speak_https_checked_against_the_network_ca() {
    let pki = support::pki::Pki::new();
    pki.server("index", "11");
    pki.leaf("a", "12", "DNS:peer-a.invalid");
    pki.leaf("b", "13", "DNS:peer-b.invalid");
    let ca = pki.path("ca.crt");
    let net = Net::new();
    let index_port = free_port();
    let _index = net.index_with(index_port, 30, Some(pki.files("index")));
    let index_url = format!("https://localhost:{index_port}");

    // The index answers HTTPS with a certificate curl verifies, and nothing in plain HTTP.
    let path = format!("/v1/networks/{NETWORK}/peers");
    let (code, body) = status_of(&[
        "--cacert",
        &ca.display().to_string(),
        &format!("{index_url}{path}"),
    ]);
    assert_eq!(code, 401, "unsigned, over verified HTTPS: {body}");
    let (code, _) = status_of(&[
        "--max-time",
        "5",
        &format!("http://127.0.0.1:{index_port}{path}"),
    ]);
    assert_ne!(code, 401, "no plain-HTTP answer on the HTTPS port");

    let options = |name: &str| PeerOptions {
        index_url: Some(index_url.clone()),
        tls: Some(pki.files(name)),
        network_ca: Some(ca.clone()),
        index_ca: Some(ca.clone()),
        ..PeerOptions::default()
    };
    let data = random_bytes(2 * CHUNK + 7, 41);
    let hash = blake3_hex(&data);
    let a = net.peer("a", options("a"), &[("over-tls.bin", &data)]);
    let b = net.peer("b", options("b"), &[]);
    assert!(
        a.log()
            .contains(&format!("(\"peer+tls\", 127.0.0.1:{})", a.peer_port)),
        "the peer listens for HTTPS: {}",
        a.log()
    );
    // The peer port speaks HTTPS with A's certificate.
    let (code, _) = status_of(&[
        "--cacert",
        &ca.display().to_string(),
        "--resolve",
        &format!("peer-a.invalid:{}:127.0.0.1", a.peer_port),
        &format!("https://peer-a.invalid:{}/v1/resources", a.peer_port),
    ]);
    assert_eq!(code, 401, "the peer protocol over verified HTTPS");

    let hit = b.find("B to find A's file through the index", "over-tls", &hash);
    assert_eq!(hit["peers"].as_array().map(Vec::len), Some(1), "{hit}");
    b.fetch_as(&hash, "over-tls.bin");
}

// A peer whose certificate another CA signed holds the network's secret but is not taken as a
// member: its TLS is refused before any request, so nothing is fetched from it.
#[test]
fn a_peer_certified_by_another_ca_is_not_fetched_from() {
    let pki = support::pki::Pki::new();
    let other = support::pki::Pki::new();
    pki.leaf("a", "21", "DNS:peer-a.invalid");
    other.leaf("m", "22", "DNS:peer-m.invalid");
    let ca = pki.path("ca.crt");
    let net = Net::new();
    let data = random_bytes(CHUNK + 3, 43);
    // M seeds the file and trusts the network's CA; its own certificate is another CA's.
    let m = net.peer(
        "m",
        PeerOptions {
            tls: Some(other.files("m")),
            network_ca: Some(ca.clone()),
            seeds: vec!["127.0.0.1:1".into()],
            ..PeerOptions::default()
        },
        &[("impostor.bin", &data)],
    );
    let a = net.peer(
        "a",
        PeerOptions {
            tls: Some(pki.files("a")),
            network_ca: Some(ca.clone()),
            seeds: vec![m.address()],
            log: Some("info,hostrole_p2p=debug".into()),
            ..PeerOptions::default()
        },
        &[],
    );
    // (The two test CAs share a name, so webpki reports the signature, not the issuer.)
    wait_for(
        "A to refuse M's certificate",
        Duration::from_secs(20),
        || a.log().contains("invalid peer certificate").then_some(()),
    );
    assert!(a.search("impostor").is_empty(), "A lists nothing of M's");
}

/// How long `b` takes to fetch `hash` (already found) through its UI, checked on disk.
fn timed_fetch(b: &Node, hash: &str, name: &str) -> Duration {
    let started = std::time::Instant::now();
    b.fetch_as(hash, name);
    started.elapsed()
}

#[test]
fn upload_slots_and_rates_bound_what_a_peer_gives_and_change_live_from_the_ui() {
    use hostrole_p2p::peer::limits::Limits;
    let net = Net::new();
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                format!("limited-{i}.bin"),
                random_bytes(4 * CHUNK, 60 + 2 * i),
            )
        })
        .collect();
    let seeded: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    // A serves one chunk at a time (from its configuration), each taking at least 300 ms, so
    // that B's four workers asking at once always meet a taken slot.
    let a = net.peer(
        "a",
        PeerOptions {
            limits: Limits {
                upload_slots: Some(1),
                ..Limits::default()
            },
            chunk_delay_ms: Some(300),
            ..PeerOptions::default()
        }
        .with_seed_self(),
        &seeded,
    );
    let b = net.peer(
        "b",
        PeerOptions {
            seeds: vec![a.address()],
            ..PeerOptions::default()
        },
        &[],
    );
    let limits = get_json(&a.ui("/api/limits"));
    assert_eq!(limits["uploadSlots"], 1, "{limits}");
    assert_eq!(limits["configured"]["uploadSlots"], 1, "{limits}");
    assert!(limits["uploadBytesPerSecond"].is_null(), "{limits}");
    let hashes: Vec<String> = files.iter().map(|(_, d)| blake3_hex(d)).collect();
    for (hash, (name, _)) in hashes.iter().zip(&files) {
        b.find("B to find A's file", name, hash);
    }

    // Upload slots: B's extra requests are answered "busy", and the download still completes.
    b.fetch_as(&hashes[0], &files[0].0);
    let busy = metric(
        &a.metrics(),
        "hostrole_agent_errors_total{role=\"peer\",reason=\"UploadSlotsFull\"}",
    );
    assert!(busy > 0.0, "A refused none of B's parallel requests");
    assert_eq!(
        a.metrics()
            .lines()
            .filter(|l| l.contains("reason=\"DownloadFailed\""))
            .count(),
        0
    );

    // An upload rate set live from A's UI: 4 MiB at 1 MiB/s, one second of burst, takes ≥ 3 s.
    let mib = 1u64 << 20;
    let (code, body) = post_json(
        &a.ui("/api/limits"),
        &format!("{{\"uploadBytesPerSecond\": {mib}, \"uploadSlots\": 1}}"),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["uploadBytesPerSecond"], mib, "{body}");
    assert_eq!(
        body["configured"]["uploadBytesPerSecond"],
        serde_json::Value::Null
    );
    let paced = timed_fetch(&b, &hashes[1], &files[1].0);
    assert!(
        paced >= Duration::from_millis(2700),
        "4 MiB at 1 MiB/s came in {paced:?}"
    );

    // A download rate on B instead, A unlimited again.
    let (code, body) = post_json(&a.ui("/api/limits"), "{}");
    assert_eq!((code, body["uploadBytesPerSecond"].is_null()), (200, true));
    assert_eq!(body["uploadSlots"], 32, "no number is the default: {body}");
    let (code, body) = post_json(
        &b.ui("/api/limits"),
        &format!("{{\"downloadBytesPerSecond\": {mib}}}"),
    );
    assert_eq!(code, 200, "{body}");
    let paced = timed_fetch(&b, &hashes[2], &files[2].0);
    assert!(
        paced >= Duration::from_millis(2700),
        "4 MiB at 1 MiB/s came in {paced:?}"
    );

    // Bad limits change nothing and say which field and what it accepts.
    let (code, body) = post_json(&b.ui("/api/limits"), "{\"uploadBytesPerSecond\": 10}");
    assert_eq!(code, 422, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("uploadBytesPerSecond") && error.contains("1024"),
        "{body}"
    );
    let (code, body) = post_json(&b.ui("/api/limits"), "{\"uploadSlot\": 2}");
    assert_eq!(code, 400, "a misspelt field: {body}");
    let (code, _) = post_json(&b.ui("/api/limits"), "{\"uploadSlots\": 0}");
    assert_eq!(code, 422);
    assert_eq!(
        get_json(&b.ui("/api/limits"))["downloadBytesPerSecond"],
        mib,
        "refused changes left the limits as they were"
    );
    // Another site's page cannot change them (no X-Requested-With).
    let (code, _) = status_of(&[
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        "{}",
        &b.ui("/api/limits"),
    ]);
    assert_eq!(code, 403);
}

/// The printers `node`'s UI lists, as (peer id, printer name, URL).
fn printers_listed(node: &Node) -> Vec<(String, String, String)> {
    let peers = get_json(&node.ui("/api/peers"));
    let mut out = Vec::new();
    for p in peers.as_array().into_iter().flatten() {
        for printer in p["printers"].as_array().into_iter().flatten() {
            out.push((
                p["id"].as_str().unwrap_or_default().to_string(),
                printer["name"].as_str().unwrap_or_default().to_string(),
                printer["url"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

#[test]
fn a_hosts_printer_is_listed_to_its_network_by_the_index_and_by_gossip() {
    let net = Net::new();
    let index_port = free_port();
    let _index = net.index(index_port, 5);
    let index_url = format!("http://127.0.0.1:{index_port}");
    let hybrid = |print| PeerOptions {
        index_url: Some(index_url.clone()),
        print,
        ..PeerOptions::default()
    };
    let a = net.peer("a", hybrid(true), &[]);
    let b = net.peer("b", hybrid(false), &[]);
    let url = format!("ipp://127.0.0.1:{}/ipp/print", a.print_port);
    let expected = (a.id(), "a printer".to_string(), url.clone());
    wait_for(
        "B to list A's printer from the index",
        Duration::from_secs(15),
        || printers_listed(&b).contains(&expected).then_some(()),
    );
    // B offers none, and A does not list its own.
    assert_eq!(printers_listed(&a), vec![], "{}", a.log());
    // What the index holds, as any member reads it.
    let me = auth::Identity::generate("reader").expect("key");
    let path = format!("/v1/networks/{NETWORK}/peers");
    let signed = auth::sign_request(SECRET.as_bytes(), &me, "GET", &path, b"").expect("sign");
    let (code, body) = status_of(&[
        "-H",
        &format!("Authorization: {signed}"),
        &format!("{index_url}{path}"),
    ]);
    assert_eq!(code, 200, "{body}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    let entry = listed
        .iter()
        .find(|p| p["id"] == a.id())
        .expect("A at the index");
    assert_eq!(
        entry["services"],
        serde_json::json!([{"kind": "print", "port": a.print_port, "tls": false, "name": "a printer"}])
    );
    // The URL listed is a printer: it answers Get-Printer-Attributes, successful-ok, with its
    // name.
    let answer = support::get_printer_attributes(net.dir.path(), &url);
    assert!(
        answer.len() > 8 && answer[2..4] == [0, 0],
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        answer.windows(9).any(|w| w == b"a printer"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // Decentralized: C offers a printer and D, seeded with C, learns it from C's catalog.
    let c = net.peer(
        "c",
        PeerOptions {
            seeds: vec![format!("127.0.0.1:{}", free_port())],
            print: true,
            ..PeerOptions::default()
        },
        &[],
    );
    let d = net.peer(
        "d",
        PeerOptions {
            seeds: vec![c.address()],
            ..PeerOptions::default()
        },
        &[],
    );
    let expected = (
        c.id(),
        "c printer".to_string(),
        format!("ipp://127.0.0.1:{}/ipp/print", c.print_port),
    );
    wait_for(
        "D to list C's printer from C's catalog",
        Duration::from_secs(15),
        || printers_listed(&d).contains(&expected).then_some(()),
    );
}
