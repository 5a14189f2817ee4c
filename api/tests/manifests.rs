//! Every manifest the project ships is judged by the same schema and CEL rules the API server
//! applies: examples are accepted, planned examples fail only on roles not served yet, and every
//! invalid manifest is rejected with the message its header promises.

use std::path::{Path, PathBuf};

use hostrole_api::manifest::{self, ManifestError};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn problems(err: ManifestError) -> Vec<String> {
    match err {
        ManifestError::Invalid { problems, .. } => problems,
        other => vec![other.to_string()],
    }
}

#[test]
fn examples_are_valid() {
    let files = yaml_files(&root().join("examples"));
    assert!(files.len() >= 2, "examples/ holds at least two manifests");
    for file in files {
        let hostroles = manifest::load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert!(!hostroles.is_empty(), "{} has a HostRole", file.display());
    }
}

#[test]
fn planned_examples_fail_only_on_roles_not_served_yet() {
    let files = yaml_files(&root().join("examples/planned"));
    assert!(!files.is_empty());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let err = manifest::parse_all(&text, &file.display().to_string())
            .expect_err("planned roles are rejected until they land");
        for problem in problems(err) {
            assert!(
                problem.contains("is not served by this release of hostrole yet"),
                "{}: unexpected problem {problem}",
                file.display()
            );
        }
    }
}

#[test]
fn invalid_manifests_are_rejected_with_their_message() {
    let files = yaml_files(&root().join("e2e/manifests/invalid"));
    assert!(
        files.len() >= 20,
        "at least 20 invalid manifests, found {}",
        files.len()
    );
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let expects: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expects.is_empty(),
            "{} has `# expect:` lines",
            file.display()
        );
        let err = manifest::parse(&text, &file.display().to_string())
            .expect_err(&format!("{} must be rejected", file.display()));
        let message = err.to_string();
        for expect in expects {
            assert!(
                message.contains(expect),
                "{}: expected {expect:?} in:\n{message}",
                file.display()
            );
        }
    }
}

#[test]
fn wrong_kind_and_bad_yaml_are_named() {
    let err =
        manifest::parse("apiVersion: hostrole.dev/v1\nkind: HostRole\n", "m.yaml").unwrap_err();
    assert!(
        err.to_string()
            .contains("expected apiVersion: hostrole.dev/v1alpha1"),
        "{err}"
    );
    let err = manifest::parse("apiVersion: [", "m.yaml").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("m.yaml (document 1): not a valid HostRole"),
        "{err}"
    );
}

#[test]
fn defaults_are_applied() {
    let hr = manifest::parse(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: w}\nspec:\n  servers:\n    web: {}\n",
        "m.yaml",
    )
    .expect("valid");
    assert_eq!(hr.spec.replicas, 1);
    assert_eq!(hr.spec.servers.web.as_ref().map(|w| w.port), Some(8080));
}
