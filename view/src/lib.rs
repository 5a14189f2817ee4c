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
