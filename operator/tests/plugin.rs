//! kubectl-hostrole's pure parts: status rendering from HostRole objects, host lookup for
//! `logs`, the container it reads. (e2e/tests/plugin.rs runs the binary against a real API
//! server.)

use hostrole_api::HostRole;
use hostrole_operator::plugin::{
    AGENT_CONTAINER, HostError, HostRef, age, log_container, render_hostrole, render_status,
    resolve_host,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

const NOW: i64 = 1_800_000_000;

fn now() -> Timestamp {
    Timestamp::from_second(NOW).expect("timestamp")
}

fn rfc3339(secs_ago: i64) -> String {
    Timestamp::from_second(NOW - secs_ago)
        .expect("timestamp")
        .to_string()
}

/// A HostRole as the API server returns it, with `status` as given.
fn hostrole(ns: &str, name: &str, replicas: i32, status: serde_json::Value) -> HostRole {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "hostrole.dev/v1alpha1",
        "kind": "HostRole",
        "metadata": {
            "name": name, "namespace": ns, "generation": 2,
            "creationTimestamp": rfc3339(3 * 3600),
        },
        "spec": {
            "replicas": replicas,
            "servers": {"web": {}},
            "clients": [{"service": "web", "server": "files"}],
        },
        "status": status,
    }))
    .expect("a HostRole")
}

fn web_status() -> serde_json::Value {
    serde_json::json!({
        "observedGeneration": 2,
        "replicas": 2,
        "readyHosts": 1,
        "roles": "web,client",
        "clients": "1/2",
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "HostsNotReady",
             "message": "1/2 hosts ready", "lastTransitionTime": rfc3339(90), "observedGeneration": 2},
            {"type": "Degraded", "status": "True", "reason": "HostFailing",
             "message": "web-1: web failed", "lastTransitionTime": rfc3339(600), "observedGeneration": 2},
        ],
        "hosts": [
            {"name": "web-0", "ready": true, "roles": {"web": "Serving"},
             "clients": [{"service": "web", "server": "files", "ok": true, "latencyMs": 4}]},
            {"name": "web-1", "ready": false, "roles": {"web": "Failed"},
             "clients": [{"service": "web", "server": "files", "ok": false, "reason": "Timeout",
                          "lastError": "no answer in 5s"}]},
        ],
        "endpoints": [{"role": "web", "url": "http://web.lan.svc:8080/", "scope": "cluster"}],
    })
}

#[test]
fn status_shows_the_summary_conditions_hosts_and_endpoints() {
    let hr = hostrole("lan", "web", 2, web_status());
    let text = render_hostrole(&hr, now());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "lan/web  roles web,client  hosts 1/2 ready  clients 1/2 ok  Ready=False (HostsNotReady)  age 3h",
        "{text}"
    );
    // Conditions: a table with aligned columns and their age.
    assert_eq!(
        lines[1], "  CONDITION  STATUS  REASON         SINCE  MESSAGE",
        "{text}"
    );
    assert_eq!(
        lines[2], "  Ready      False   HostsNotReady  90s    1/2 hosts ready",
        "{text}"
    );
    assert_eq!(
        lines[3], "  Degraded   True    HostFailing    10m    web-1: web failed",
        "{text}"
    );
    // Hosts: role states, client counts and what fails.
    assert_eq!(
        lines[4], "  HOST   READY  ROLES        CLIENTS  FAILING",
        "{text}"
    );
    assert_eq!(lines[5], "  web-0  yes    web=Serving  1/1", "{text}");
    assert_eq!(
        lines[6], "  web-1  no     web=Failed   0/1      web files: Timeout",
        "{text}"
    );
    assert_eq!(lines[7], "  ENDPOINT  SCOPE    URL", "{text}");
    assert_eq!(
        lines[8], "  web       cluster  http://web.lan.svc:8080/",
        "{text}"
    );
    assert_eq!(lines.len(), 9, "{text}");
}

#[test]
fn status_says_when_there_is_no_status_or_it_is_stale() {
    let fresh = hostrole("lan", "new", 1, serde_json::Value::Null);
    let text = render_hostrole(&fresh, now());
    assert!(
        text.starts_with("lan/new  roles web,client  hosts ?/1  no status yet"),
        "{text}"
    );

    let mut status = web_status();
    status["observedGeneration"] = 1.into();
    let stale = hostrole("lan", "web", 2, status);
    let text = render_hostrole(&stale, now());
    assert!(
        text.contains("status describes generation 1; the spec is at 2"),
        "{text}"
    );
}

#[test]
fn status_lists_hostroles_by_namespace_then_name_and_says_when_there_are_none() {
    let list = vec![
        hostrole("b", "web", 2, web_status()),
        hostrole("a", "zeta", 2, web_status()),
        hostrole("a", "alpha", 2, web_status()),
    ];
    let text = render_status(&list, now(), "in any namespace");
    let heads: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.is_empty())
        .map(|l| l.split("  ").next().unwrap_or_default())
        .collect();
    assert_eq!(heads, ["a/alpha", "a/zeta", "b/web"]);
    assert_eq!(
        render_status(&[], now(), "in namespace lan"),
        "No HostRoles in namespace lan.\n"
    );
}

#[test]
fn ages_read_like_kubectl() {
    let at = |ago: i64| age(Timestamp::from_second(NOW - ago).expect("ts"), now());
    assert_eq!(at(5), "5s");
    assert_eq!(at(119), "119s");
    assert_eq!(at(120), "2m");
    assert_eq!(at(7199), "119m");
    assert_eq!(at(7200), "2h");
    assert_eq!(at(3 * 86_400), "3d");
    // A clock behind the server's: no negative age.
    assert_eq!(at(-30), "0s");
}

#[test]
fn logs_finds_a_host_by_its_name_an_ordinal_or_a_one_host_hostrole() {
    let list = vec![
        hostrole("lan", "web", 2, web_status()),
        hostrole("lan", "mail", 1, serde_json::Value::Null),
    ];
    let scope = "in namespace lan";
    let found = |host: &str| resolve_host(&list, host, scope);
    let web1 = HostRef {
        namespace: "lan".into(),
        pod: "web-1".into(),
        hostrole: "web".into(),
    };
    assert_eq!(found("web-1"), Ok(web1));
    // No status yet: the ordinal below spec.replicas still names the host.
    assert_eq!(found("mail-0").map(|h| h.pod), Ok("mail-0".to_string()));
    // A HostRole with one host stands for it.
    assert_eq!(found("mail").map(|h| h.pod), Ok("mail-0".to_string()));
    // Two hosts: `web` names no single one; web-2 is beyond replicas.
    for host in ["web", "web-2", "mail-1", "we", "web-x"] {
        assert_eq!(
            found(host),
            Err(HostError::NotFound {
                host: host.into(),
                scope: scope.into(),
                known: vec!["mail-0".into(), "web-0".into(), "web-1".into()],
            }),
            "{host}"
        );
    }
    let message = found("nope").expect_err("no such host").to_string();
    assert_eq!(
        message,
        "no host nope in namespace lan; hosts: mail-0, web-0, web-1"
    );
}

#[test]
fn logs_asks_for_a_namespace_when_the_host_is_in_several() {
    let list = vec![
        hostrole("b", "web", 2, web_status()),
        hostrole("a", "web", 2, web_status()),
    ];
    let err = resolve_host(&list, "web-0", "in any namespace").expect_err("ambiguous");
    assert_eq!(
        err,
        HostError::Ambiguous {
            host: "web-0".into(),
            namespaces: vec!["a".into(), "b".into()],
        }
    );
    assert!(err.to_string().contains("-n"), "{err}");
}

#[test]
fn logs_reads_the_agent_container() {
    let pod = |names: &[&str]| -> Pod {
        let containers: Vec<serde_json::Value> = names
            .iter()
            .map(|n| serde_json::json!({"name": n}))
            .collect();
        serde_json::from_value(serde_json::json!({"spec": {"containers": containers}}))
            .expect("pod")
    };
    assert_eq!(
        log_container(&pod(&["sidecar", AGENT_CONTAINER])),
        Some(AGENT_CONTAINER.to_string())
    );
    assert_eq!(log_container(&pod(&["only"])), Some("only".to_string()));
    assert_eq!(log_container(&pod(&["a", "b"])), None);
}
