//! `crds/` holds exactly what the Rust types generate.

use hostrole_api::HostRole;
use kube::CustomResourceExt;

#[test]
fn crds_folder_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crds/hostrole.dev_hostroles.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = serde_yaml::to_string(&HostRole::crd()).expect("the CRD renders");
    assert!(
        committed == generated,
        "{} is stale or missing: run `make crds` (cargo run -p hostrole-operator -- crd > {0}) and commit it",
        path.display()
    );
}

#[test]
fn the_chart_ships_the_same_crds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let top =
        std::fs::read_to_string(root.join("crds/hostrole.dev_hostroles.yaml")).unwrap_or_default();
    let chart = std::fs::read_to_string(
        root.join("charts/hostrole-operator/crds/hostrole.dev_hostroles.yaml"),
    )
    .unwrap_or_default();
    assert!(
        !top.is_empty() && top == chart,
        "charts/hostrole-operator/crds/ differs from crds/: run `make crds` and commit both"
    );
}

#[test]
fn the_crd_has_the_api_conventions() {
    let crd = HostRole::crd();
    assert_eq!(crd.spec.group, "hostrole.dev");
    assert_eq!(crd.spec.names.short_names, Some(vec!["hrole".to_string()]));
    assert_eq!(
        crd.spec.names.categories,
        Some(vec!["hostrole".to_string()])
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let subresources = version.subresources.as_ref().expect("subresources");
    assert!(subresources.status.is_some(), "status subresource");
    assert!(subresources.scale.is_some(), "scale subresource");
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        ["Roles", "Ready", "Hosts", "Clients", "Status", "URL", "Age"]
    );
}

/// Short names of built-in kinds and of widely installed CRDs (Flux, Argo CD/Workflows/
/// Rollouts/Events, cert-manager, Prometheus Operator, Istio, Knative, Tekton, KEDA, Kyverno,
/// Strimzi, External Secrets, Cilium, Crossplane, Gateway API). `kubectl get <short>` picks
/// one of two kinds silently: a short name of ours that one of these has is a bug.
const TAKEN_SHORT_NAMES: &[&str] = &[
    // Kubernetes
    "cs", "cm", "ep", "ev", "limits", "ns", "no", "pvc", "pv", "po", "rc", "quota", "sa", "svc",
    "crd", "crds", "ds", "deploy", "rs", "sts", "hpa", "cj", "csr", "ing", "netpol", "pdb", "pc",
    "sc", "psp", "ingclass", // Flux
    "hr", "ks", "gitrepo", "helmrepo", "hc", "ocirepo", "imgrepo", "imgpol", "imgupd", "rsip",
    // Argo
    "app", "apps", "appproj", "appprojs", "appset", "appsets", "wf", "cwf", "cwft", "wftmpl",
    "cronwf", "ro", "rollout", "eb", "es", "sn", // cert-manager
    "cert", "certs", "cr", "crs", // Prometheus Operator
    "prom", "am", "smon", "pmon", "promrule", "prb", "amcfg", "scfg", "ta", // Istio
    "vs", "gw", "dr", "se", "pa", "ra", "ap", "we", "wg", // Knative
    "ksvc", "kservice", "rt", "route", "cfg", "config", "rev", "kcfg", // Tekton
    "tr", "trs", "pr", "prs", "tt", "tb", "el", // KEDA
    "so", "sj", "cta", // Kyverno
    "pol", "cpol", "polr", "cpolr", "gr", "ur", // Strimzi
    "k", "kt", "ku", "kc", "kctr", "kmm2", "kb", "kr", // External Secrets
    "ces", "ss", "css", // Cilium
    "cnp", "ccnp", "cep", "cn", "ciliumid", "cew", // Crossplane, Gateway API
    "xrd", "xrds", "comp", "gc", "gtw",
];

#[test]
fn the_short_name_belongs_to_no_widely_used_kind() {
    let crd = HostRole::crd();
    for short in crd.spec.names.short_names.iter().flatten() {
        assert!(
            !TAKEN_SHORT_NAMES.contains(&short.as_str()),
            "short name {short} is taken (e.g. Flux's HelmRelease owns hr): kubectl get {short} would be ambiguous"
        );
    }
}
