//! The thin layer that talks to the API server: read what exists, apply what the pure builders
//! want (only when it differs), publish events on transitions and write status.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hostrole_api::{HostRole, HostRoleStatus};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, ObjectReference, PersistentVolumeClaim, Pod, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams, Preconditions,
};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::cache::{Cache, Caches, Lookup, lookup};
use crate::desired::{
    self, APPLIED_HASH_ANNOTATION, Desired, FIELD_MANAGER, NETWORK_LABEL, Names, NetworkObjects,
    Settings,
};
use crate::diff::is_subset;
use crate::metrics::{Metrics, ReadSource};
use crate::ownership::{
    self, Answer, Claim, Conflict, NAME_CONFLICT, Next, Owner, Request, Verdict, conflicts_message,
};
use crate::reach::{self, Certificate, HttpRoute, TcpRoute};
use crate::status::{self, CLIENTS_HEALTHY, DEGRADED, Observed, READY};
use crate::storage;
use crate::uses::{self, UseCache};
use crate::world::World;
use hostrole_api::render::{Problem, ProblemReason};
use hostrole_api::{certificate_name, issued_secret_name};

/// How often a HostRole is looked at again when nothing happens (reads only).
const RESYNC: Duration = Duration::from_secs(300);
/// How soon a HostRole blocked by a name conflict looks again (foreign objects are not watched).
const CONFLICT_RETRY: Duration = Duration::from_secs(30);
/// Back-off after a failure: doubles from the first step up to the cap, with jitter.
const BACKOFF_FIRST: Duration = Duration::from_secs(2);
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// How long a status change that is only progress detail ([`status::urgent`]) waits before it is
/// written: while hosts start, their details change several times in a few seconds (pods made,
/// scheduled, started), and an urgent change (a host ready) within the wait carries them along
/// in one write.
const STATUS_DEFER: Duration = Duration::from_secs(2);

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
    #[error(
        "the API server accepted a request on Secret {namespace}/{name} that must always be refused (the probe of whether its owner labelled it); not using the Secret"
    )]
    ProbeAccepted { namespace: String, name: String },
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
            Error::ProbeAccepted { .. } => "ProbeAccepted".into(),
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
    pub hostroles: Option<Cache<HostRole>>,
    /// Every namespace's metadata, when the operator serves them all (for namespace selectors
    /// in `allowClientsFrom`).
    pub namespaces: Option<Cache<PartialObjectMeta<Namespace>>>,
    /// The operator's own objects (by its managed-by label) as the watches see them: read
    /// instead of one GET per object and two pod LISTs per reconcile.
    pub caches: Caches,
    /// What the API server said of the labels of Secrets and ConfigMaps HostRoles name.
    pub uses: Arc<Mutex<UseCache>>,
    failures: Mutex<HashMap<(String, String), u32>>,
    /// Since when each HostRole has had a progress-only status change waiting
    /// ([`STATUS_DEFER`]).
    detail_waiting: Mutex<HashMap<(String, String), Instant>>,
    /// The status each HostRole was last given, with the resource version that write made, until
    /// the cache shows that version (or [`WRITTEN_TRUSTED`] has passed).
    written: Mutex<HashMap<(String, String), Written>>,
    /// Network Secrets known to exist, (namespace, name) → what they are, so that an idle
    /// operator does not write (or probe) them again.
    network_secrets: Mutex<HashMap<(String, String), KnownSecret>>,
    /// Whether optional APIs (cert-manager, Gateway API) are served, and since when known.
    apis: Mutex<HashMap<&'static str, (bool, Instant)>>,
}

/// A status this operator wrote, not yet seen in the cache.
struct Written {
    at: Instant,
    uid: Option<String>,
    version: Option<String>,
    status: HostRoleStatus,
}

/// How long a status written is taken for the API server's while the cache has not shown it: a
/// watch lags by far less; past this the cache is believed again (someone may have changed the
/// status since, and the next write puts it right).
const WRITTEN_TRUSTED: Duration = Duration::from_secs(10);

/// What the operator learnt about a network Secret.
#[derive(Clone, Debug, PartialEq)]
enum KnownSecret {
    /// The operator's, with these owners and labels (a digest of them) applied; looked at
    /// again (without a write) after a while, since it may be deleted or replaced by hand.
    Ours(String, Instant),
    /// A user's, labelled for the network; looked at again after a while (it may go).
    Consented(Instant),
}

impl Context {
    pub fn new(client: Client, settings: Settings, metrics: Metrics, recorder: Recorder) -> Self {
        Self {
            client,
            settings,
            metrics,
            recorder,
            hostroles: None,
            namespaces: None,
            caches: Caches::default(),
            uses: Arc::new(Mutex::new(UseCache::default())),
            failures: Mutex::new(HashMap::new()),
            detail_waiting: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            network_secrets: Mutex::new(HashMap::new()),
            apis: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves references against the controller's cache of HostRoles.
    pub fn with_store(mut self, store: Cache<HostRole>) -> Self {
        self.hostroles = Some(store);
        self
    }

    /// Resolves namespace selectors against the controller's cache of namespaces.
    pub fn with_namespaces(mut self, store: Cache<PartialObjectMeta<Namespace>>) -> Self {
        self.namespaces = Some(store);
        self
    }

    /// Reads objects of this type from `cache` rather than from the API server.
    pub fn with_cache<K>(mut self, cache: Cache<K>) -> Self
    where
        K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
    {
        self.caches.insert(cache);
        self
    }

    fn world(&self) -> World {
        let world = self
            .hostroles
            .as_ref()
            .map(|s| World::new(s.store().state()))
            .unwrap_or_default();
        match &self.namespaces {
            Some(store) => world.with_namespaces(
                store
                    .store()
                    .state()
                    .iter()
                    .map(|n| (n.name_any(), n.labels().clone())),
            ),
            None => world,
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), u32>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How much longer a progress-only status change of this HostRole waits: starts its wait
    /// when it is new, `None` once it has waited [`STATUS_DEFER`].
    fn detail_wait(&self, hr: &HostRole) -> Option<Duration> {
        let mut waiting = self
            .detail_waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A HostRole deleted while its change waited leaves an entry: drop old ones.
        waiting.retain(|_, since| since.elapsed() < 30 * STATUS_DEFER);
        let since = *waiting.entry(key(hr)).or_insert_with(Instant::now);
        STATUS_DEFER
            .checked_sub(since.elapsed())
            .filter(|d| !d.is_zero())
    }

    /// The status the API server holds for this HostRole, as best known: the one last written
    /// while the cache does not show that write yet, else the cached one.
    fn status_known(&self, hr: &HostRole) -> Option<HostRoleStatus> {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let key = key(hr);
        match written.get(&key) {
            Some(w)
                if w.at.elapsed() < WRITTEN_TRUSTED
                    && w.uid == hr.metadata.uid
                    && w.version.is_some()
                    && w.version != hr.metadata.resource_version =>
            {
                Some(w.status.clone())
            }
            _ => {
                written.remove(&key);
                hr.status.clone()
            }
        }
    }

    /// Notes the status just written and the resource version the write gave the HostRole.
    fn status_written(&self, hr: &HostRole, version: Option<String>, status: &HostRoleStatus) {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        written.retain(|_, w| w.at.elapsed() < WRITTEN_TRUSTED);
        written.insert(
            key(hr),
            Written {
                at: Instant::now(),
                uid: hr.metadata.uid.clone(),
                version,
                status: status.clone(),
            },
        );
    }

    /// Nothing of this HostRole's status waits (it was written, or needs no write).
    fn detail_done(&self, hr: &HostRole) {
        self.detail_waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(hr));
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
    hostrole_agent_core::backoff::Backoff {
        first: BACKOFF_FIRST,
        cap: BACKOFF_CAP,
        jitter: hostrole_agent_core::backoff::Jitter::Around(0.2),
    }
    .delay_with(attempt, jitter)
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
    let uid = hr.metadata.uid.clone().ok_or(Error::MissingField("uid"))?;
    let client = ctx.client.clone();
    if let Some(store) = &ctx.hostroles {
        // References resolve against every HostRole, so wait for the first full list: an
        // early reconcile would report a server that exists as missing.
        store.ready().await;
    }
    if let Some(store) = &ctx.namespaces {
        store.ready().await;
    }
    // Which Secrets and ConfigMaps it names may be used: the translator leaves the others out.
    let uses = uses::check(&client, &ctx.uses, hr, &ns).await?;
    let world = ctx.world().with_usable(uses.usable);

    let mut failure = None;
    let mut apply_error = None;
    let mut problems = Vec::new();
    let mut network = None;
    let mut conflicts = Vec::new();
    let stateful_set = match desired::desired(hr, &ctx.settings, &world) {
        Ok(mut want) => {
            let apis = Apis::discover(ctx).await?;
            apis.explain(hr, &mut want);
            problems = want.problems.clone();
            network = hr.spec.peer.as_ref().map(|p| p.network.clone());
            match apply_all(hr, ctx, &ns, &uid, want, apis).await {
                Ok(Realised::Applied(sts)) => {
                    problems.extend(grow_claims(ctx, &ns, &sts).await?);
                    Some(sts)
                }
                Ok(Realised::Blocked {
                    conflicts: found,
                    stateful_set,
                }) => {
                    failure = Some((NAME_CONFLICT.to_string(), conflicts_message(&found)));
                    conflicts = found;
                    stateful_set
                }
                Err(e) => {
                    failure = Some(("ApplyFailed".to_string(), e.to_string()));
                    apply_error = Some(e);
                    Api::<StatefulSet>::namespaced(client.clone(), &ns)
                        .get_opt(&Names::stateful_set(&name))
                        .await
                        .map_err(|e| api_error("get", "StatefulSet", &ns, &name, e))?
                        // Someone else's StatefulSet of that name says nothing about this one.
                        .filter(|s| {
                            ownership::claim(Some(s.meta()), Owner::HostRole { uid: &uid })
                                == Claim::Ours
                        })
                }
            }
        }
        Err(spec_error) => {
            failure = Some((spec_error.reason().to_string(), spec_error.to_string()));
            None
        }
    };

    let pods = pods_labelled(ctx, &ns, &name, &desired::selector_labels(&name)).await?;
    let network_pods = match &network {
        Some(network) => {
            let labels = BTreeMap::from([(NETWORK_LABEL.to_string(), network.clone())]);
            pods_labelled(ctx, &ns, &name, &labels).await?
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
    let mut new_status = status::status(hr, &observed, &now);
    new_status.endpoints = endpoints(hr, ctx, &ns, &name, &uid, &pods).await?;
    // What the API server holds: the cached HostRole's status, unless the cache has not yet
    // seen the one this operator wrote last (a reconcile right after a write would write it
    // again, and say its transitions twice).
    let old_status = ctx.status_known(hr);
    let changed = old_status.as_ref() != Some(&new_status);
    // Progress detail waits a moment (an urgent change meanwhile takes it along); the requeue
    // below writes it then, or whatever has replaced it.
    let deferred = if changed && !status::urgent(old_status.as_ref(), &new_status) {
        ctx.detail_wait(hr)
    } else {
        None
    };
    if !changed || deferred.is_none() {
        ctx.detail_done(hr);
    }
    if changed && deferred.is_none() {
        let version = write_status(hr, ctx, &ns, &name, &new_status).await?;
        ctx.status_written(hr, version, &new_status);
        let said = |s: Option<&HostRoleStatus>| {
            status::condition(s, DEGRADED).map(|c| (c.reason.clone(), c.message.clone()))
        };
        if !conflicts.is_empty() && said(old_status.as_ref()) != said(Some(&new_status)) {
            for conflict in &conflicts {
                publish(
                    ctx,
                    hr,
                    EventType::Warning,
                    NAME_CONFLICT,
                    "Apply",
                    conflict.message(),
                    Some(ObjectReference {
                        api_version: Some(conflict.api_version.into()),
                        kind: Some(conflict.kind.into()),
                        namespace: Some(conflict.namespace.clone()),
                        name: Some(conflict.name.clone()),
                        ..Default::default()
                    }),
                )
                .await;
            }
        }
        publish_transitions(ctx, hr, old_status.as_ref(), &new_status).await;
    }
    match apply_error {
        Some(e) => Err(e),
        // Looking again sooner than any reason below would is harmless: it recomputes all.
        None if let Some(wait) = deferred => Ok(Action::requeue(wait)),
        None if !conflicts.is_empty() => Ok(Action::requeue(CONFLICT_RETRY)),
        // A label added to a Secret is not watched: look again soon.
        None if uses.refused => Ok(Action::requeue(uses::REFUSED_RETRY)),
        // A pod waiting for a node turns failing with time alone: look again then.
        None => Ok(Action::requeue(
            status::recheck_after(&new_status).map_or(RESYNC, |d| d.min(RESYNC)),
        )),
    }
}

/// The pods of `ns` that carry every label of `labels`: from the pod cache once it holds a
/// complete list (host pods carry the operator's managed-by label, which the cache watches),
/// else from the API server. Sorted by name, as a LIST returns them.
async fn pods_labelled(
    ctx: &Context,
    ns: &str,
    hostrole: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Vec<Pod>, Error> {
    if let Some(store) = ctx.caches.get::<Pod>().and_then(|c| c.if_synced()) {
        ctx.metrics.read("Pod", ReadSource::Cache);
        let mut pods: Vec<Pod> = store
            .state()
            .iter()
            .filter(|p| {
                p.namespace().as_deref() == Some(ns)
                    && labels.iter().all(|(k, v)| p.labels().get(k) == Some(v))
            })
            .map(|p| (**p).clone())
            .collect();
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        return Ok(pods);
    }
    ctx.metrics.read("Pod", ReadSource::Api);
    Ok(Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&desired::label_selector(labels)))
        .await
        .map_err(|e| api_error("list", "Pod", ns, hostrole, e))?
        .items)
}

/// `status.endpoints`, from the live external Service (its load balancer's address or node
/// ports) and the hosts' nodes.
async fn endpoints(
    hr: &HostRole,
    ctx: &Context,
    ns: &str,
    name: &str,
    uid: &str,
    pods: &[Pod],
) -> Result<Vec<hostrole_api::Endpoint>, Error> {
    let external = match hr.spec.expose {
        Some(_) => {
            let svc_name = reach::external_service_name(name);
            Api::<Service>::namespaced(ctx.client.clone(), ns)
                .get_opt(&svc_name)
                .await
                .map_err(|e| api_error("get", "Service", ns, &svc_name, e))?
                .filter(|s| {
                    ownership::claim(Some(s.meta()), Owner::HostRole { uid }) == Claim::Ours
                })
        }
        None => None,
    };
    let mut ports = hr.spec.server_ports();
    if let Some(redirect) = hr
        .spec
        .servers
        .web
        .as_ref()
        .and_then(|w| w.http_redirect_port)
    {
        ports.push(("web-redirect", redirect));
    }
    Ok(reach::endpoints(
        hr,
        name,
        ns,
        &ports,
        external.as_ref(),
        pods,
    ))
}

/// What applying a HostRole's objects came to.
enum Realised {
    /// Every object is applied; the live StatefulSet.
    Applied(StatefulSet),
    /// Names the HostRole needs are taken by objects that are not its own: nothing was written
    /// to them (nor, when found before any write, to anything else). The StatefulSet, when it
    /// exists and is this HostRole's, for status.
    Blocked {
        conflicts: Vec<Conflict>,
        stateful_set: Option<StatefulSet>,
    },
}

/// Who must own an object for the operator to write to it (see [`ownership`]).
#[derive(Clone, Debug)]
enum Rule {
    /// This HostRole (by UID).
    HostRole,
    /// The peer network of that name (by the operator's labels).
    Network(String),
}

/// An object the HostRole wants (or no longer wants) under a name, and what exists there.
struct Slot<K> {
    api: Api<K>,
    namespace: String,
    name: String,
    want: Option<K>,
    current: Option<K>,
    rule: Rule,
}

impl<K> Slot<K>
where
    K: Resource<DynamicType = ()>
        + k8s_openapi::Resource
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug
        + Send
        + Sync
        + 'static,
{
    /// Reads what exists under `name` (the shell's only part in deciding ownership): from the
    /// watch cache when it can say ([`lookup`]), else from the API server.
    async fn fetch(
        (caches, metrics): (&Caches, &Metrics),
        api: Api<K>,
        namespace: &str,
        name: String,
        want: Option<K>,
        rule: Rule,
    ) -> Result<Self, Error> {
        let kind = <K as k8s_openapi::Resource>::KIND;
        let cached = caches
            .get::<K>()
            .and_then(|c| c.if_synced().map(|_| c.get(namespace, &name)));
        let current = match lookup(cached, want.is_some()) {
            Lookup::Cached(object) => {
                metrics.read(kind, ReadSource::Cache);
                Some(object)
            }
            Lookup::NotOurs => {
                metrics.read(kind, ReadSource::Cache);
                None
            }
            Lookup::Ask => {
                metrics.read(kind, ReadSource::Api);
                api.get_opt(&name)
                    .await
                    .map_err(|e| api_error("get", kind, namespace, &name, e))?
            }
        };
        Ok(Slot {
            api,
            namespace: namespace.to_string(),
            name,
            want,
            current,
            rule,
        })
    }

    fn owner<'a>(&'a self, uid: &'a str) -> Owner<'a> {
        match &self.rule {
            Rule::HostRole => Owner::HostRole { uid },
            Rule::Network(network) => Owner::Network { network },
        }
    }

    fn claim(&self, uid: &str) -> Claim {
        ownership::claim(self.current.as_ref().map(|c| c.meta()), self.owner(uid))
    }

    /// The conflict, when the HostRole wants this object and the name is someone else's.
    fn conflict(&self, hostrole: &str, uid: &str) -> Option<Conflict> {
        self.want.as_ref()?;
        (self.claim(uid) == Claim::Foreign).then(|| {
            Conflict::new(
                (
                    <K as k8s_openapi::Resource>::API_VERSION,
                    <K as k8s_openapi::Resource>::KIND,
                ),
                &self.namespace,
                &self.name,
                hostrole,
                self.owner(uid),
            )
        })
    }

    /// The live object, when it is ours.
    fn ours(&self, uid: &str) -> Option<K> {
        (self.claim(uid) == Claim::Ours)
            .then(|| self.current.clone())
            .flatten()
    }

    /// Applies the wanted object, or deletes the unwanted one if it is ours. Only called once
    /// [`Slot::conflict`] found no conflict.
    async fn write(
        self,
        hr: &HostRole,
        ctx: &Context,
        uid: &str,
        changes: &mut Changes,
    ) -> Result<Option<K>, Error> {
        let ours = self.ours(uid);
        match self.want {
            Some(object) => apply(hr, ctx, &self.api, object, ours, changes)
                .await
                .map(Some),
            None => {
                if let Some(current) = ours {
                    delete_owned(ctx, &self.api, &current, changes).await?;
                }
                Ok(None)
            }
        }
    }
}

/// Applies every desired object and removes those the HostRole no longer needs (the Service
/// when no server role is left, the reporting ServiceAccount when no client is, …). First reads
/// every name it needs: if one is taken by an object that is not its own, nothing is written.
async fn apply_all(
    hr: &HostRole,
    ctx: &Context,
    ns: &str,
    uid: &str,
    want: Desired,
    apis: Apis,
) -> Result<Realised, Error> {
    let mut changes = Changes::default();
    let result = apply_all_into(hr, ctx, ns, uid, want, apis, &mut changes).await;
    // What was written is said also when a later write failed.
    for (reason, note) in changes.notes() {
        publish(ctx, hr, EventType::Normal, reason, "Apply", note, None).await;
    }
    result
}

async fn apply_all_into(
    hr: &HostRole,
    ctx: &Context,
    ns: &str,
    uid: &str,
    want: Desired,
    apis: Apis,
    changes: &mut Changes,
) -> Result<Realised, Error> {
    let client = &ctx.client;
    let name = hr.name_any();
    let services = Api::<Service>::namespaced(client.clone(), ns);
    let config_map = Slot::fetch(
        (&ctx.caches, &ctx.metrics),
        Api::<ConfigMap>::namespaced(client.clone(), ns),
        ns,
        Names::config_map(&name),
        Some(want.config_map),
        Rule::HostRole,
    )
    .await?;
    let headless = Slot::fetch(
        (&ctx.caches, &ctx.metrics),
        services.clone(),
        ns,
        Names::headless_service(&name),
        Some(want.headless_service),
        Rule::HostRole,
    )
    .await?;
    let service = Slot::fetch(
        (&ctx.caches, &ctx.metrics),
        services.clone(),
        ns,
        Names::service(&name),
        want.service,
        Rule::HostRole,
    )
    .await?;
    let service_account = Slot::fetch(
        (&ctx.caches, &ctx.metrics),
        Api::<ServiceAccount>::namespaced(client.clone(), ns),
        ns,
        Names::service_account(&name),
        want.service_account,
        Rule::HostRole,
    )
    .await?;
    let role_binding = Slot::fetch(
        (&ctx.caches, &ctx.metrics),
        Api::<RoleBinding>::namespaced(client.clone(), ns),
        ns,
        Names::role_binding(&name),
        want.role_binding,
        Rule::HostRole,
    )
    .await?;
    let network_policy = Slot::fetch(
        (&ctx.caches, &ctx.metrics),
        Api::<NetworkPolicy>::namespaced(client.clone(), ns),
        ns,
        Names::network_policy(&name),
        want.network_policy,
        Rule::HostRole,
    )
    .await?;
    let disruption_budget = Slot::fetch(
        (&ctx.caches, &ctx.metrics),
        Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
        ns,
        Names::disruption_budget(&name),
        want.disruption_budget,
        Rule::HostRole,
    )
    .await?;
    let network_service = match &want.network {
        Some(network) => Some(
            Slot::fetch(
                (&ctx.caches, &ctx.metrics),
                services.clone(),
                ns,
                network.service.name_any(),
                Some(network.service.clone()),
                Rule::Network(network.network.clone()),
            )
            .await?,
        ),
        None => None,
    };
    let external_service = Slot::fetch(
        (&ctx.caches, &ctx.metrics),
        services.clone(),
        ns,
        reach::external_service_name(&name),
        want.reach.external_service.clone(),
        Rule::HostRole,
    )
    .await?;
    let mut certificates = Vec::new();
    let mut issued_secret_conflicts = Vec::new();
    if apis.cert_manager {
        for (role, cert) in want.reach.certificates.clone() {
            let slot = Slot::fetch(
                (&ctx.caches, &ctx.metrics),
                Api::<Certificate>::namespaced(client.clone(), ns),
                ns,
                certificate_name(&name, role),
                cert,
                Rule::HostRole,
            )
            .await?;
            // A Certificate not made yet must not make cert-manager overwrite a Secret that
            // is already there (someone else's, under the name it would fill).
            if slot.want.is_some() && slot.claim(uid) == Claim::Free {
                let secret = issued_secret_name(&name, role);
                if !issued_secret_free(ctx, ns, &secret, &certificate_name(&name, role)).await? {
                    issued_secret_conflicts.push(Conflict::new(
                        ("v1", "Secret"),
                        ns,
                        &secret,
                        &name,
                        Owner::HostRole { uid },
                    ));
                }
            }
            certificates.push(slot);
        }
    }
    let mut http_routes = Vec::new();
    let mut tcp_routes = Vec::new();
    if apis.gateway_http {
        for (object, route) in want.reach.http_routes.clone() {
            http_routes.push(
                Slot::fetch(
                    (&ctx.caches, &ctx.metrics),
                    Api::<HttpRoute>::namespaced(client.clone(), ns),
                    ns,
                    object,
                    route,
                    Rule::HostRole,
                )
                .await?,
            );
        }
    }
    if apis.gateway_tcp {
        for (object, route) in want.reach.tcp_routes.clone() {
            tcp_routes.push(
                Slot::fetch(
                    (&ctx.caches, &ctx.metrics),
                    Api::<TcpRoute>::namespaced(client.clone(), ns),
                    ns,
                    object,
                    route,
                    Rule::HostRole,
                )
                .await?,
            );
        }
    }
    let stateful_set = Slot::fetch(
        (&ctx.caches, &ctx.metrics),
        Api::<StatefulSet>::namespaced(client.clone(), ns),
        ns,
        Names::stateful_set(&name),
        Some(want.stateful_set.clone()),
        Rule::HostRole,
    )
    .await?;

    let mut conflicts: Vec<Conflict> = [
        config_map.conflict(&name, uid),
        headless.conflict(&name, uid),
        service.conflict(&name, uid),
        service_account.conflict(&name, uid),
        role_binding.conflict(&name, uid),
        network_policy.conflict(&name, uid),
        disruption_budget.conflict(&name, uid),
        network_service
            .as_ref()
            .and_then(|s| s.conflict(&name, uid)),
        stateful_set.conflict(&name, uid),
        external_service.conflict(&name, uid),
    ]
    .into_iter()
    .flatten()
    .chain(certificates.iter().filter_map(|s| s.conflict(&name, uid)))
    .chain(issued_secret_conflicts)
    .chain(http_routes.iter().filter_map(|s| s.conflict(&name, uid)))
    .chain(tcp_routes.iter().filter_map(|s| s.conflict(&name, uid)))
    .collect();
    if conflicts.is_empty()
        && let Some(network) = &want.network
    {
        conflicts.extend(ensure_network_secret(hr, ctx, ns, network).await?);
    }
    if !conflicts.is_empty() {
        return Ok(Realised::Blocked {
            conflicts,
            stateful_set: stateful_set.ours(uid),
        });
    }

    config_map.write(hr, ctx, uid, changes).await?;
    headless.write(hr, ctx, uid, changes).await?;
    service.write(hr, ctx, uid, changes).await?;
    service_account.write(hr, ctx, uid, changes).await?;
    role_binding.write(hr, ctx, uid, changes).await?;
    network_policy.write(hr, ctx, uid, changes).await?;
    disruption_budget.write(hr, ctx, uid, changes).await?;
    if let Some(slot) = network_service {
        slot.write(hr, ctx, uid, changes).await?;
    }
    external_service.write(hr, ctx, uid, changes).await?;
    for slot in certificates {
        slot.write(hr, ctx, uid, changes).await?;
    }
    for slot in http_routes {
        slot.write(hr, ctx, uid, changes).await?;
    }
    for slot in tcp_routes {
        slot.write(hr, ctx, uid, changes).await?;
    }
    let sts = stateful_set.api.clone();
    let sts_uid = stateful_set
        .current
        .as_ref()
        .and_then(|s| s.metadata.uid.clone());
    let live = match stateful_set.write(hr, ctx, uid, changes).await {
        Err(e) if e.is_immutable_statefulset_change() => {
            // A role that gains or loses storage changes volumeClaimTemplates, which a
            // StatefulSet cannot change. Delete it but keep its pods and claims (orphan), then
            // apply the new one: it adopts the pods and rolls them; the data stays.
            let name = Names::stateful_set(&hr.name_any());
            tracing::info!(hostrole = %hr.name_any(), "recreating the StatefulSet: its claim templates changed");
            // Only the StatefulSet just found to be ours (by its UID), never one put in its place.
            let mut params = DeleteParams::orphan();
            params.preconditions = Some(Preconditions {
                uid: sts_uid,
                resource_version: None,
            });
            sts.delete(&name, &params)
                .await
                .map_err(|e| api_error("delete", "StatefulSet", ns, &name, e))?;
            ctx.metrics.wrote("StatefulSet", "delete");
            wait_gone(&sts, &name, ns).await?;
            apply(hr, ctx, &sts, want.stateful_set, None, changes).await?
        }
        other => other?.ok_or(Error::MissingField("StatefulSet"))?,
    };
    Ok(Realised::Applied(live))
}

/// Raises the storage request of every host's claim that is smaller than its template asks
/// ([`storage`]); returns a problem for each claim the API server refused to grow (its
/// StorageClass does not allow expansion, or it is not bound yet). Claims not made yet are the
/// StatefulSet's to make.
async fn grow_claims(
    ctx: &Context,
    ns: &str,
    sts: &StatefulSet,
) -> Result<Vec<hostrole_api::render::Problem>, Error> {
    let claims = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), ns);
    let mut problems = Vec::new();
    for want in storage::wanted_claims(sts) {
        let Some(pvc) = claims
            .get_opt(&want.name)
            .await
            .map_err(|e| api_error("get", "PersistentVolumeClaim", ns, &want.name, e))?
        else {
            continue;
        };
        if !storage::must_grow(&pvc, &want.size) {
            continue;
        }
        let has = storage::requested(&pvc).unwrap_or_default().to_string();
        let patch =
            serde_json::json!({"spec": {"resources": {"requests": {"storage": want.size}}}});
        match claims
            .patch(&want.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(namespace = ns, claim = %want.name, from = %has, to = %want.size, "expanding a host's volume");
                ctx.metrics.wrote("PersistentVolumeClaim", "patch");
            }
            // Refused by the API server (403 from the resize admission: the StorageClass does
            // not allow expansion; 422: not bound): said in status, not retried in a loop.
            Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => {
                problems.push(storage::not_expanded(&want, &has, &e.message));
            }
            Err(e) => {
                return Err(api_error(
                    "patch",
                    "PersistentVolumeClaim",
                    ns,
                    &want.name,
                    e,
                ));
            }
        }
    }
    Ok(problems)
}

/// How long an answer about an optional API (installed or not) is used.
const API_TTL: Duration = Duration::from_secs(30);

/// Which optional APIs the API server serves.
#[derive(Clone, Copy, Debug, Default)]
pub struct Apis {
    pub cert_manager: bool,
    pub gateway_http: bool,
    pub gateway_tcp: bool,
}

impl Apis {
    async fn discover(ctx: &Context) -> Result<Apis, Error> {
        Ok(Apis {
            cert_manager: served(ctx, "cert-manager.io/v1", "certificates").await?,
            gateway_http: served(ctx, "gateway.networking.k8s.io/v1", "httproutes").await?,
            gateway_tcp: served(ctx, "gateway.networking.k8s.io/v1", "tcproutes").await?,
        })
    }

    /// Says in the HostRole's problems what cannot be made because its API is missing.
    fn explain(&self, hr: &HostRole, want: &mut Desired) {
        for (role, cert) in &want.reach.certificates {
            if cert.is_some() && !self.cert_manager {
                let field = format!("{}.issuerRef", hostrole_api::render::tls_field(role));
                want.problems.retain(|p| p.field != field);
                want.problems.push(Problem {
                    message: format!(
                        "{field}: cert-manager is not installed (the API server serves no certificates.cert-manager.io/v1), so no certificate is issued and the {role} role is not served; install cert-manager, or use tls.secret with a kubernetes.io/tls Secret"
                    ),
                    field,
                    reason: ProblemReason::CertManagerMissing,
                });
            }
        }
        let http = want.reach.http_routes.iter().any(|(_, r)| r.is_some());
        let tcp = want.reach.tcp_routes.iter().any(|(_, r)| r.is_some());
        let missing: Vec<&str> = [
            (http && !self.gateway_http, "httproutes"),
            (tcp && !self.gateway_tcp, "tcproutes"),
        ]
        .into_iter()
        .filter_map(|(m, what)| m.then_some(what))
        .collect();
        if !missing.is_empty() {
            let _ = hr;
            want.problems.push(Problem {
                field: "spec.expose.gateway".into(),
                reason: ProblemReason::GatewayAPIMissing,
                message: format!(
                    "spec.expose.gateway: the Gateway API is not installed (the API server serves no {}.gateway.networking.k8s.io/v1), so no route is made; install the Gateway API CRDs (and a Gateway implementation), or remove spec.expose.gateway",
                    missing.join(", ")
                ),
            });
        }
    }
}

/// Whether the API server serves `resource` in `group_version` (discovery; cached briefly, so
/// an API installed later is found without a restart).
async fn served(ctx: &Context, group_version: &'static str, resource: &str) -> Result<bool, Error> {
    let key: &'static str = match resource {
        "certificates" => "certificates",
        "httproutes" => "httproutes",
        _ => "tcproutes",
    };
    if let Some((known, at)) = ctx
        .apis
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(key)
        .copied()
        && at.elapsed() < API_TTL
    {
        return Ok(known);
    }
    let answer = match ctx.client.list_api_group_resources(group_version).await {
        Ok(list) => list.resources.iter().any(|r| r.name == resource),
        Err(kube::Error::Api(status)) if status.code == 404 => false,
        Err(e) => {
            return Err(api_error(
                "discover",
                "APIResourceList",
                "",
                group_version,
                e,
            ));
        }
    };
    ctx.apis
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, (answer, Instant::now()));
    Ok(answer)
}

/// Whether cert-manager may fill Secret `secret` for Certificate `certificate`: it does not
/// exist, or it is that Certificate's (cert-manager's annotation says so). Asked of the API
/// server with a probe that is never written, as the operator never reads Secrets.
async fn issued_secret_free(
    ctx: &Context,
    ns: &str,
    secret: &str,
    certificate: &str,
) -> Result<bool, Error> {
    let probe =
        ownership::probe_annotation(reach::CERTIFICATE_NAME_ANNOTATION, certificate, secret);
    let patch: json_patch::Patch =
        serde_json::from_value(probe).map_err(|source| Error::Encode {
            kind: "Secret",
            name: secret.to_string(),
            source,
        })?;
    let result = Api::<Secret>::namespaced(ctx.client.clone(), ns)
        .patch(secret, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await;
    match result {
        // 404: no Secret; 400: the test passed (it is the Certificate's), the rename refused.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 400 => Ok(true),
        // 422: the test failed: a Secret that is not this Certificate's.
        Err(kube::Error::Api(status)) if status.code == 422 => Ok(false),
        Err(e) => Err(api_error("probe", "Secret", ns, secret, e)),
        Ok(_) => Err(Error::ProbeAccepted {
            namespace: ns.to_string(),
            name: secret.to_string(),
        }),
    }
}

/// The network's shared secret: created once with random bytes (never rewritten, so peers keep
/// agreeing), then its owners kept in step with the network's members by a metadata-only patch
/// that the API server refuses unless the Secret carries the operator's labels. A user's Secret
/// labelled for the network is used as it is; any other Secret of that name is a conflict.
/// The operator never reads Secrets: every decision comes from the API server's answers
/// ([`ownership::next_secret_step`]), and it remembers what it learnt.
async fn ensure_network_secret(
    hr: &HostRole,
    ctx: &Context,
    ns: &str,
    network: &NetworkObjects,
) -> Result<Option<Conflict>, Error> {
    let name = network.secret_name.clone();
    let labels = network.service.metadata.labels.clone().unwrap_or_default();
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
    let known = ctx
        .network_secrets
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .cloned();
    let mut request = Request::Create;
    match &known {
        Some(KnownSecret::Ours(d, at)) if *d == digest => {
            if at.elapsed() < RESYNC {
                return Ok(None);
            }
            request = Request::ProbeOurs;
        }
        Some(KnownSecret::Consented(at)) if at.elapsed() < RESYNC => return Ok(None),
        _ => {}
    }
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), ns);
    let label_pairs: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let owners = serde_json::to_value(&network.owners).map_err(|source| Error::Encode {
        kind: "Secret",
        name: name.clone(),
        source,
    })?;
    let json_patch = |value: serde_json::Value| {
        serde_json::from_value::<json_patch::Patch>(value).map_err(|source| Error::Encode {
            kind: "Secret",
            name: name.clone(),
            source,
        })
    };
    let (verdict, verb, result) = loop {
        let (verb, result) = match request {
            Request::ProbeOurs => {
                let patch = json_patch(ownership::probe_ours(&network.network, &name))?;
                let params = PatchParams::default();
                let result = secrets
                    .patch(&name, &params, &Patch::<()>::Json(patch))
                    .await;
                ("probe", result.map(|_| ()))
            }
            Request::Create => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
                let secret = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(ns.to_string()),
                        labels: Some(labels.clone()),
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
                ("create", secrets.create(&params, &secret).await.map(|_| ()))
            }
            Request::PatchIfOurs => {
                let patch = json_patch(ownership::patch_if_ours(
                    &network.network,
                    &label_pairs,
                    &owners,
                ))?;
                let params = PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                };
                let result = secrets
                    .patch(&name, &params, &Patch::<()>::Json(patch))
                    .await;
                ("patch", result.map(|_| ()))
            }
            Request::ProbeConsent => {
                let patch = json_patch(ownership::probe_consent(&network.network, &name))?;
                let params = PatchParams::default();
                let result = secrets
                    .patch(&name, &params, &Patch::<()>::Json(patch))
                    .await;
                ("probe", result.map(|_| ()))
            }
        };
        let answer = match &result {
            Ok(()) => Answer::Ok,
            Err(kube::Error::Api(status)) => Answer::from_status(status.code),
            Err(_) => Answer::Other(0),
        };
        match ownership::next_secret_step(request, answer) {
            Next::Ask(next) => request = next,
            Next::Done(verdict) => break (verdict, verb, result),
        }
    };
    let secret_ref = || ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        namespace: Some(ns.to_string()),
        name: Some(name.clone()),
        ..Default::default()
    };
    match verdict {
        Verdict::Created => {
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
                Some(secret_ref()),
            )
            .await;
            remember(ctx, key, Some(KnownSecret::Ours(digest, Instant::now())));
            Ok(None)
        }
        Verdict::Updated => {
            ctx.metrics.wrote("Secret", "patch");
            remember(ctx, key, Some(KnownSecret::Ours(digest, Instant::now())));
            Ok(None)
        }
        Verdict::StillOurs => {
            remember(ctx, key, Some(KnownSecret::Ours(digest, Instant::now())));
            Ok(None)
        }
        Verdict::Consented => {
            if !matches!(known, Some(KnownSecret::Consented(_))) {
                publish(
                    ctx,
                    hr,
                    EventType::Normal,
                    "UsingSecret",
                    "Apply",
                    format!(
                        "Using Secret {name}, labelled {NETWORK_LABEL}={network}, as the shared secret of peer network {network}; the operator never changes or deletes it",
                        network = network.network
                    ),
                    Some(secret_ref()),
                )
                .await;
            }
            remember(ctx, key, Some(KnownSecret::Consented(Instant::now())));
            Ok(None)
        }
        Verdict::Foreign => {
            remember(ctx, key, None);
            Ok(Some(Conflict::new(
                ("v1", "Secret"),
                ns,
                &name,
                &hr.name_any(),
                Owner::Network {
                    network: &network.network,
                },
            )))
        }
        Verdict::Retry | Verdict::Failed(_) => {
            remember(ctx, key, None);
            Err(match result {
                Err(e) => api_error(verb, "Secret", ns, &name, e),
                Ok(()) => Error::ProbeAccepted {
                    namespace: ns.to_string(),
                    name: name.clone(),
                },
            })
        }
    }
}

fn remember(ctx: &Context, key: (String, String), known: Option<KnownSecret>) {
    let mut secrets = ctx
        .network_secrets
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    match known {
        Some(known) => secrets.insert(key, known),
        None => secrets.remove(&key),
    };
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

/// Server-side applies `desired` unless the live object `current` (which must be this
/// HostRole's, or absent) already holds it.
async fn apply<K>(
    hr: &HostRole,
    ctx: &Context,
    api: &Api<K>,
    mut desired: K,
    current: Option<K>,
    changes: &mut Changes,
) -> Result<K, Error>
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

    if let Some(current) = &current {
        // The UID found to be ours is a precondition of the write: if the object was replaced
        // since it was read, the API server refuses the apply instead of taking the new one.
        desired.meta_mut().uid = current.meta().uid.clone();
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
    let verb = if current.is_some() {
        Verb::Updated
    } else {
        Verb::Created
    };
    tracing::info!(hostrole = %hr.name_any(), kind, object = %name, reason = verb.as_str(), "applied");
    changes.note(verb, kind, name);
    Ok(applied)
}

/// Deletes `current`, an object of this HostRole that it no longer needs (the UID it was read
/// with is a precondition: a replacement is never deleted).
async fn delete_owned<K>(
    ctx: &Context,
    api: &Api<K>,
    current: &K,
    changes: &mut Changes,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + k8s_openapi::Resource + DeserializeOwned + Clone + Debug,
{
    let kind = <K as k8s_openapi::Resource>::KIND;
    let ns = current.namespace().unwrap_or_default();
    let name = current.name_any();
    let mut params = DeleteParams::background();
    params.preconditions = Some(Preconditions {
        uid: current.meta().uid.clone(),
        resource_version: None,
    });
    match api.delete(&name, &params).await {
        Ok(_) => {}
        // Gone already, or replaced by another object: nothing of ours to delete.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            return Ok(());
        }
        Err(e) => return Err(api_error("delete", kind, &ns, &name, e)),
    }
    ctx.metrics.wrote(kind, "delete");
    changes.note(Verb::Deleted, kind, name);
    Ok(())
}

async fn write_status(
    hr: &HostRole,
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &HostRoleStatus,
) -> Result<Option<String>, Error> {
    let patch = serde_json::json!({
        "apiVersion": HostRole::api_version(&()),
        "kind": HostRole::kind(&()),
        "status": status,
    });
    let written = Api::<HostRole>::namespaced(ctx.client.clone(), ns)
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| api_error("patch", "HostRoleStatus", ns, name, e))?;
    ctx.metrics.wrote("HostRole", "status");
    tracing::debug!(hostrole = %hr.name_any(), ready = status.ready_hosts, "status written");
    Ok(written.metadata.resource_version)
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

/// What a reconcile did to one of the HostRole's objects: the reason of its event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Created,
    Updated,
    Deleted,
}

impl Verb {
    pub const ALL: [Verb; 3] = [Verb::Created, Verb::Updated, Verb::Deleted];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Created => "Created",
            Verb::Updated => "Updated",
            Verb::Deleted => "Deleted",
        }
    }
}

/// What one reconcile created, updated and deleted, said at its end in one event per verb
/// rather than one per object: a new HostRole's events were 5 of its 12 API writes
/// (bench/results.md, operator).
#[derive(Debug, Default)]
pub struct Changes(Vec<(Verb, &'static str, String)>);

/// The most an event's note may hold (events.k8s.io/v1 refuses a longer one).
const MAX_NOTE_BYTES: usize = 1024;

impl Changes {
    /// Notes that `verb` happened to the `kind` `name`.
    pub fn note(&mut self, verb: Verb, kind: &'static str, name: String) {
        self.0.push((verb, kind, name));
    }

    /// One note per verb, in the order Created, Updated, Deleted: "Created ConfigMap web-host,
    /// Service web, StatefulSet web", within [`MAX_NOTE_BYTES`] ("… and N more" past it).
    pub fn notes(&self) -> Vec<(&'static str, String)> {
        Verb::ALL
            .into_iter()
            .filter_map(|verb| {
                let objects: Vec<String> = self
                    .0
                    .iter()
                    .filter(|(v, _, _)| *v == verb)
                    .map(|(_, kind, name)| format!("{kind} {name}"))
                    .collect();
                if objects.is_empty() {
                    return None;
                }
                let reason = verb.as_str();
                let tail = if verb == Verb::Deleted {
                    ": the HostRole no longer needs them"
                } else {
                    ""
                };
                let mut note = String::from(reason);
                for (i, object) in objects.iter().enumerate() {
                    let more = format!(" … and {} more", objects.len() - i);
                    let sep = if i == 0 { " " } else { ", " };
                    if note.len() + sep.len() + object.len() + more.len() + tail.len()
                        > MAX_NOTE_BYTES
                    {
                        note.push_str(&more);
                        break;
                    }
                    note.push_str(sep);
                    note.push_str(object);
                }
                note.push_str(tail);
                Some((reason, note))
            })
            .collect()
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
    fn one_reconciles_writes_are_one_event_per_verb() {
        let mut changes = Changes::default();
        assert!(changes.notes().is_empty(), "nothing written, nothing said");
        changes.note(Verb::Created, "ConfigMap", "web-host".into());
        changes.note(Verb::Updated, "StatefulSet", "web".into());
        changes.note(Verb::Created, "Service", "web".into());
        changes.note(Verb::Deleted, "ServiceAccount", "web-reporter".into());
        assert_eq!(
            changes.notes(),
            vec![
                (
                    "Created",
                    "Created ConfigMap web-host, Service web".to_string()
                ),
                ("Updated", "Updated StatefulSet web".to_string()),
                (
                    "Deleted",
                    "Deleted ServiceAccount web-reporter: the HostRole no longer needs them"
                        .to_string()
                ),
            ]
        );
    }

    #[test]
    fn a_long_list_of_changes_fits_an_event() {
        let mut changes = Changes::default();
        for i in 0..100 {
            changes.note(
                Verb::Created,
                "Certificate",
                format!("a-rather-long-name-{i:03}"),
            );
        }
        let notes = changes.notes();
        let note = &notes[0].1;
        assert!(note.len() <= MAX_NOTE_BYTES, "{} bytes", note.len());
        assert!(note.starts_with("Created Certificate a-rather-long-name-000, "));
        let shown = note.matches("Certificate ").count();
        assert!(
            note.ends_with(&format!(" … and {} more", 100 - shown)),
            "{note}"
        );
    }

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
