//! What every role of the agent shares, and nothing role-specific: the [`Role`] trait the
//! supervisor runs, the bounded HTTP listener ([`net`]), metrics with typed labels
//! ([`metrics`]), the path guard ([`guard`]), accounts and password checks ([`users`]), atomic
//! file writes ([`fsutil`]), TLS that follows a rotated certificate ([`tls`]), and logs and the
//! stop signal ([`telemetry`], shared with the operator). Role crates depend on this and on `hostrole-config`; nothing here depends on a
//! role.

pub mod backoff;
pub mod fsutil;
pub mod guard;
pub mod metrics;
pub mod net;
mod role;
pub mod telemetry;
pub mod tls;
pub mod users;

pub use role::Role;
