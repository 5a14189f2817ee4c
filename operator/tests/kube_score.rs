//! kube-score on what the operator makes of every example: any CRITICAL finding is fixed or
//! explained in operator/tests/tools/kube-score/hosts.tsv (and a line there that no longer
//! matches a finding fails too).

use std::path::{Path, PathBuf};

use hostrole_api::access::object_uses;
use hostrole_api::manifest;
use hostrole_operator::desired::{self, PodIds, Settings};
use hostrole_operator::world::World;
use hostrole_testkit::kube_score;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every object the operator would apply for every HostRole of examples/, as one YAML stream.
fn every_example_rendered() -> String {
    let settings = Settings {
        agent_image: "hostrole/agent:0.1.0".into(),
        image_pull_policy: Some("IfNotPresent".into()),
        agent_cluster_role: "hostrole-agent".into(),
        network_policies: false,
        egress_policies: false,
        api_server_cidrs: Vec::new(),
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
    let found = kube_score::critical_findings(&every_example_rendered());
    kube_score::assert_explained(&found, "operator/tests/tools/kube-score/hosts.tsv");
}
