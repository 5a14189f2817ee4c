//! The live topology view of a cluster: [`hostrole_view::server`] over one watch of HostRoles.
//! The watch feeds a store; viewers get the graph over server-sent events whenever it changes,
//! so a hundred open pages cost the API server nothing more than one.
//!
//! It listens on loopback (reached with `kubectl port-forward`, or run on a laptop with
//! `hostrole-operator view` and the user's own kubeconfig). Whoever reaches it sees every
//! HostRole of the namespaces it watches, with their status: run in the operator, that is what
//! the operator may read; run with `hostrole-operator view`, what the user may.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use hostrole_api::HostRole;
use hostrole_view::server::EventRow;
pub use hostrole_view::server::{COALESCE, MAX_VIEWERS, Shared, Source, router};
use k8s_openapi::api::core::v1::Event as KubeEvent;
use kube::api::ListParams;
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::cache::Cache;

/// Events shown for a host's HostRole.
const MAX_EVENTS: usize = 20;

/// Why the view cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("cannot reach the Kubernetes API (kubeconfig or in-cluster config): {0}")]
    Client(#[source] kube::Error),
    #[error("cannot serve the view on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The HostRoles of a watch's store; a host's events read from the API server when asked.
#[derive(Clone)]
pub struct KubeSource {
    store: Store<HostRole>,
    /// For a host's events; none in tests without an API server.
    client: Option<Client>,
}

impl KubeSource {
    pub fn new(store: Store<HostRole>, client: Option<Client>) -> Self {
        KubeSource { store, client }
    }
}

impl Source for KubeSource {
    fn hostroles(&self) -> Vec<Arc<HostRole>> {
        self.store.state()
    }

    async fn events(&self, namespace: &str, name: &str) -> Result<Vec<EventRow>, String> {
        match &self.client {
            Some(client) => events_of(client, namespace, name).await,
            None => Err("no API server to ask".to_string()),
        }
    }
}

/// Watches the HostRoles of `namespace` (all when absent) with `client` and serves the view on
/// `addr` until the process stops; with `open`, opens it in the user's browser once it serves.
pub async fn serve(
    client: Client,
    namespace: Option<String>,
    addr: SocketAddr,
    open: bool,
) -> Result<(), ViewError> {
    let api: Api<HostRole> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (cache, events) = Cache::fill(watcher(api, watcher::Config::default()).default_backoff());
    let (tx, changes) = watch::channel(0u64);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(_) => {
                    tx.send_modify(|n| *n += 1);
                }
                Err(e) => tracing::warn!(error = %e, "the view's HostRole watch failed; retrying"),
            }
        }
    });
    // Listen first, so that a taken port is said at once; serve once the first list is in.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ViewError::Listen { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %local, "listing HostRoles for the topology view");
    let store = cache.ready().await.clone();
    tracing::info!(addr = %local, "serving the topology view");
    let url = format!("http://{local}/");
    println!("hostrole view: {url}");
    if open && let Err(e) = hostrole_view::open_browser(&url) {
        eprintln!("cannot open a browser ({e}): open {url} yourself");
    }
    let app = router(Shared::new(KubeSource::new(store, Some(client)), changes));
    hostrole_view::server::serve(listener, app, tokio_util::sync::CancellationToken::new()).await;
    Ok(())
}

/// The HostRole's latest events (type, reason, message, time), newest first.
async fn events_of(client: &Client, ns: &str, name: &str) -> Result<Vec<EventRow>, String> {
    let api: Api<KubeEvent> = Api::namespaced(client.clone(), ns);
    let selector = format!("involvedObject.kind=HostRole,involvedObject.name={name}");
    let list = api
        .list(&ListParams::default().fields(&selector))
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 403 => {
                "events are not readable with this identity (RBAC)".to_string()
            }
            other => format!("cannot list events: {other}"),
        })?;
    let mut events: Vec<EventRow> = list
        .items
        .into_iter()
        .map(|e| EventRow {
            time: e
                .last_timestamp
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.map(|t| t.0.to_string()))
                .unwrap_or_default(),
            type_: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            message: e.message.unwrap_or_default(),
        })
        .collect();
    events.sort_by(|a, b| b.time.cmp(&a.time));
    events.truncate(MAX_EVENTS);
    Ok(events)
}
