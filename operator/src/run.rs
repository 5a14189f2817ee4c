//! Wiring: the controller and its watches, leader election, and `/metrics`, `/healthz`,
//! `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::{StreamExt, TryStreamExt};
use hostrole_api::HostRole;
use hostrole_api::access::{ObjectKind, USE_LABEL, USE_LABEL_VALUE};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Config, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};

use tracing::Instrument;

use crate::cache::Cache;
use crate::desired::{FIELD_MANAGER, NETWORK_LABEL, Settings};
use crate::health::WatchHealth;
use crate::metrics::Metrics;
use crate::reconcile::{Context, Error, error_policy, reconcile};
use crate::world::World;
use hostrole_agent_core::telemetry::shutdown_signal;

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot reach the Kubernetes API (kubeconfig or in-cluster config): {0}")]
    Client(#[source] kube::Error),
    #[error("cannot serve metrics and probes on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election on Lease {namespace}/{name} failed: {source}")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    #[error("lost the leader lease; exiting so that another replica takes over")]
    LostLeadership,
}

/// How to run the controller.
#[derive(Clone, Debug)]
pub struct Options {
    pub settings: Settings,
    /// Watch one namespace only; all namespaces when absent.
    pub namespace: Option<String>,
    pub metrics_addr: SocketAddr,
    /// Leader election: the Lease's namespace and name, and this replica's identity.
    pub leader_election: Option<LeaderElection>,
    /// Parallel reconciliations.
    pub concurrency: u16,
    /// Where to serve the topology view ([`crate::view`]); off when absent.
    pub view_addr: Option<SocketAddr>,
}

#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub namespace: String,
    pub lease: String,
    pub identity: String,
}

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    health: Arc<WatchHealth>,
    metrics: Metrics,
}

/// Runs the operator until SIGTERM/SIGINT.
pub async fn run(options: Options) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Client)?;
    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let health = Arc::new(WatchHealth::default());
    let state = HttpState {
        registry: Arc::new(registry),
        health: health.clone(),
        metrics: metrics.clone(),
    };
    let listener = tokio::net::TcpListener::bind(options.metrics_addr)
        .await
        .map_err(|source| RunError::Listen {
            addr: options.metrics_addr,
            source,
        })?;
    tracing::info!(addr = %options.metrics_addr, "serving /metrics, /healthz and /readyz");
    let http = tokio::spawn(async move {
        let app = Router::new()
            .route("/metrics", get(serve_metrics))
            // Liveness: the process answers. Not the API server's health: restarting does not
            // bring it back (see crate::health).
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(serve_ready))
            .with_state(state);
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });

    // The view watches HostRoles on its own (every replica, leader or not: a port-forward to
    // the Deployment may land on any).
    let view = options.view_addr.map(|addr| {
        let client = client.clone();
        let namespace = options.namespace.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::view::serve(client, namespace, addr, false).await {
                tracing::error!(error = %e, "the topology view stopped");
            }
        })
    });
    // A replica that is not the leader is ready: it serves metrics and waits its turn. The
    // leader is ready once its watches have listed, and not while they fail (crate::health).
    let work = async {
        match options.leader_election.clone() {
            None => {
                metrics.leader.set(1);
                run_controller(client, options, metrics, health).await;
                Ok(())
            }
            Some(le) => run_as_leader(client, options, metrics, health, le).await,
        }
    };
    // The controller stops on SIGTERM once its reconciles finish; but with the API server out of
    // reach it was seen to wait for its watches for minutes. The pod's grace period is 30 s.
    let deadline = async {
        shutdown_signal().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        result = work => result,
        _ = deadline => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "the controller did not stop within its grace period after SIGTERM; exiting");
            Ok(())
        }
    };
    http.abort();
    if let Some(view) = view {
        view.abort();
    }
    result
}

/// How long the controller may take to stop after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The field manager of one replica's writes to the Lease.
///
/// kube-lease-manager takes a free Lease with a server-side apply that is not forced, and relies
/// on the conflict between two field managers to let only one replica win. Replicas sharing one
/// manager would both "win" a race for a free Lease, and both reconcile (two leaders until the
/// next renewal). So each identity gets its own manager; an identity too long for the API's
/// 128-character limit is named by its digest instead.
pub fn lease_field_manager(identity: &str) -> String {
    const MAX: usize = 128;
    let plain = format!("{FIELD_MANAGER}-lease-{identity}");
    if plain.len() <= MAX && plain.chars().all(|c| c.is_ascii_graphic()) {
        return plain;
    }
    let digest = hex::encode(&Sha256::digest(identity.as_bytes())[..16]);
    format!("{FIELD_MANAGER}-lease-{digest}")
}

/// The Lease manager for one replica: a 15 s lease renewed 5 s before it ends, under the
/// replica's own field manager ([`lease_field_manager`]).
pub async fn lease_manager(client: Client, le: &LeaderElection) -> Result<LeaseManager, RunError> {
    LeaseManagerBuilder::new(client, &le.lease)
        .with_namespace(&le.namespace)
        .with_identity(&le.identity)
        .with_duration(15)
        .with_grace(5)
        .with_field_manager(lease_field_manager(&le.identity))
        .build()
        .await
        .map_err(|source| RunError::Lease {
            namespace: le.namespace.clone(),
            name: le.lease.clone(),
            source,
        })
}

async fn run_as_leader(
    client: Client,
    options: Options,
    metrics: Metrics,
    health: Arc<WatchHealth>,
    le: LeaderElection,
) -> Result<(), RunError> {
    let manager = lease_manager(client.clone(), &le).await?;
    let (mut leading, lease_task) = manager.watch().await;
    tracing::info!(lease = %le.lease, identity = %le.identity, "waiting for the leader lease");
    loop {
        if *leading.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { break },
            _ = shutdown_signal() => {
                lease_task.abort();
                return Ok(());
            }
        }
    }
    tracing::info!(identity = %le.identity, "became the leader");
    metrics.leader.set(1);
    let lost = async move {
        while leading.changed().await.is_ok() {
            if !*leading.borrow() {
                return;
            }
        }
    };
    let result = tokio::select! {
        _ = run_controller(client, options, metrics.clone(), health) => Ok(()),
        _ = lost => Err(RunError::LostLeadership),
    };
    metrics.leader.set(0);
    // Dropping the receiver ends the lease task, which releases the lease; do not let a slow
    // API server hold the process past its termination grace period.
    let abort = lease_task.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), lease_task)
        .await
        .is_err()
    {
        abort.abort();
    }
    result
}

async fn run_controller(
    client: Client,
    options: Options,
    metrics: Metrics,
    health: Arc<WatchHealth>,
) {
    health.leading();
    if !wait_for_api_server(&client, &health, &metrics).await {
        return;
    }
    let ns = options.namespace.as_deref();
    let (hostroles, statefulsets, services, configmaps, pods) = (
        scoped::<HostRole>(&client, ns),
        scoped::<StatefulSet>(&client, ns),
        scoped::<Service>(&client, ns),
        scoped::<ConfigMap>(&client, ns),
        scoped::<Pod>(&client, ns),
    );
    let managed =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    // The controller's own HostRole watch and cache, built here so that readiness sees its
    // initial list complete (`Store::wait_until_ready` cannot be awaited beside the controller:
    // of two waiters, kube-runtime 5.0 wakes only the last one).
    let listed = health.clone();
    let (hostrole_cache, hostrole_events) =
        Cache::fill(watcher(hostroles.clone(), watcher::Config::default()));
    let store = hostrole_cache.store().clone();
    let hostrole_events = hostrole_events
        .inspect_ok(move |event| {
            if matches!(event, watcher::Event::InitDone) && listed.synced() {
                tracing::info!("watches established: the HostRole cache is filled");
            }
        })
        .applied_objects();
    let controller = Controller::for_stream(hostrole_events, store.clone());
    metrics.watch_hostroles(store.clone());
    let watch_metrics = metrics.clone();
    let pod_store = store.clone();
    let config_map_store = store.clone();
    let namespace_store = store.clone();
    // The operator's own StatefulSets, Services and pods, cached by their managed-by label
    // (managed fields dropped: nothing reads them), so that reconciles read the cache instead of
    // the API server.
    let (sts_cache, sts_events) = Cache::fill(
        watcher(statefulsets, managed.clone())
            .default_backoff()
            .modify(drop_managed_fields),
    );
    let (service_cache, service_events) = Cache::fill(
        watcher(services, managed.clone())
            .default_backoff()
            .modify(drop_managed_fields),
    );
    let (pod_cache, pod_events) = Cache::fill(
        watcher(pods, managed.clone())
            .default_backoff()
            .modify(drop_managed_fields),
    );
    let mut context = Context::new(client.clone(), options.settings, metrics.clone(), recorder)
        .with_store(hostrole_cache)
        .with_cache(sts_cache)
        .with_cache(service_cache)
        .with_cache(pod_cache);
    // Serving every namespace: their labels, for namespace selectors in allowClientsFrom (one
    // namespace: a HostRole there sees no other, so no selector is ever asked).
    let namespaces = Api::<Namespace>::all(client.clone());
    let mut namespace_reflector = None;
    if ns.is_none() {
        let metadata = Api::<PartialObjectMeta<Namespace>>::all(client.clone());
        let (cache, stream) = Cache::fill(watcher(metadata, watcher::Config::default()));
        context = context.with_namespaces(cache);
        let stream = stream.default_backoff().applied_objects();
        let (health, metrics) = (health.clone(), metrics.clone());
        namespace_reflector = Some(tokio::spawn(async move {
            stream
                .for_each(|event| {
                    if let Err(e) = event {
                        watch_failed(&health, &metrics, &e);
                    }
                    async {}
                })
                .await;
        }));
    }
    let ctx = Arc::new(context);
    let uses_cache = ctx.uses.clone();
    let labelled_for_use =
        watcher::Config::default().labels(&format!("{USE_LABEL}={USE_LABEL_VALUE}"));
    let mut controller = controller
        // A HostRole that appears, changes or goes re-reconciles those that refer to it
        // (clients of its servers, peers of its index or network): no polling.
        .watches(
            hostroles,
            watcher::Config::default(),
            move |changed: HostRole| World::new(store.state()).dependents(&changed),
        )
        .owns_stream(sts_events.touched_objects())
        .owns_stream(service_events.touched_objects())
        // ConfigMaps are not cached: one labelled ConfigMap may hold a MiB of data, and anyone
        // who may create ConfigMaps in a watched namespace could make the operator hold many.
        .owns(configmaps.clone(), managed.clone())
        // A ConfigMap labelled for use, or no longer (it leaves the watch), wakes the HostRoles
        // that name it, and is asked about again.
        .watches(configmaps, labelled_for_use, move |cm: ConfigMap| {
            let (Some(ns), name) = (cm.namespace(), cm.name_any()) else {
                return Vec::new();
            };
            uses_cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .forget(&(ObjectKind::ConfigMap, ns.clone(), name.clone()));
            World::new(config_map_store.state()).users_of(ObjectKind::ConfigMap, &ns, &name)
        })
        // A host pod changes its HostRole's status, and the peer list of every HostRole in its
        // network.
        .watches_stream(pod_events.touched_objects(), move |pod: Pod| {
            let Some(ns) = pod.namespace() else {
                return Vec::new();
            };
            let mut refs = Vec::new();
            if let Some(instance) = pod.labels().get("app.kubernetes.io/instance") {
                refs.push(ObjectRef::<HostRole>::new(instance).within(&ns));
            }
            if let Some(network) = pod.labels().get(NETWORK_LABEL) {
                let world = World::new(pod_store.state());
                refs.extend(
                    world
                        .network_members(&ns, network)
                        .into_iter()
                        .map(ObjectRef::from_obj),
                );
            }
            refs
        });
    if ns.is_none() {
        // A namespace's labels may grant or withdraw consent (namespace selectors).
        controller = controller.watches(
            namespaces,
            watcher::Config::default(),
            move |namespace: Namespace| {
                World::new(namespace_store.state()).affected_by_namespace(&namespace.name_any())
            },
        );
    }
    controller
        .with_config(
            Config::default()
                .concurrency(options.concurrency)
                .debounce(Duration::from_millis(300)),
        )
        .graceful_shutdown_on(shutdown_signal())
        .run(traced_reconcile, traced_error_policy, ctx)
        .for_each(|result| {
            match result {
                Ok((obj, _)) => {
                    tracing::debug!(namespace = obj.namespace.as_deref().unwrap_or_default(), name = %obj.name, "reconciled")
                }
                // A watch (trigger stream) failed: the controller retries it with back-off.
                Err(controller::Error::QueueError(e)) => {
                    watch_failed(&health, &watch_metrics, &e);
                }
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
            async {}
        })
        .await;
    if let Some(task) = namespace_reflector {
        task.abort();
    }

    tracing::info!("controller stopped");
}

/// Counts a watch error and tells readiness.
/// Longest pause between two questions to an API server that does not answer yet.
const API_WAIT_MAX: Duration = Duration::from_secs(5);

/// Waits until the API server answers (`/version`, which every authenticated user may read),
/// asking one question at a time; `false` on SIGTERM/SIGINT. The watches start only then: started
/// while nothing listened, their seven concurrent failed requests left kube-client 5.0 working
/// off stale refused connects, one per watch retry, and a listener that appeared was first used
/// after about two minutes (`e2e/tests/observability.rs`, `readyz_follows_…`).
async fn wait_for_api_server(client: &Client, health: &WatchHealth, metrics: &Metrics) -> bool {
    let mut delay = Duration::from_millis(500);
    loop {
        match client.apiserver_version().await {
            Ok(_) => return true,
            Err(error) => {
                tracing::warn!(%error, retry_in = ?delay, "the API server does not answer; the watches start once it does");
                metrics.watch_errors.inc();
                health.watch_failed(
                    Instant::now(),
                    format!("the API server does not answer: {error}"),
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown_signal() => return false,
        }
        delay = (delay * 2).min(API_WAIT_MAX);
    }
}

fn watch_failed(health: &WatchHealth, metrics: &Metrics, error: &watcher::Error) {
    tracing::warn!(%error, "watch failed; retrying with back-off");
    metrics.watch_errors.inc();
    health.watch_failed(Instant::now(), error.to_string());
}

/// The span every line logged while reconciling one HostRole carries: its namespace and name
/// (kube's own span is filtered out with the `kube` target's logs).
fn reconcile_span(hr: &HostRole) -> tracing::Span {
    tracing::info_span!(
        "reconcile",
        namespace = %hr.namespace().unwrap_or_default(),
        name = %hr.name_any()
    )
}

fn traced_reconcile(
    hr: Arc<HostRole>,
    ctx: Arc<Context>,
) -> impl Future<Output = Result<Action, Error>> + Send + 'static {
    let span = reconcile_span(&hr);
    async move {
        let in_flight = ctx.metrics.in_flight.clone();
        in_flight.inc();
        let result = reconcile(hr, ctx).await;
        in_flight.dec();
        result
    }
    .instrument(span)
}

fn traced_error_policy(hr: Arc<HostRole>, error: &Error, ctx: Arc<Context>) -> Action {
    let _span = reconcile_span(&hr).entered();
    error_policy(hr, error, ctx)
}

/// An API over one namespace, or over all of them.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn serve_metrics(State(state): State<HttpState>) -> impl IntoResponse {
    state
        .metrics
        .watches_ready
        .set(i64::from(state.health.check(Instant::now()).is_ok()));
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("cannot encode metrics: {e}"),
        ),
    }
}

async fn serve_ready(State(state): State<HttpState>) -> impl IntoResponse {
    match state.health.check(Instant::now()) {
        Ok(()) => (StatusCode::OK, "ready".to_string()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
    }
}

/// Drops what a cached object carries only for the API server's bookkeeping.
fn drop_managed_fields<K: ResourceExt>(object: &mut K) {
    object.managed_fields_mut().clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_replica_writes_the_lease_under_its_own_field_manager() {
        assert_eq!(
            lease_field_manager("hostrole-operator-7d9f-abcde"),
            "hostrole-operator-lease-hostrole-operator-7d9f-abcde"
        );
        assert_ne!(lease_field_manager("a"), lease_field_manager("b"));
        // Too long for the API (128 characters), or not printable: named by a digest, still one
        // per identity.
        let long_a = format!("{}a", "x".repeat(200));
        let long_b = format!("{}b", "x".repeat(200));
        for id in [&long_a, &long_b, &"pod with spaces".to_owned()] {
            let m = lease_field_manager(id);
            assert!(
                m.len() <= 128 && m.chars().all(|c| c.is_ascii_graphic()),
                "{m}"
            );
        }
        assert_ne!(lease_field_manager(&long_a), lease_field_manager(&long_b));
    }
}
