//! The HostRole API shared by the operator and the agent: the custom resource and its schema
//! rules, manifest loading for standalone use, and [`render`], the one translator from a
//! HostRole to what its agent runs (the configuration types themselves are `hostrole-config`).

pub mod access;
pub mod duration;
pub mod hostrole;
pub mod manifest;
pub mod quantity;
pub mod render;
pub mod rules;
pub mod target;

pub use hostrole::*;

/// API group of the HostRole resource.
pub const GROUP: &str = "hostrole.dev";
/// API version of the HostRole resource.
pub const VERSION: &str = "v1alpha1";
