//! The network as a picture. [`topology`] turns HostRoles (spec and status) into a graph and
//! exports it (JSON, DOT, SVG); [`server`] serves the live view that draws it, over any
//! [`server::Source`] of HostRoles: the operator's watch cache in a cluster, the running hosts
//! of `hostrole-agent up` on a machine.
//!
//! Its tests drive it with real sources: `operator/tests/topology.rs` and `view.rs` (the
//! examples with a cluster's status, Graphviz, the JSON schema, Chromium) and
//! `agent/tests/it/up_view.rs` (running agents, Chromium).

pub mod server;
pub mod topology;

/// Opens `url` in the user's browser: `$BROWSER` when set, else the desktop's opener
/// (`xdg-open`; `open` on macOS). It is not waited for; a failure to start it is returned, for
/// the caller to print the URL instead.
pub fn open_browser(url: &str) -> std::io::Result<()> {
    let program = std::env::var_os("BROWSER")
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| {
            if cfg!(target_os = "macos") {
                "open".into()
            } else {
                "xdg-open".into()
            }
        });
    std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|_| ())
}
