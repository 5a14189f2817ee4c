//! The HostRole API shared by the operator and the agent: the custom resource and its schema
//! rules, the agent configuration rendered from it, and manifest loading for standalone use.

pub mod agent;
pub mod duration;
pub mod hostrole;
pub mod manifest;
pub mod quantity;
pub mod rules;
pub mod target;

pub use hostrole::*;

/// API group of the HostRole resource.
pub const GROUP: &str = "hostrole.dev";
/// API version of the HostRole resource.
pub const VERSION: &str = "v1alpha1";
