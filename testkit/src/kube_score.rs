//! kube-score (built and cached by `operator/tests/tools/kube-score/build.sh`) on rendered
//! objects, and the lists of findings the project accepts with a reason
//! (`operator/tests/tools/kube-score/*.tsv`). Used by the operator's test of the host objects
//! and the e2e test of the chart.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use crate::repo_root;

/// One CRITICAL finding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// The check's id (`container-resources`, …).
    pub check: String,
    /// The object's kind.
    pub kind: String,
    pub object: String,
    /// What kube-score says, its comments' summaries joined.
    pub said: String,
}

/// The kube-score binary, built on first use.
pub fn binary() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join("operator/tests/tools/kube-score/build.sh"))
        .output()
        .expect("run kube-score/build.sh");
    assert!(
        out.status.success(),
        "kube-score build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// kube-score's CRITICAL findings on the objects of `yaml` (grades: 1 critical, 5 warning,
/// 7 almost ok, 10 ok; skipped checks are not findings).
pub fn critical_findings(yaml: &str) -> Vec<Finding> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, yaml).expect("write the objects");
    let out = Command::new(binary())
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
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
    let mut found = Vec::new();
    for object in &scored {
        for check in object["checks"].as_array().into_iter().flatten() {
            if check["skipped"] == true || check["grade"].as_i64() != Some(1) {
                continue;
            }
            let said: Vec<&str> = check["comments"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["summary"].as_str())
                .collect();
            found.push(Finding {
                check: text(&check["check"]["id"]),
                kind: text(&object["type_meta"]["kind"]),
                object: text(&object["object_name"]),
                said: said.join("; "),
            });
        }
    }
    found
}

/// The accepted findings of a list (a path from the repository root): `check-id<TAB>kind<TAB>why`
/// lines, `#` comments; each line must give its reason.
pub fn accepted(list: &str) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join(list)).expect("accepted list");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert!(
                cols.len() == 3 && !cols[2].trim().is_empty(),
                "{list}: `check-id<TAB>kind<TAB>why` expected: {l}"
            );
            (cols[0].to_string(), cols[1].to_string())
        })
        .collect()
}

/// Checks `found` against the list `list`: every finding is accepted there, and every line there
/// still matches a finding of `found` (a fixed finding must leave the list).
pub fn assert_explained(found: &[Finding], list: &str) {
    let accepted = accepted(list);
    let unexplained: Vec<&Finding> = found
        .iter()
        .filter(|f| !accepted.contains(&(f.check.clone(), f.kind.clone())))
        .collect();
    assert!(
        unexplained.is_empty(),
        "kube-score findings that {list} does not explain (fix them, or say why there): {unexplained:#?}"
    );
    let seen: BTreeSet<(String, String)> = found
        .iter()
        .map(|f| (f.check.clone(), f.kind.clone()))
        .collect();
    let stale: Vec<_> = accepted.difference(&seen).collect();
    assert!(
        stale.is_empty(),
        "{list} explains findings kube-score no longer reports: {stale:?}"
    );
}
