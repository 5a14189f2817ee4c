//! The test kit shared by the agent's role tests (`agent/tests/`) and the e2e tests (`e2e/`):
//! one copy of what each used to carry its own of.
//!
//! - [`free_port`]: a loopback port below the ephemeral range for a server a test starts;
//! - [`Proc`]: a process started by a test, its output in files, signalled and stopped by pid,
//!   killed when dropped (also when the test fails);
//! - [`wait_for`], [`wait_until`], [`eventually`]: waiting for a condition, always with a bound
//!   and a message naming what did not happen;
//! - [`TempManifest`], [`with_free_ports`]: manifests written to a temporary directory, and
//!   shipped examples moved onto free ports;
//! - [`http`]: curl with a time limit, and its responses parsed;
//! - [`mail`]: repeated deliveries with swaks, and a Maildir read the same way by every test;
//! - [`kube_score`]: kube-score's critical findings and the lists that accept some with a reason.
//!
//! Nothing here knows the agent's binary: `CARGO_BIN_EXE_hostrole-agent` exists only inside the
//! agent's own test targets, which pass it in.

pub mod browser;
pub mod http;
pub mod kube_score;
pub mod mail;
mod manifest;
mod port;
mod process;
mod wait;

pub use manifest::{TempManifest, with_free_ports};
pub use port::{free_consecutive_ports, free_port};
pub use process::{Proc, signal};
pub use tempfile::{TempDir, tempdir};
pub use wait::{eventually, wait_for, wait_until};

/// The repository root (the workspace this crate belongs to).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ sits in the repository root")
        .to_path_buf()
}

/// Writes, in `dir`, a kubeconfig whose API server refuses every connection (port 1 on
/// loopback, where nothing listens), and returns its path: for a process that must cope with
/// an API server out of reach.
pub fn unreachable_kubeconfig(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\n\
         users: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n\
         current-context: c\n",
    )
    .expect("write the kubeconfig");
    path
}
