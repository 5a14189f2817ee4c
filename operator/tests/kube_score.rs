//! kube-score on what the operator makes of every example: any CRITICAL finding is fixed or
//! explained in operator/tests/tools/kube-score/hosts.tsv (and a line there that no longer
//! matches a finding fails too).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use hostrole_api::access::object_uses;
use hostrole_api::manifest;
use hostrole_operator::desired::{self, PodIds, Settings};
use hostrole_operator::world::World;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kube_score() -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("operator/tests/tools/kube-score/build.sh"))
        .output()
        .expect("run kube-score/build.sh");
    assert!(
        out.status.success(),
        "kube-score build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Every object the operator would apply for every HostRole of examples/, as one YAML stream.
fn every_example_rendered() -> String {
    let settings = Settings {
        agent_image: "hostrole/agent:0.1.0".into(),
        image_pull_policy: Some("IfNotPresent".into()),
        agent_cluster_role: "hostrole-agent".into(),
        network_policies: false,
        image_pull_secrets: Vec::new(),
        pod_ids: PodIds::default(),
    };
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read example");
        let name = file.display().to_string();
        for mut hr in manifest::parse_all(&text, &name).expect("valid example") {
            hr.metadata.namespace = Some("lan".into());
            hr.metadata.uid = Some("0c5a6a8e-1111-4222-8333-944455556666".into());
            // The owners of what it names have labelled it for use.
            let world = World::default().with_usable(
                object_uses(&hr)
                    .into_iter()
                    .map(|u| (u.kind, "lan".into(), u.name)),
            );
            let d = desired::desired(&hr, &settings, &world).expect("buildable example");
            docs.push(yaml(&d.config_map));
            docs.push(yaml(&d.headless_service));
            docs.push(yaml(&d.stateful_set));
            docs.extend(d.service.as_ref().map(yaml));
            docs.extend(d.reach.external_service.as_ref().map(yaml));
            docs.extend(d.service_account.as_ref().map(yaml));
            docs.extend(d.role_binding.as_ref().map(yaml));
            docs.extend(d.network_policy.as_ref().map(yaml));
            docs.extend(d.disruption_budget.as_ref().map(yaml));
            docs.extend(d.network.as_ref().map(|n| yaml(&n.service)));
        }
    }
    docs.join("---\n")
}

/// An owned object as YAML (k8s-openapi types carry apiVersion and kind).
fn yaml<T: serde::Serialize>(object: &T) -> String {
    serde_yaml::to_string(object).expect("serialisable")
}

#[test]
fn kube_score_finds_nothing_critical_in_host_objects_that_is_not_explained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("hosts.yaml");
    std::fs::write(&file, every_example_rendered()).expect("write");
    let out = Command::new(kube_score())
        .args(["score", "--output-format", "json"])
        .arg(&file)
        .output()
        .expect("run kube-score");
    let scored: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kube-score json: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let list = "operator/tests/tools/kube-score/hosts.tsv";
    let text = std::fs::read_to_string(root().join(list)).expect("accepted list");
    let accepted: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert!(
                cols.len() == 3 && !cols[2].trim().is_empty(),
                "{list}: `check-id<TAB>kind<TAB>why` expected: {l}"
            );
            (cols[0].to_string(), cols[1].to_string())
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut unexplained = Vec::new();
    for object in &scored {
        let kind = object["type_meta"]["kind"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        for check in object["checks"].as_array().into_iter().flatten() {
            // Grades: 1 critical, 5 warning, 7 almost ok, 10 ok.
            if check["skipped"] == true || check["grade"].as_i64() != Some(1) {
                continue;
            }
            let id = check["check"]["id"].as_str().unwrap_or("?").to_string();
            seen.insert((id.clone(), kind.clone()));
            if !accepted.contains(&(id.clone(), kind.clone())) {
                unexplained.push(format!(
                    "{id} on {}: {}",
                    object["object_name"], check["comments"]
                ));
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "kube-score findings that {list} does not explain (fix them, or say why there): {unexplained:#?}"
    );
    let stale: Vec<_> = accepted.iter().filter(|a| !seen.contains(*a)).collect();
    assert!(
        stale.is_empty(),
        "{list} explains findings kube-score no longer reports: {stale:?}"
    );
}
