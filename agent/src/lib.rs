//! The hostrole agent: one binary in every host pod (or on a laptop) that starts the services of
//! the host's roles.
//!
//! - [`supervisor`] starts the roles a configuration names and stops them on SIGTERM; [`roles`]
//!   is the one place that names every role;
//! - [`admin`] serves `/healthz`, `/readyz` and `/metrics`;
//! - [`web`] and [`file`] are the HTTP roles served from this crate; the mail role is
//!   `hostrole-mail`, the index and peer roles `hostrole-p2p`, the client role
//!   `hostrole-clients`; what they share (the `Role` trait, listeners, metrics, guard, users) is
//!   `hostrole-agent-core`;
//! - [`standalone`] runs a HostRole manifest on this machine through the one translator
//!   (`hostrole_api::render`), for `hostrole-agent up`; with several hosts, [`hosts`] runs
//!   them in one process and serves the topology view over them ([`overview`] is their status).

pub mod admin;
pub mod config;
pub mod file;
pub mod hosts;
pub mod overview;
pub mod roles;
pub mod standalone;
pub mod supervisor;
pub mod web;
