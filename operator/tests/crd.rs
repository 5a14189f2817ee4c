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
    assert_eq!(crd.spec.names.short_names, Some(vec!["hr".to_string()]));
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
        ["Roles", "Ready", "Hosts", "Clients", "Status", "Age"]
    );
}
