//! What a release is made of, checked without making one: the license every package and the
//! chart declare, the workflows (actionlint, built from the Go module proxy at the version pinned
//! in scripts/tools/actionlint/go.mod and cached under ~/.cache/hostrole, as h2spec is), the
//! krew manifest against the platforms the release workflow builds, and CHANGELOG.md's sections
//! as the workflow extracts them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_yaml::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ sits in the repository root")
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `cargo metadata --no-deps` of a manifest: (package name, license field) pairs.
fn licenses(manifest: &Path) -> Vec<(String, Option<String>)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", text(&out));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["license"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn every_crate_the_chart_and_the_images_declare_the_license_of_license() {
    let license = read("LICENSE");
    for line in [
        "Apache License",
        "Version 2.0, January 2004",
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "END OF TERMS AND CONDITIONS",
    ] {
        assert!(
            license.contains(line),
            "LICENSE lacks {line:?}: not the full Apache-2.0 text"
        );
    }
    assert!(
        license.len() > 11_000,
        "LICENSE is {} bytes: not the full text",
        license.len()
    );
    let spdx = "Apache-2.0";

    let mut packages = licenses(&root().join("Cargo.toml"));
    assert!(
        packages.len() >= 10,
        "the workspace has more packages: {packages:?}"
    );
    // Not a workspace member, but a crate of the repository all the same.
    packages.extend(licenses(&root().join("fuzz/Cargo.toml")));
    for (name, declared) in &packages {
        assert_eq!(
            declared.as_deref(),
            Some(spdx),
            "{name}: Cargo `license` must be {spdx} (LICENSE); use `license.workspace = true`"
        );
    }

    let chart = yaml("charts/hostrole-operator/Chart.yaml");
    assert_eq!(
        chart["annotations"]["artifacthub.io/license"].as_str(),
        Some(spdx),
        "charts/hostrole-operator/Chart.yaml: annotations.artifacthub.io/license"
    );
    let label = format!("org.opencontainers.image.licenses={spdx}");
    for file in ["images/Dockerfile", "images/build-oci.sh"] {
        let text = read(file);
        let found = text.matches("org.opencontainers.image.licenses=").count();
        assert!(found > 0, "{file} labels no license");
        assert_eq!(
            text.matches(&label).count(),
            found,
            "{file}: every image license label must be {spdx}"
        );
    }
}

/// The actionlint binary (scripts/tools/actionlint/build.sh builds it once per version).
fn actionlint() -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("scripts/tools/actionlint/build.sh"))
        .output()
        .expect("run scripts/tools/actionlint/build.sh");
    assert!(
        out.status.success(),
        "building actionlint failed (needs Go, see scripts/install-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn workflows() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(".github/workflows"))
        .expect(".github/workflows/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_workflows_pass_actionlint() {
    let bin = actionlint();
    // actionlint checks every `run:` script with shellcheck when it is on PATH, and silently
    // skips that part when it is not: scripts/install-deps.sh installs it, and CI must have it.
    let shellcheck = Command::new("shellcheck").arg("--version").output();
    if shellcheck.as_ref().map_or(true, |o| !o.status.success()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "shellcheck is missing (scripts/install-deps.sh installs it): actionlint would not check the run: scripts"
        );
        eprintln!("note: no shellcheck on PATH; actionlint checks the workflows without it");
    }
    let files = workflows();
    let names: BTreeSet<String> = files
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_str()?.to_string()))
        .collect();
    assert!(
        names.contains("release.yaml") && names.contains("ci.yaml"),
        "{names:?}"
    );
    let out = Command::new(&bin)
        .args(["-no-color", "-oneline"])
        .args(&files)
        .current_dir(root())
        .output()
        .expect("run actionlint");
    assert!(
        out.status.success(),
        "actionlint finds problems:\n{}",
        text(&out)
    );
}

#[test]
fn actionlint_fails_a_broken_workflow() {
    let bin = actionlint();
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join(".github/workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    // An input actions/checkout does not have, and an expression on an undefined context.
    std::fs::write(
        workflows.join("broken.yaml"),
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - uses: actions/checkout@v4\n        with:\n          fetch-dept: 1\n      - run: echo ${{ vars.REGISTRY }} ${{ matrix.arch }}\n",
    )
    .expect("write");
    let out = Command::new(&bin)
        .args(["-no-color", "-oneline", ".github/workflows/broken.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("run actionlint");
    let report = text(&out);
    assert!(!out.status.success(), "actionlint passed: {report}");
    assert!(report.contains("fetch-dept"), "{report}");
    assert!(
        report.contains("property \"arch\" is not defined"),
        "{report}"
    );
}

/// Every `run:` of a job, joined.
fn job_scripts(workflow: &Value, job: &str) -> String {
    workflow["jobs"][job]["steps"]
        .as_sequence()
        .unwrap_or_else(|| panic!("job {job} has no steps"))
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn job_actions(workflow: &Value, job: &str) -> Vec<String> {
    workflow["jobs"][job]["steps"]
        .as_sequence()
        .unwrap_or_else(|| panic!("job {job} has no steps"))
        .iter()
        .filter_map(|s| s["uses"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_release_workflow_publishes_every_artifact_and_names_no_registry() {
    let raw = read(".github/workflows/release.yaml");
    let wf: Value = serde_yaml::from_str(&raw).expect("release.yaml is YAML");
    assert!(
        wf["on"]["push"]["tags"]
            .as_sequence()
            .is_some_and(|t| !t.is_empty()),
        "release.yaml runs on tags"
    );
    let arches: BTreeSet<&str> = wf["jobs"]["images"]["strategy"]["matrix"]["arch"]
        .as_sequence()
        .expect("images matrix")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(arches, BTreeSet::from(["amd64", "arm64"]));
    assert!(
        job_scripts(&wf, "images").contains("images/build-oci.sh"),
        "images are built by images/build-oci.sh"
    );
    let publish = job_scripts(&wf, "publish");
    for needle in [
        "helm push",
        "oci://",
        "cosign sign --yes",
        "cosign attest",
        "syft scan",
        "krew-manifest.sh",
        "changelog-section.sh",
        "gh release create",
    ] {
        assert!(publish.contains(needle), "the publish job lacks {needle:?}");
    }
    let actions = job_actions(&wf, "publish");
    assert!(
        actions
            .iter()
            .any(|a| a.starts_with("sigstore/cosign-installer@")),
        "{actions:?}"
    );
    assert_eq!(
        wf["jobs"]["publish"]["permissions"]["id-token"].as_str(),
        Some("write"),
        "keyless signing needs the OIDC token"
    );
    // The registry is the repository's variable, never a host written here.
    assert_eq!(wf["env"]["REGISTRY"].as_str(), Some("${{ vars.REGISTRY }}"));
    for host in [
        "ghcr.io",
        "docker.io",
        "quay.io",
        "gcr.io",
        "pkg.dev",
        "amazonaws.com",
        "azurecr.io",
    ] {
        assert!(
            !raw.contains(host),
            "release.yaml names a registry ({host})"
        );
    }
}

#[test]
fn the_ci_workflow_runs_the_readme_test_command() {
    let wf = yaml(".github/workflows/ci.yaml");
    assert!(
        job_scripts(&wf, "test").contains("bash .ci/run"),
        "ci.yaml runs .ci/run"
    );
}

#[test]
fn the_krew_manifest_covers_exactly_the_platforms_the_workflow_builds() {
    let wf = yaml(".github/workflows/release.yaml");
    let built: BTreeSet<(String, String)> = wf["jobs"]["plugin"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .expect("plugin matrix")
        .iter()
        .map(|m| {
            (
                m["os"].as_str().expect("os").to_string(),
                m["arch"].as_str().expect("arch").to_string(),
            )
        })
        .collect();
    assert!(
        built.contains(&("linux".into(), "arm64".into())),
        "{built:?}"
    );

    // Archives as the workflow names them, with made-up contents.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sums = std::collections::BTreeMap::new();
    for (os, arch) in &built {
        let body = format!("archive {os} {arch}");
        std::fs::write(
            dir.path()
                .join(format!("kubectl-hostrole_{os}_{arch}.tar.gz")),
            &body,
        )
        .expect("write");
        sums.insert(
            (os.clone(), arch.clone()),
            hex::encode(Sha256::digest(&body)),
        );
    }
    let out = Command::new("bash")
        .arg(root().join("scripts/krew-manifest.sh"))
        .args(["v0.1.0"])
        .arg(dir.path())
        .env("REPO_URL", "https://example.invalid/hostrole")
        .output()
        .expect("run krew-manifest.sh");
    assert!(out.status.success(), "krew-manifest.sh: {}", text(&out));
    let manifest: Value = serde_yaml::from_slice(&out.stdout).expect("the manifest is YAML");
    assert_eq!(
        manifest["apiVersion"].as_str(),
        Some("krew.googlecontainertools.github.com/v1alpha2")
    );
    assert_eq!(manifest["kind"].as_str(), Some("Plugin"));
    assert_eq!(manifest["metadata"]["name"].as_str(), Some("hostrole"));
    assert_eq!(manifest["spec"]["version"].as_str(), Some("v0.1.0"));
    for field in ["homepage", "shortDescription", "description"] {
        assert!(
            manifest["spec"][field]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "spec.{field}"
        );
    }
    let mut listed = BTreeSet::new();
    for p in manifest["spec"]["platforms"]
        .as_sequence()
        .expect("platforms")
    {
        let labels = &p["selector"]["matchLabels"];
        let key = (
            labels["os"].as_str().expect("os").to_string(),
            labels["arch"].as_str().expect("arch").to_string(),
        );
        let (os, arch) = &key;
        assert_eq!(
            p["uri"].as_str(),
            Some(
                format!("https://example.invalid/hostrole/releases/download/v0.1.0/kubectl-hostrole_{os}_{arch}.tar.gz")
                    .as_str()
            )
        );
        assert_eq!(
            p["sha256"].as_str(),
            sums.get(&key).map(String::as_str),
            "{key:?}"
        );
        assert_eq!(p["bin"].as_str(), Some("kubectl-hostrole"));
        listed.insert(key);
    }
    assert_eq!(
        listed, built,
        "plugins/hostrole.yaml vs the plugin job's matrix"
    );

    // A platform's archive missing: no manifest with a placeholder or a wrong sum.
    let (os, arch) = built.iter().next().expect("a platform");
    std::fs::remove_file(
        dir.path()
            .join(format!("kubectl-hostrole_{os}_{arch}.tar.gz")),
    )
    .expect("rm");
    let out = Command::new("bash")
        .arg(root().join("scripts/krew-manifest.sh"))
        .args(["v0.1.0"])
        .arg(dir.path())
        .env("REPO_URL", "https://example.invalid/hostrole")
        .output()
        .expect("run krew-manifest.sh");
    assert!(!out.status.success(), "{}", text(&out));
}

fn changelog_section(changelog: Option<&Path>, version: &str) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/changelog-section.sh"))
        .arg(version);
    if let Some(file) = changelog {
        cmd.env("CHANGELOG", file);
    }
    cmd.output().expect("run changelog-section.sh")
}

#[test]
fn the_changelog_names_the_breaking_changes() {
    let changelog = read("CHANGELOG.md");
    assert!(
        changelog.starts_with("# Changelog\n"),
        "Keep a Changelog title"
    );
    assert!(changelog.contains("keepachangelog.com"), "says its format");
    let out = changelog_section(None, "Unreleased");
    assert!(out.status.success(), "{}", text(&out));
    let notes = String::from_utf8_lossy(&out.stdout);
    for needle in ["### Breaking", "### Added", "allowPlaintextAuth", "`hrole`"] {
        assert!(
            notes.contains(needle),
            "the Unreleased section lacks {needle:?}"
        );
    }
}

#[test]
fn release_notes_are_the_dated_section_of_the_tag_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("CHANGELOG.md");
    std::fs::write(
        &file,
        "# Changelog\n\n## [Unreleased]\n\n## [1.2.0] - 2026-12-01\n\n### Added\n\n- two\n\n## [1.1.0] - 2026-11-01\n\n- one\n\n## [1.0.0]\n\n- undated\n",
    )
    .expect("write");
    let out = changelog_section(Some(&file), "1.2.0");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "### Added\n\n- two\n");
    let out = changelog_section(Some(&file), "1.1.0");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "- one\n");
    // Empty, undated or missing: the workflow stops.
    for version in ["Unreleased", "1.0.0", "1.3.0", "1.2"] {
        let out = changelog_section(Some(&file), version);
        assert!(
            !out.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
