//! What the supervisor needs of every role: a role whose listeners are bound, that serves until
//! told to stop and then finishes what is in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A role whose listeners are bound.
pub trait Role: Send {
    /// The role's name in logs, metrics and readiness.
    fn name(&self) -> &'static str;
    /// Each listener: (protocol, address).
    fn addresses(&self) -> Vec<(&'static str, SocketAddr)>;
    /// Serves until `stop` is cancelled, then finishes in-flight work within `grace`.
    fn run(
        self: Box<Self>,
        stop: CancellationToken,
        grace: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}
