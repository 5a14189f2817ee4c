//! The hostrole operator: turns HostRole resources into the Kubernetes objects that realise them.
//!
//! - [`desired`] and [`status`]: pure functions from a HostRole to its objects and its status;
//! - [`ownership`]: pure decisions on whose an existing object is (the operator writes only
//!   to its own);
//! - [`world`]: who depends on whom, and consent across namespaces; [`uses`]: which Secrets and
//!   ConfigMaps a HostRole may use (the API server's answers, cached);
//! - [`storage`]: which hosts' claims must grow when `storage` grows;
//! - [`reach`]: pure builders of what reaches a host from outside (cert-manager Certificates,
//!   the external Service, Gateway API routes, `status.endpoints`);
//! - [`reconcile`]: the thin layer that reads, applies, publishes events and writes status;
//! - [`selftest`]: what `helm test` runs (from the operator image);
//! - [`plugin`]: `kubectl hostrole status|matrix|logs` (the `kubectl-hostrole` binary);
//! - [`run`]: wiring of the controller, leader election and the HTTP endpoints;
//! - [`view`]: the live topology view over a watch of HostRoles ([`hostrole_view`] draws it;
//!   [`topology`] is its graph, re-exported for `matrix`).

pub mod cache;
pub mod desired;
pub mod diff;
pub mod health;
pub mod matrix;
pub mod metrics;
pub mod ownership;
pub mod plugin;
pub mod reach;
pub mod reconcile;
pub mod run;
pub mod selftest;
pub mod status;
pub mod storage;
pub mod uses;
pub mod view;
pub mod world;

pub use hostrole_view::topology;
