//! The thin layer that talks to the API server: read what exists, apply what the pure builders
//! want (only when it differs), publish events on transitions and write status.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hostrole_api::{HostRole, HostRoleStatus};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, ObjectReference, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::desired::{
    self, APPLIED_HASH_ANNOTATION, Desired, FIELD_MANAGER, NETWORK_LABEL, Names, NetworkObjects,
    Settings,
};
use crate::diff::is_subset;
use crate::metrics::Metrics;
use crate::status::{self, CLIENTS_HEALTHY, DEGRADED, Observed, READY};
use crate::world::World;

/// How often a HostRole is looked at again when nothing happens (reads only).
const RESYNC: Duration = Duration::from_secs(300);
/// Back-off after a failure: doubles from the first step up to the cap, with jitter.
const BACKOFF_FIRST: Duration = Duration::from_secs(2);
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// Errors of one reconciliation; each variant names its metric reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {verb} {kind} {namespace}/{name}: {source}")]
    Api {
        verb: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("cannot encode {kind} {name}: {source}")]
    Encode {
        kind: &'static str,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the HostRole has no {0}")]
    MissingField(&'static str),
    #[error("cannot draw random bytes for a network secret: {0}")]
    Random(String),
}

impl Error {
    /// The API server refused a StatefulSet update because it touches a field that cannot
    /// change (volumeClaimTemplates, selector, serviceName).
    fn is_immutable_statefulset_change(&self) -> bool {
        match self {
            Error::Api {
                kind: "StatefulSet",
                source,
                ..
            } => match source.as_ref() {
                kube::Error::Api(status) => {
                    status.code == 422
                        && status
                            .message
                            .contains("updates to statefulset spec for fields other than")
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// A CamelCase reason, used as the `reason` label of the error metric.
    pub fn metric_reason(&self) -> String {
        match self {
            Error::Api { verb, kind, .. } => format!("{}{kind}Failed", capitalize(verb)),
            Error::Encode { kind, .. } => format!("Encode{kind}Failed"),
            Error::MissingField(_) => "InvalidObject".into(),
            Error::Random(_) => "RandomFailed".into(),
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Metrics,
    pub recorder: Recorder,
    /// Every HostRole the controller watches, to resolve references between them.
    pub hostroles: Option<Store<HostRole>>,
    failures: Mutex<HashMap<(String, String), u32>>,
    /// Network Secrets known to exist with the owners last applied (namespace, name) → digest,
    /// so that an idle operator does not write them again.
    network_secrets: Mutex<HashMap<(String, String), String>>,
}

impl Context {
    pub fn new(client: Client, settings: Settings, metrics: Metrics, recorder: Recorder) -> Self {
        Self {
            client,
            settings,
            metrics,
            recorder,
            hostroles: None,
            failures: Mutex::new(HashMap::new()),
            network_secrets: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves references against the controller's cache of HostRoles.
    pub fn with_store(mut self, store: Store<HostRole>) -> Self {
        self.hostroles = Some(store);
        self
    }

    fn world(&self) -> World {
        self.hostroles
            .as_ref()
            .map(|s| World::new(s.state()))
            .unwrap_or_default()
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), u32>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reconciles one HostRole.
pub async fn reconcile(hr: Arc<HostRole>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&hr, &ctx).await;
    ctx.metrics.reconciled(started.elapsed());
    match &result {
        Ok(_) => {
            ctx.failures().remove(&key(&hr));
        }
        Err(e) => {
            publish(
                &ctx,
                &hr,
                EventType::Warning,
                "ReconcileFailed",
                "Reconcile",
                e.to_string(),
                None,
            )
            .await;
        }
    }
    result
}

/// Decides when to try again after a failure: exponential back-off with jitter, per HostRole.
pub fn error_policy(hr: Arc<HostRole>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(&error.metric_reason());
    let attempt = {
        let mut failures = ctx.failures();
        let n = failures.entry(key(&hr)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(attempt, fastrand::f64());
    tracing::warn!(hostrole = %hr.name_any(), %error, attempt, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The delay before attempt `attempt` (1-based), with `jitter` in [0, 1) spreading it by ±20%.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let exp = BACKOFF_FIRST.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(BACKOFF_CAP);
    capped.mul_f64(0.8 + 0.4 * jitter)
}

fn key(hr: &HostRole) -> (String, String) {
    (hr.namespace().unwrap_or_default(), hr.name_any())
}

async fn reconcile_inner(hr: &HostRole, ctx: &Context) -> Result<Action, Error> {
    if hr.meta().deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the children.
        return Ok(Action::await_change());
    }
    let name = hr
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingField("name"))?;
    let ns = hr
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingField("namespace"))?;
    let client = ctx.client.clone();
    if let Some(store) = &ctx.hostroles {
        // References resolve against every HostRole, so wait for the first full list: an
        // early reconcile would report a server that exists as missing.
        let _ = store.wait_until_ready().await;
    }

    let mut failure = None;
    let mut apply_error = None;
    let mut problems = Vec::new();
    let mut network = None;
    let stateful_set = match desired::desired(hr, &ctx.settings, &ctx.world()) {
        Ok(want) => {
            problems = want.problems.clone();
            network = hr.spec.peer.as_ref().map(|p| p.network.clone());
            match apply_all(hr, ctx, &ns, want).await {
                Ok(sts) => Some(sts),
                Err(e) => {
                    failure = Some(("ApplyFailed".to_string(), e.to_string()));
                    apply_error = Some(e);
                    Api::<StatefulSet>::namespaced(client.clone(), &ns)
                        .get_opt(&Names::stateful_set(&name))
                        .await
                        .map_err(|e| api_error("get", "StatefulSet", &ns, &name, e))?
                }
            }
        }
        Err(spec_error) => {
            failure = Some((spec_error.reason().to_string(), spec_error.to_string()));
            None
        }
    };

    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels(&desired::selector_string(&name)))
        .await
        .map_err(|e| api_error("list", "Pod", &ns, &name, e))?
        .items;
    let network_pods = match &network {
        Some(network) => {
            Api::<Pod>::namespaced(client.clone(), &ns)
                .list(&ListParams::default().labels(&format!("{NETWORK_LABEL}={network}")))
                .await
                .map_err(|e| api_error("list", "Pod", &ns, &name, e))?
                .items
        }
        None => Vec::new(),
    };
    let observed = Observed {
        stateful_set: stateful_set.as_ref(),
        pods: &pods,
        failure,
        problems: &problems,
        network_pods: &network_pods,
    };
    let now = Time(Timestamp::now());
    let new_status = status::status(hr, &observed, &now);
    if hr.status.as_ref() != Some(&new_status) {
        write_status(hr, ctx, &ns, &name, &new_status).await?;
        publish_transitions(ctx, hr, hr.status.as_ref(), &new_status).await;
    }
    match apply_error {
        Some(e) => Err(e),
        None => Ok(Action::requeue(RESYNC)),
    }
}

/// Applies every desired object and removes those the HostRole no longer needs (the Service
/// when no server role is left, the reporting ServiceAccount when no client is, …).
/// Returns the live StatefulSet.
async fn apply_all(
    hr: &HostRole,
    ctx: &Context,
    ns: &str,
    want: Desired,
) -> Result<StatefulSet, Error> {
    let client = &ctx.client;
    let name = hr.name_any();
    apply(
        hr,
        ctx,
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        want.config_map,
    )
    .await?;
    let services = Api::<Service>::namespaced(client.clone(), ns);
    apply(hr, ctx, &services, want.headless_service).await?;
    apply_or_delete(hr, ctx, &services, want.service, &Names::service(&name)).await?;
    apply_or_delete(
        hr,
        ctx,
        &Api::<ServiceAccount>::namespaced(client.clone(), ns),
        want.service_account,
        &Names::service_account(&name),
    )
    .await?;
    apply_or_delete(
        hr,
        ctx,
        &Api::<RoleBinding>::namespaced(client.clone(), ns),
        want.role_binding,
        &Names::role_binding(&name),
    )
    .await?;
    apply_or_delete(
        hr,
        ctx,
        &Api::<NetworkPolicy>::namespaced(client.clone(), ns),
        want.network_policy,
        &Names::network_policy(&name),
    )
    .await?;
    if let Some(network) = want.network {
        ensure_network_secret(hr, ctx, ns, &network).await?;
        apply(hr, ctx, &services, network.service).await?;
    }
    let sts = Api::<StatefulSet>::namespaced(client.clone(), ns);
    match apply(hr, ctx, &sts, want.stateful_set.clone()).await {
        Err(e) if e.is_immutable_statefulset_change() => {
            // A role that gains or loses storage changes volumeClaimTemplates, which a
            // StatefulSet cannot change. Delete it but keep its pods and claims (orphan), then
            // apply the new one: it adopts the pods and rolls them; the data stays.
            let name = Names::stateful_set(&hr.name_any());
            tracing::info!(hostrole = %hr.name_any(), "recreating the StatefulSet: its claim templates changed");
            sts.delete(&name, &DeleteParams::orphan())
                .await
                .map_err(|e| api_error("delete", "StatefulSet", ns, &name, e))?;
            ctx.metrics.wrote("StatefulSet", "delete");
            wait_gone(&sts, &name, ns).await?;
            apply(hr, ctx, &sts, want.stateful_set).await
        }
        other => other,
    }
}

/// Applies an optional object, or deletes it (if this HostRole owns it) when no longer wanted.
async fn apply_or_delete<K>(
    hr: &HostRole,
    ctx: &Context,
    api: &Api<K>,
    want: Option<K>,
    name: &str,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>
        + k8s_openapi::Resource
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    match want {
        Some(object) => apply(hr, ctx, api, object).await.map(|_| ()),
        None => delete_owned(hr, ctx, api, name).await,
    }
}

/// The network's shared secret: created once with random bytes (never rewritten, so peers keep
/// agreeing), then its owners kept in step with the network's members by a metadata-only apply.
/// The operator never reads Secrets; it remembers what it applied.
async fn ensure_network_secret(
    hr: &HostRole,
    ctx: &Context,
    ns: &str,
    network: &NetworkObjects,
) -> Result<(), Error> {
    let name = network.secret_name.clone();
    let labels = network.service.metadata.labels.clone();
    let digest = hex::encode(
        &Sha256::digest(
            serde_json::to_vec(&(&network.owners, &labels)).map_err(|source| Error::Encode {
                kind: "Secret",
                name: name.clone(),
                source,
            })?,
        )[..8],
    );
    let key = (ns.to_string(), name.clone());
    if ctx
        .network_secrets
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        == Some(&digest)
    {
        return Ok(());
    }
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), ns);
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.to_string()),
            labels: labels.clone(),
            owner_references: Some(network.owners.clone()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(std::collections::BTreeMap::from([(
            hostrole_api::render::NETWORK_SECRET_KEY.to_string(),
            hex::encode(bytes),
        )])),
        ..Default::default()
    };
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match secrets.create(&params, &secret).await {
        Ok(created) => {
            ctx.metrics.wrote("Secret", "create");
            publish(
                ctx,
                hr,
                EventType::Normal,
                "Created",
                "Apply",
                format!(
                    "Created Secret {name}: the shared secret of peer network {}",
                    network.network
                ),
                Some(created.object_ref(&())),
            )
            .await;
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let patch = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": labels,
                    "ownerReferences": network.owners,
                },
            });
            secrets
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
                .map_err(|e| api_error("apply", "Secret", ns, &name, e))?;
            ctx.metrics.wrote("Secret", "apply");
        }
        Err(e) => return Err(api_error("create", "Secret", ns, &name, e)),
    }
    ctx.network_secrets
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, digest);
    Ok(())
}

/// Waits (briefly) until an object deleted with orphan propagation is gone.
async fn wait_gone(api: &Api<StatefulSet>, name: &str, ns: &str) -> Result<(), Error> {
    for _ in 0..50 {
        let current = api
            .get_opt(name)
            .await
            .map_err(|e| api_error("get", "StatefulSet", ns, name, e))?;
        if current.is_none() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Server-side applies `desired` unless the live object already holds it.
async fn apply<K>(hr: &HostRole, ctx: &Context, api: &Api<K>, mut desired: K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()>
        + k8s_openapi::Resource
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let kind = <K as k8s_openapi::Resource>::KIND;
    let name = desired.name_any();
    let ns = desired.namespace().unwrap_or_default();
    let encode = |source| Error::Encode {
        kind,
        name: name.clone(),
        source,
    };
    let hash = hex::encode(&Sha256::digest(serde_json::to_vec(&desired).map_err(encode)?)[..8]);
    desired
        .annotations_mut()
        .insert(APPLIED_HASH_ANNOTATION.into(), hash.clone());

    let current = api
        .get_opt(&name)
        .await
        .map_err(|e| api_error("get", kind, &ns, &name, e))?;
    if let Some(current) = &current {
        let same_hash = current.annotations().get(APPLIED_HASH_ANNOTATION) == Some(&hash);
        let want = serde_json::to_value(&desired).map_err(encode)?;
        let have = serde_json::to_value(current).map_err(encode)?;
        if same_hash && is_subset(&want, &have) {
            return Ok(current.clone());
        }
    }
    let applied = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await
        .map_err(|e| api_error("apply", kind, &ns, &name, e))?;
    ctx.metrics.wrote(kind, "apply");
    let reason = if current.is_some() {
        "Updated"
    } else {
        "Created"
    };
    tracing::info!(hostrole = %hr.name_any(), kind, object = %name, reason, "applied");
    publish(
        ctx,
        hr,
        EventType::Normal,
        reason,
        "Apply",
        format!("{reason} {kind} {name}"),
        Some(applied.object_ref(&())),
    )
    .await;
    Ok(applied)
}

/// Deletes an object the HostRole owns, if it exists and is owned by it.
async fn delete_owned<K>(
    hr: &HostRole,
    ctx: &Context,
    api: &Api<K>,
    name: &str,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + k8s_openapi::Resource + DeserializeOwned + Clone + Debug,
{
    let kind = <K as k8s_openapi::Resource>::KIND;
    let ns = hr.namespace().unwrap_or_default();
    let Some(current) = api
        .get_opt(name)
        .await
        .map_err(|e| api_error("get", kind, &ns, name, e))?
    else {
        return Ok(());
    };
    let uid = hr.uid();
    if !current
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == uid.as_ref())
    {
        return Ok(());
    }
    api.delete(name, &DeleteParams::background())
        .await
        .map_err(|e| api_error("delete", kind, &ns, name, e))?;
    ctx.metrics.wrote(kind, "delete");
    publish(
        ctx,
        hr,
        EventType::Normal,
        "Deleted",
        "Delete",
        format!("Deleted {kind} {name}: the HostRole no longer needs it"),
        Some(current.object_ref(&())),
    )
    .await;
    Ok(())
}

async fn write_status(
    hr: &HostRole,
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &HostRoleStatus,
) -> Result<(), Error> {
    let patch = serde_json::json!({
        "apiVersion": HostRole::api_version(&()),
        "kind": HostRole::kind(&()),
        "status": status,
    });
    Api::<HostRole>::namespaced(ctx.client.clone(), ns)
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| api_error("patch", "HostRoleStatus", ns, name, e))?;
    ctx.metrics.wrote("HostRole", "status");
    tracing::debug!(hostrole = %hr.name_any(), ready = status.ready_hosts, "status written");
    Ok(())
}

/// Events on transitions: `Ready` when the HostRole becomes ready, `NotReady` when it stops
/// being ready, `Degraded` when it becomes degraded and `Recovered` when that ends. A new
/// HostRole that is simply not ready yet says nothing.
async fn publish_transitions(
    ctx: &Context,
    hr: &HostRole,
    old: Option<&HostRoleStatus>,
    new: &HostRoleStatus,
) {
    let events = [
        (READY, "True", EventType::Normal, "Ready"),
        (READY, "False", EventType::Warning, "NotReady"),
        (DEGRADED, "True", EventType::Warning, "Degraded"),
        (DEGRADED, "False", EventType::Normal, "Recovered"),
        (
            CLIENTS_HEALTHY,
            "False",
            EventType::Warning,
            "ClientsFailing",
        ),
        (CLIENTS_HEALTHY, "True", EventType::Normal, "ClientsHealthy"),
    ];
    for (type_, to, event_type, reason) in events {
        let before = status::condition(old, type_).map(|c| c.status.as_str());
        let Some(after) = status::condition(Some(new), type_) else {
            continue;
        };
        let entered = before != Some(to) && after.status == to;
        // Leaving a good state needs a state before it; entering Ready or Degraded never does.
        let worth_saying =
            matches!(reason, "Ready" | "Degraded" | "ClientsFailing") || before.is_some();
        if entered && worth_saying {
            let note = format!("{}: {}", after.reason, after.message);
            publish(ctx, hr, event_type, reason, "Status", note, None).await;
        }
    }
}

async fn publish(
    ctx: &Context,
    hr: &HostRole,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
    secondary: Option<ObjectReference>,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary,
    };
    if let Err(e) = ctx.recorder.publish(&event, &hr.object_ref(&())).await {
        tracing::warn!(hostrole = %hr.name_any(), error = %e, "cannot publish event");
    } else {
        ctx.metrics.wrote("Event", "create");
    }
}

fn api_error(
    verb: &'static str,
    kind: &'static str,
    ns: &str,
    name: &str,
    source: kube::Error,
) -> Error {
    Error::Api {
        verb,
        kind,
        namespace: ns.to_string(),
        name: name.to_string(),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(2, 0.5), Duration::from_secs(4));
        assert_eq!(backoff(5, 0.5), Duration::from_secs(32));
        assert_eq!(backoff(40, 0.5), BACKOFF_CAP);
        assert!(backoff(3, 0.0) < backoff(3, 0.99));
        assert!(backoff(3, 0.0) >= Duration::from_millis(6400));
    }

    #[test]
    fn error_reasons_read_as_metric_labels() {
        let e = Error::MissingField("name");
        assert_eq!(e.metric_reason(), "InvalidObject");
        let e = Error::Encode {
            kind: "ConfigMap",
            name: "x".into(),
            source: serde_json::from_str::<u8>("x").unwrap_err(),
        };
        assert_eq!(e.metric_reason(), "EncodeConfigMapFailed");
        assert_eq!(capitalize("apply"), "Apply");
    }
}
