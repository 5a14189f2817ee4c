//! Pure builders: the objects a HostRole should own. No I/O here; everything is computed from the
//! HostRole and the operator's settings, so it is tested without an API server.

use std::collections::BTreeMap;

use hostrole_api::SiteFile;
use hostrole_api::render::{
    self, CONFIG_DIR, CONFIG_KEY, Environment, HostPlan, Mount, NETWORK_SECRET_KEY, Problem,
    RenderError, Source, network_object_name,
};
use hostrole_api::rules::ADMIN_PORT;
use hostrole_api::{HostRole, HostTemplate};
use hostrole_config::{ENV_POD_IP, ENV_POD_NAME, ENV_POD_NAMESPACE};
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, LocalObjectReference, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecretProjection,
    SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
    TopologySpreadConstraint, Volume, VolumeMount, VolumeProjection, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use sha2::{Digest, Sha256};

use crate::world::World;

/// The single field manager every write of the operator uses.
pub const FIELD_MANAGER: &str = "hostrole-operator";
/// Annotation on the pod template: a digest of the host ConfigMap, so a change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "hostrole.dev/config-hash";
/// Annotation on every owned object: a digest of what the operator last applied, so a field the
/// operator stops setting is noticed even though the live object still holds it.
pub const APPLIED_HASH_ANNOTATION: &str = "hostrole.dev/applied-hash";
/// UID and GID of the agent image's `USER` (the conventional "nonroot" user of distroless
/// images), and the default `fsGroup` of host pods.
pub const AGENT_UID: i64 = 65532;
/// The host pod's one container.
pub const AGENT_CONTAINER: &str = "agent";

/// Which user and groups host pods run as. Unset fields are left to the platform: the image's
/// `USER` (65532:65532) on most clusters, or what a policy engine assigns (OpenShift's
/// `restricted-v2` SCC gives every namespace its own UID and group range and rejects pods that
/// ask for ids outside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodIds {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    /// The group volumes are made writable for (Secrets mounted 0440 are readable through it).
    pub fs_group: Option<i64>,
}

impl Default for PodIds {
    /// No user or group of our own (the image's `USER` applies); volumes for group 65532, which
    /// a volume needs on clusters whose provisioners hand out root-owned directories.
    fn default() -> Self {
        Self {
            run_as_user: None,
            run_as_group: None,
            fs_group: Some(AGENT_UID),
        }
    }
}

/// What the operator needs to know that is not in the HostRole.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The agent container image.
    pub agent_image: String,
    /// `imagePullPolicy` of the agent container; the cluster default when absent.
    pub image_pull_policy: Option<String>,
    /// The ClusterRole a host with clients is bound to (in its namespace) so that its agent can
    /// report client results as conditions on its own pod.
    pub agent_cluster_role: String,
    /// NetworkPolicies for every HostRole, not only those with `spec.networkPolicy`.
    pub network_policies: bool,
    /// Egress rules for every HostRole, not only those with `spec.egressPolicy`.
    pub egress_policies: bool,
    /// Where the API server listens (CIDRs), for the egress of hosts with clients; empty: its
    /// usual ports (443, 6443) at any address.
    pub api_server_cidrs: Vec<String>,
    /// Pull secrets of host pods whose HostRole names none (`spec.template.imagePullSecrets`).
    pub image_pull_secrets: Vec<String>,
    /// User and groups of host pods.
    pub pod_ids: PodIds,
}

/// Label on peer pods naming their network (the network Service selects on it).
pub const NETWORK_LABEL: &str = "hostrole.dev/network";

/// Why a HostRole cannot be realised, even though the API server accepted it.
pub type SpecError = RenderError;

/// Every object a HostRole owns.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub config_map: ConfigMap,
    pub headless_service: Service,
    /// Absent when the host runs no server role.
    pub service: Option<Service>,
    pub stateful_set: StatefulSet,
    /// Hosts with clients: the ServiceAccount their agent reports with, and its binding.
    pub service_account: Option<ServiceAccount>,
    pub role_binding: Option<RoleBinding>,
    /// Peers: the network's headless Service (owned by every HostRole of the network) and the
    /// name of the network's Secret (created once, with a random secret, by the thin layer).
    pub network: Option<NetworkObjects>,
    /// When asked for: who may reach this host's servers.
    pub network_policy: Option<NetworkPolicy>,
    /// Two or more hosts, or a budget asked for: how many voluntary disruptions may take down.
    pub disruption_budget: Option<PodDisruptionBudget>,
    /// References that cannot be honoured yet (shown in status; they recover by watch).
    pub problems: Vec<Problem>,
    /// What reaches the host from outside: Certificates, the external Service, routes.
    pub reach: crate::reach::Reach,
}

/// The objects of a peer network that one of its HostRoles applies.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkObjects {
    pub network: String,
    pub service: Service,
    pub secret_name: String,
    /// Owner references to every HostRole of the network (none is the controller).
    pub owners: Vec<OwnerReference>,
}

/// Names of the owned objects.
pub struct Names;
impl Names {
    pub fn stateful_set(hr: &str) -> String {
        hr.to_string()
    }
    pub fn config_map(hr: &str) -> String {
        format!("{hr}-host")
    }
    pub fn headless_service(hr: &str) -> String {
        format!("{hr}-hosts")
    }
    pub fn service(hr: &str) -> String {
        hr.to_string()
    }
    pub fn service_account(hr: &str) -> String {
        format!("{hr}-host")
    }
    pub fn role_binding(hr: &str) -> String {
        format!("{hr}-host")
    }
    pub fn network_policy(hr: &str) -> String {
        hr.to_string()
    }
    pub fn disruption_budget(hr: &str) -> String {
        hr.to_string()
    }
}

/// The labels that select a HostRole's pods. Never change them: a StatefulSet's selector is
/// immutable.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "hostrole-host".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
    ])
}

/// The same selector as a label-selector string.
pub fn selector_string(name: &str) -> String {
    label_selector(&selector_labels(name))
}

/// Labels as an equality label-selector string (`k=v,k2=v2`).
pub fn label_selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `app.kubernetes.io/*` labels on every owned object.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.insert("app.kubernetes.io/component".into(), "host".into());
    labels.insert("app.kubernetes.io/part-of".into(), "hostrole".into());
    labels.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
    labels
}

/// Computes every object the HostRole should own. `world` holds the HostRoles it may refer to.
pub fn desired(hr: &HostRole, settings: &Settings, world: &World) -> Result<Desired, SpecError> {
    let name = hr
        .metadata
        .name
        .as_deref()
        .ok_or(SpecError::Missing("name"))?;
    let namespace = hr
        .metadata
        .namespace
        .as_deref()
        .ok_or(SpecError::Missing("namespace"))?;
    let world = world.clone().with(hr);
    let plan = plan(hr, namespace, &world)?;
    let config_map = config_map(hr, name, namespace, &plan)?;
    let config_hash = digest_data(config_map.data.as_ref());
    let reports = !hr.spec.clients.is_empty();
    Ok(Desired {
        headless_service: headless_service(hr, name, namespace, &plan),
        service: service(hr, name, namespace, &plan),
        stateful_set: stateful_set(hr, name, namespace, settings, &config_hash, &plan),
        config_map,
        service_account: reports.then(|| service_account(hr, name, namespace)),
        role_binding: reports.then(|| role_binding(hr, name, namespace, settings)),
        network: network_objects(hr, namespace, &world),
        network_policy: network_policy(hr, name, namespace, &world, settings),
        disruption_budget: disruption_budget(hr, name, namespace),
        reach: crate::reach::reach(
            hr,
            name,
            namespace,
            &server_ports(&plan).collect::<Vec<_>>(),
        ),
        problems: plan.problems,
    })
}

/// What the host's agent runs and mounts in a pod of `namespace`: the one translator
/// ([`render::render`]) with the cluster's placement.
pub fn plan(hr: &HostRole, namespace: &str, world: &World) -> Result<HostPlan, SpecError> {
    // The store may lag behind the object being reconciled.
    let world = world.clone().with(hr);
    render::render(hr, Environment::Cluster { namespace }, &world)
}

/// ConfigMap keys may not hold '/', so inline site files are stored under numbered keys and
/// mapped back to their paths by the volume's `items`.
fn site_key(index: usize) -> String {
    format!("site-{index:03}")
}

fn config_map(
    hr: &HostRole,
    name: &str,
    namespace: &str,
    plan: &HostPlan,
) -> Result<ConfigMap, SpecError> {
    // Serializing plain data structures to YAML cannot fail; keep the error typed anyway.
    let rendered = serde_yaml::to_string(&plan.config)
        .map_err(|_| SpecError::Missing("renderable agent configuration"))?;
    let mut data = BTreeMap::from([(CONFIG_KEY.to_string(), rendered)]);
    for (i, file) in inline_files(plan).iter().enumerate() {
        data.insert(site_key(i), file.content.clone());
    }
    Ok(ConfigMap {
        metadata: meta(hr, Names::config_map(name), namespace),
        data: Some(data),
        ..Default::default()
    })
}

/// The site files the plan keeps in the host ConfigMap (the written site, the generated page,
/// or the placeholder of a site whose ConfigMap may not be used).
fn inline_files(plan: &HostPlan) -> &[SiteFile] {
    plan.mounts()
        .find_map(|m| match &m.source {
            Source::InlineSite { files } => Some(files.as_slice()),
            _ => None,
        })
        .unwrap_or_default()
}

/// A short, stable digest of ConfigMap data.
pub fn digest_data(data: Option<&BTreeMap<String, String>>) -> String {
    let mut hasher = Sha256::new();
    for (k, v) in data.into_iter().flatten() {
        hasher.update(k.as_bytes());
        hasher.update([0]);
        hasher.update(v.as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..8])
}

fn meta(hr: &HostRole, name: String, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: Some(labels(hr.metadata.name.as_deref().unwrap_or_default())),
        owner_references: owner_reference(hr).map(|o| vec![o]),
        ..Default::default()
    }
}

/// The hosts' `topologySpreadConstraints`: the HostRole's own (a missing `labelSelector` counts
/// its hosts), else with two or more hosts an even spread over nodes that never keeps a host
/// from being scheduled.
fn topology_spread(
    template: &HostTemplate,
    name: &str,
    replicas: i32,
) -> Option<Vec<TopologySpreadConstraint>> {
    let hosts = || LabelSelector {
        match_labels: Some(selector_labels(name)),
        ..Default::default()
    };
    let constraints = match &template.topology_spread {
        Some(own) => own
            .iter()
            .cloned()
            .map(|mut c| {
                c.label_selector.get_or_insert_with(hosts);
                c
            })
            .collect(),
        // Nodes only: the scheduler ignores, when scoring, every node that lacks a key of the
        // pod's constraints, so a zone constraint on a cluster without zone labels (kind, most
        // bare metal) would switch spreading off altogether.
        None if replicas >= 2 => vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(hosts()),
            ..Default::default()
        }],
        None => Vec::new(),
    };
    (!constraints.is_empty()).then_some(constraints)
}

/// The hosts' PodDisruptionBudget: the HostRole's own `maxUnavailable`, else one host at a time
/// when there are two or more. Hosts that are not ready may always be evicted
/// (`AlwaysAllow`), so a crash-looping host never blocks a drain.
fn disruption_budget(hr: &HostRole, name: &str, namespace: &str) -> Option<PodDisruptionBudget> {
    let own = hr
        .spec
        .template
        .as_ref()
        .and_then(|t| t.disruption_budget.as_ref())
        .map(|b| b.max_unavailable.clone());
    let max_unavailable = own.or_else(|| (hr.spec.replicas >= 2).then_some(IntOrString::Int(1)))?;
    Some(PodDisruptionBudget {
        metadata: meta(hr, Names::disruption_budget(name), namespace),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(max_unavailable),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(name)),
                ..Default::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The controller owner reference that makes garbage collection delete the children.
pub fn owner_reference(hr: &HostRole) -> Option<OwnerReference> {
    hr.controller_owner_ref(&())
}

fn admin_port() -> (&'static str, i32) {
    ("admin", ADMIN_PORT)
}

fn service_port((name, port): (&'static str, i32)) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// The ports the host serves to others, as (name, port).
fn server_ports(plan: &HostPlan) -> impl Iterator<Item = (&'static str, i32)> + '_ {
    plan.ports().map(|(name, port)| (name, i32::from(port)))
}

fn headless_service(hr: &HostRole, name: &str, namespace: &str, plan: &HostPlan) -> Service {
    let mut ports: Vec<ServicePort> = server_ports(plan).map(service_port).collect();
    ports.push(service_port(admin_port()));
    Service {
        metadata: meta(hr, Names::headless_service(name), namespace),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(name)),
            // Peers and per-host clients need a host's DNS name as soon as its pod exists.
            publish_not_ready_addresses: Some(true),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn service(hr: &HostRole, name: &str, namespace: &str, plan: &HostPlan) -> Option<Service> {
    let ports: Vec<ServicePort> = server_ports(plan).map(service_port).collect();
    if ports.is_empty() {
        return None;
    }
    Some(Service {
        metadata: meta(hr, Names::service(name), namespace),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(name)),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Space for the agent's logs on the node (the root filesystem is read-only).
const LOG_SPACE_MIB: u64 = 64;
/// `sizeLimit` of the `/tmp` emptyDir.
const TMP_SPACE_MIB: u64 = 64;

/// CPU (millicores) and memory (MiB) the agent needs before any role: its runtime, admin port,
/// metrics and logs (about 12 MiB resident idle).
const AGENT_REQUEST: (u32, u32) = (10, 16);
/// Memory limit before any role.
const AGENT_MEMORY_LIMIT_MIB: u32 = 192;

/// What one role adds to the host's requests, (millicores, MiB), and to its memory limit (MiB).
/// CPU requests stay small (an idle host uses next to none, and there is no CPU limit to
/// throttle a busy one); memory is what a role holds under its own bounds:
/// from `bench/agent.sh` (web+file+mail idle: 21 MiB resident) and each role's own bounds. The
/// web role keeps up to 32 MiB of small files in memory; the peer role holds the most: up to 16
/// chunk fetches and 32 upload slots of 1 MiB each.
fn role_resources(role: &str) -> (u32, u32, u32) {
    match role {
        "web" => (5, 16, 64),
        "file" => (5, 8, 64),
        "mail" => (5, 8, 64),
        "index" => (5, 8, 32),
        // Chat: every connection holds a bounded send queue; 1024 idle users take a few MiB.
        "chat" => (5, 16, 64),
        // Radio: a ring of recent audio per mount, and the playlist file being played, read
        // whole (at most 128 MiB; a 320 kbit/s hour is 144 MB, so long mixes are split).
        "radio" => (10, 32, 256),
        // Print: documents stream to disk; a request's attributes are held (at most 64 KiB).
        "print" => (5, 8, 64),
        "peer" => (10, 48, 128),
        // Probes: a few small requests per period.
        _ => (2, 4, 16),
    }
}

/// Resources of a host whose HostRole names none: CPU and memory requests summed over its roles
/// ([`role_resources`]), so the scheduler places a host of five roles as what it is. No CPU
/// limit (it throttles a host serving a burst while the node has CPU to spare). Ephemeral
/// storage: the request covers the logs; the limit is what the pod's emptyDirs may hold plus the
/// logs, because the kubelet evicts a pod whose containers and emptyDirs together pass the sum
/// of its containers' limits.
fn default_resources(plan: &HostPlan) -> ResourceRequirements {
    let (cpu, memory, memory_limit) = plan.roles.iter().map(|r| role_resources(r.role)).fold(
        (AGENT_REQUEST.0, AGENT_REQUEST.1, AGENT_MEMORY_LIMIT_MIB),
        |(c, m, l), (rc, rm, rl)| (c + rc, m + rm, l + rl),
    );
    let scratch_mib: u64 = plan
        .mounts()
        .filter_map(|m| match &m.source {
            Source::Data {
                storage: None,
                scratch,
            } => hostrole_api::quantity::parse_bytes(&scratch.0),
            _ => None,
        })
        .map(|bytes| bytes.div_ceil(1 << 20))
        .sum();
    let ephemeral_limit = scratch_mib + TMP_SPACE_MIB + LOG_SPACE_MIB;
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity(format!("{cpu}m"))),
            ("memory".into(), Quantity(format!("{memory}Mi"))),
            (
                "ephemeral-storage".into(),
                Quantity(format!("{LOG_SPACE_MIB}Mi")),
            ),
        ])),
        limits: Some(BTreeMap::from([
            ("memory".into(), Quantity(format!("{memory_limit}Mi"))),
            (
                "ephemeral-storage".into(),
                Quantity(format!("{ephemeral_limit}Mi")),
            ),
        ])),
        ..Default::default()
    }
}

/// Volumes and mounts of the host pod: its configuration and scratch space, then every role's
/// mounts as the plan names them.
fn volumes(name: &str, plan: &HostPlan) -> (Vec<Volume>, Vec<VolumeMount>) {
    let config_map_name = Names::config_map(name);
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name.clone(),
                items: Some(vec![KeyToPath {
                    key: CONFIG_KEY.into(),
                    path: CONFIG_KEY.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity(format!("{TMP_SPACE_MIB}Mi"))),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        mount("config", CONFIG_DIR, true),
        mount("tmp", "/tmp", false),
    ];
    for m in plan.mounts() {
        if let Some(volume) = volume(&config_map_name, m) {
            volumes.push(volume);
        }
        let read_only = !matches!(m.source, Source::Data { .. });
        mounts.push(mount(&m.volume, &m.path.to_string_lossy(), read_only));
    }
    (volumes, mounts)
}

/// The pod volume behind one mount; `None` for data kept on a claim (a volumeClaimTemplate of
/// the same name).
fn volume(config_map_name: &str, m: &Mount) -> Option<Volume> {
    let secret = |name: String, items: Vec<(&str, String)>| SecretVolumeSource {
        secret_name: Some(name),
        items: Some(
            items
                .into_iter()
                .map(|(key, path)| KeyToPath {
                    key: key.into(),
                    path,
                    ..Default::default()
                })
                .collect(),
        ),
        default_mode: Some(0o440),
        ..Default::default()
    };
    let mut volume = Volume {
        name: m.volume.clone(),
        ..Default::default()
    };
    match &m.source {
        Source::Data {
            storage: Some(_), ..
        } => return None,
        Source::Data {
            storage: None,
            scratch,
        } => {
            volume.empty_dir = Some(EmptyDirVolumeSource {
                size_limit: Some(scratch.clone()),
                ..Default::default()
            });
        }
        Source::Secret { name, items } => {
            volume.secret = Some(secret(name.clone(), items.clone()));
        }
        Source::OptionalKey { name, key } => {
            // Optional: a Secret without the key (or not there yet) mounts an empty directory.
            volume.secret = Some(SecretVolumeSource {
                optional: Some(true),
                ..secret(name.clone(), vec![(key, key.to_string())])
            });
        }
        Source::NetworkSecret { network } => {
            volume.secret = Some(secret(
                network_object_name(network),
                vec![(NETWORK_SECRET_KEY, NETWORK_SECRET_KEY.to_string())],
            ));
        }
        Source::NetworkSecrets { networks } => {
            // Optional, so an index whose networks have no Secret yet still starts (it answers
            // 401 until the file appears).
            let sources = networks
                .iter()
                .map(|network| VolumeProjection {
                    secret: Some(SecretProjection {
                        name: network_object_name(network),
                        items: Some(vec![KeyToPath {
                            key: NETWORK_SECRET_KEY.into(),
                            path: network.clone(),
                            ..Default::default()
                        }]),
                        optional: Some(true),
                    }),
                    ..Default::default()
                })
                .collect();
            volume.projected = Some(ProjectedVolumeSource {
                sources: Some(sources),
                default_mode: Some(0o440),
            });
        }
        Source::ConfigMap { name } => {
            volume.config_map = Some(ConfigMapVolumeSource {
                name: name.clone(),
                ..Default::default()
            });
        }
        Source::InlineSite { files } => {
            volume.config_map = Some(ConfigMapVolumeSource {
                name: config_map_name.to_string(),
                items: Some(site_items(files)),
                ..Default::default()
            });
        }
    }
    Some(volume)
}

/// Per-host claims of the roles that keep data with `storage`, of `storageClassName` when given.
fn claim_templates(
    name: &str,
    plan: &HostPlan,
    storage_class: Option<&String>,
) -> Option<Vec<PersistentVolumeClaim>> {
    let claims: Vec<PersistentVolumeClaim> = plan
        .mounts()
        .filter_map(|m| match &m.source {
            Source::Data {
                storage: Some(size),
                ..
            } => Some((m.volume.clone(), size.clone())),
            _ => None,
        })
        .map(|(volume, size)| PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(volume),
                labels: Some(selector_labels(name)),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".into(), size)])),
                    ..Default::default()
                }),
                storage_class_name: storage_class.cloned(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    (!claims.is_empty()).then_some(claims)
}

fn site_items(files: &[SiteFile]) -> Vec<KeyToPath> {
    files
        .iter()
        .enumerate()
        .map(|(i, f)| KeyToPath {
            key: site_key(i),
            path: f.path.clone(),
            ..Default::default()
        })
        .collect()
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

fn stateful_set(
    hr: &HostRole,
    name: &str,
    namespace: &str,
    settings: &Settings,
    config_hash: &str,
    plan: &HostPlan,
) -> StatefulSet {
    let template = hr.spec.template.clone().unwrap_or_default();
    let (volumes, volume_mounts) = volumes(name, plan);
    let mut ports: Vec<ContainerPort> = server_ports(plan)
        .chain([admin_port()])
        .map(|(port_name, port)| ContainerPort {
            name: Some(port_name.into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..Default::default()
        })
        .collect();
    ports.sort_by_key(|p| p.container_port);

    let container = Container {
        name: AGENT_CONTAINER.into(),
        image: Some(settings.agent_image.clone()),
        image_pull_policy: settings.image_pull_policy.clone(),
        args: Some(vec![
            "run".into(),
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ]),
        env: Some(vec![
            field_env("HOSTROLE_HOST", "metadata.name"),
            field_env("HOSTROLE_NAMESPACE", "metadata.namespace"),
            field_env(ENV_POD_NAME, "metadata.name"),
            field_env(ENV_POD_NAMESPACE, "metadata.namespace"),
            field_env(ENV_POD_IP, "status.podIP"),
        ]),
        ports: Some(ports),
        // The agent's last log lines become the termination message when it fails, so a
        // crash loop is explained in the HostRole's status (`status.hosts[].message`).
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        resources: Some(
            template
                .resources
                .clone()
                .unwrap_or_else(|| default_resources(plan)),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            ..Default::default()
        }),
        volume_mounts: Some(volume_mounts),
        ..Default::default()
    };

    let mut pod_labels = labels(name);
    pod_labels.extend(selector_labels(name));
    if let Some(peer) = &hr.spec.peer {
        pod_labels.insert(NETWORK_LABEL.into(), peer.network.clone());
    }
    let reports = !hr.spec.clients.is_empty();
    StatefulSet {
        metadata: meta(hr, Names::stateful_set(name), namespace),
        spec: Some(StatefulSetSpec {
            replicas: Some(hr.spec.replicas),
            service_name: Some(Names::headless_service(name)),
            // Hosts are independent of each other: start and stop them together.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(name)),
                ..Default::default()
            },
            volume_claim_templates: claim_templates(
                name,
                plan,
                template.storage_class_name.as_ref(),
            ),
            persistent_volume_claim_retention_policy: template
                .persistent_volume_claim_retention_policy
                .as_ref()
                .map(|p| StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(p.when_deleted.as_str().into()),
                    when_scaled: Some(p.when_scaled.as_str().into()),
                }),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        config_hash.to_string(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    // Only a host with clients talks to the API server (to report their results
                    // on its own pod); every other host runs without a token.
                    service_account_name: reports.then(|| Names::service_account(name)),
                    automount_service_account_token: Some(reports),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: settings.pod_ids.run_as_user,
                        run_as_group: settings.pod_ids.run_as_group,
                        fs_group: settings.pod_ids.fs_group,
                        // Large volumes: change ownership only when the root does not match.
                        fs_group_change_policy: settings
                            .pod_ids
                            .fs_group
                            .map(|_| "OnRootMismatch".to_string()),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    node_selector: template.node_selector.clone(),
                    tolerations: template.tolerations.clone(),
                    topology_spread_constraints: topology_spread(&template, name, hr.spec.replicas),
                    priority_class_name: template.priority_class_name.clone(),
                    image_pull_secrets: image_pull_secrets(&template, settings),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The HostRole's own pull secrets, else the operator's default ones.
fn image_pull_secrets(
    template: &HostTemplate,
    settings: &Settings,
) -> Option<Vec<LocalObjectReference>> {
    let names: Vec<String> = match &template.image_pull_secrets {
        Some(own) => own.iter().map(|s| s.name.clone()).collect(),
        None => settings.image_pull_secrets.clone(),
    };
    (!names.is_empty()).then(|| {
        names
            .into_iter()
            .map(|name| LocalObjectReference { name })
            .collect()
    })
}

fn service_account(hr: &HostRole, name: &str, namespace: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(hr, Names::service_account(name), namespace),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

/// Binds the host's ServiceAccount, in its namespace only, to the agent's ClusterRole.
fn role_binding(hr: &HostRole, name: &str, namespace: &str, settings: &Settings) -> RoleBinding {
    RoleBinding {
        metadata: meta(hr, Names::role_binding(name), namespace),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: settings.agent_cluster_role.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: Names::service_account(name),
            namespace: Some(namespace.into()),
            ..Default::default()
        }]),
    }
}

/// The headless Service a peer network's members find each other through. Every HostRole of
/// the network computes the same object (owned by all of them), so whichever applies it last
/// changes nothing, and it goes when the last member goes.
fn network_objects(hr: &HostRole, namespace: &str, world: &World) -> Option<NetworkObjects> {
    let peer = hr.spec.peer.as_ref()?;
    let object_name = network_object_name(&peer.network);
    let members = world.network_members(namespace, &peer.network);
    let owners: Vec<OwnerReference> = members
        .iter()
        .filter_map(|m| {
            let mut o = owner_reference(m)?;
            o.controller = None;
            o.block_owner_deletion = None;
            Some(o)
        })
        .collect();
    let port = members
        .iter()
        .filter_map(|m| m.spec.peer.as_ref())
        .map(|p| p.port)
        .min()
        .unwrap_or(peer.port);
    let mut labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "hostrole-network".to_string(),
        ),
        (
            "app.kubernetes.io/instance".to_string(),
            peer.network.clone(),
        ),
        (
            "app.kubernetes.io/part-of".to_string(),
            "hostrole".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            FIELD_MANAGER.to_string(),
        ),
    ]);
    labels.insert(NETWORK_LABEL.into(), peer.network.clone());
    let service = Service {
        metadata: ObjectMeta {
            name: Some(object_name.clone()),
            namespace: Some(namespace.into()),
            labels: Some(labels),
            owner_references: Some(owners.clone()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(BTreeMap::from([(
                NETWORK_LABEL.to_string(),
                peer.network.clone(),
            )])),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![ServicePort {
                name: Some("peer".into()),
                port,
                target_port: Some(IntOrString::Int(port)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    Some(NetworkObjects {
        network: peer.network.clone(),
        service,
        secret_name: object_name,
        owners,
    })
}

/// Admits to each server port only the hosts that declare a client for it (peers of the network
/// for the peer port, peers that use this index for the index port); the admin port stays open
/// for probes and metrics. `None` when the host serves nothing.
/// The HostRole's NetworkPolicy: ingress rules with `networkPolicy` (who may reach its
/// servers), egress rules with `egressPolicy` (what its hosts may reach); none without either.
fn network_policy(
    hr: &HostRole,
    name: &str,
    namespace: &str,
    world: &World,
    settings: &Settings,
) -> Option<NetworkPolicy> {
    let ingress = (hr.spec.network_policy || settings.network_policies)
        .then(|| ingress_rules(hr, name, namespace, world))
        .flatten();
    let egress = (hr.spec.egress_policy || settings.egress_policies)
        .then(|| egress_rules(hr, name, namespace, world, &settings.api_server_cidrs));
    let mut types = Vec::new();
    if ingress.is_some() {
        types.push("Ingress".to_string());
    }
    if egress.is_some() {
        types.push("Egress".to_string());
    }
    if types.is_empty() {
        return None;
    }
    Some(NetworkPolicy {
        metadata: meta(hr, Names::network_policy(name), namespace),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(name)),
                ..Default::default()
            }),
            policy_types: Some(types),
            ingress,
            egress,
        }),
    })
}

/// Where the hosts of `hr` may connect: DNS; each server its clients name (a consenting
/// HostRole: its hosts on its server ports) or `url` (that port, any address); its network's
/// peers on their peer ports and its index; the other mail hosts of its namespace on SMTP and,
/// with `outbound`, the relay's port or SMTP anywhere; and for hosts with clients the API
/// server.
pub fn egress_rules(
    hr: &HostRole,
    name: &str,
    namespace: &str,
    world: &World,
    api_server_cidrs: &[String],
) -> Vec<NetworkPolicyEgressRule> {
    let anywhere = |ports: Vec<NetworkPolicyPort>| NetworkPolicyEgressRule {
        ports: Some(ports),
        to: None,
    };
    let udp = |port: i32| NetworkPolicyPort {
        protocol: Some("UDP".into()),
        ..policy_port(port)
    };
    let mut rules = vec![anywhere(vec![udp(53), policy_port(53)])];
    let mut hosts: BTreeMap<(String, String), Vec<i32>> = BTreeMap::new();
    let mut open_ports: Vec<i32> = Vec::new();
    for client in &hr.spec.clients {
        let servers = client
            .server
            .iter()
            .chain(client.to.as_ref().map(|t| &t.server));
        for reference in servers {
            let (ns, server) = hostrole_api::render::split_ref(namespace, reference);
            if let Some(target) = world.get(ns, server)
                && world.consents(ns, target, namespace)
            {
                hosts
                    .entry((ns.to_string(), server.to_string()))
                    .or_default()
                    .extend(target.spec.server_ports().iter().map(|(_, p)| *p));
            }
        }
        if let Some(port) = client.url.as_deref().and_then(url_port) {
            open_ports.push(port);
        }
    }
    if let Some(peer) = &hr.spec.peer {
        let ports: Vec<i32> = world
            .network_members(namespace, &peer.network)
            .iter()
            .filter_map(|m| m.spec.peer.as_ref().map(|p| p.port))
            .chain([peer.port])
            .collect();
        rules.push(NetworkPolicyEgressRule {
            ports: Some(dedup(ports).into_iter().map(policy_port).collect()),
            to: Some(vec![NetworkPolicyPeer {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        NETWORK_LABEL.to_string(),
                        peer.network.clone(),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
        });
        if let Some(index) = &peer.index
            && let Some(port) = world
                .get(namespace, index)
                .and_then(|i| i.spec.servers.index.as_ref())
                .map(|i| i.port)
        {
            hosts
                .entry((namespace.to_string(), index.clone()))
                .or_default()
                .push(port);
        }
    }
    if let Some(mail) = &hr.spec.servers.mail {
        for (ns, other) in world.mail_senders_to(namespace, name) {
            if let Some(port) = world
                .get(&ns, &other)
                .and_then(|o| o.spec.servers.mail.as_ref())
                .map(|m| m.smtp_port)
            {
                hosts.entry((ns, other)).or_default().push(port);
            }
        }
        if let Some(outbound) = &mail.outbound {
            open_ports.push(match &outbound.relay {
                Some(relay) => relay.effective_port(),
                None => 25,
            });
        }
    }
    for ((ns, host), ports) in hosts {
        rules.push(NetworkPolicyEgressRule {
            ports: Some(dedup(ports).into_iter().map(policy_port).collect()),
            to: Some(vec![host_peer(&ns, &host)]),
        });
    }
    if !open_ports.is_empty() {
        rules.push(anywhere(
            dedup(open_ports).into_iter().map(policy_port).collect(),
        ));
    }
    if !hr.spec.clients.is_empty() {
        rules.push(if api_server_cidrs.is_empty() {
            anywhere(vec![policy_port(443), policy_port(6443)])
        } else {
            NetworkPolicyEgressRule {
                ports: None,
                to: Some(
                    api_server_cidrs
                        .iter()
                        .map(|cidr| NetworkPolicyPeer {
                            ip_block: Some(IPBlock {
                                cidr: cidr.clone(),
                                except: None,
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }
        });
    }
    rules
}

fn dedup(mut ports: Vec<i32>) -> Vec<i32> {
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The port a client `url` connects to: the one it names, else its scheme's.
fn url_port(url: &str) -> Option<i32> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let explicit = match host_port.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && (!host.contains(':') || host.ends_with(']')) => {
            Some(port.parse::<u16>().ok()?)
        }
        _ => None,
    };
    let port = match explicit {
        Some(p) => p,
        None => match scheme.to_ascii_lowercase().as_str() {
            "http" => 80,
            "https" => 443,
            "smtp" => 25,
            "submission" => 587,
            "smtps" => 465,
            "imap" => 143,
            "imaps" => 993,
            "pop3" | "pop" => 110,
            "pop3s" | "pops" => 995,
            "irc" => 6667,
            _ => return None,
        },
    };
    Some(i32::from(port))
}

/// Who may reach the servers of `hr`: probes on the admin port, the declared clients (and
/// peers, mail senders) on their ports, anyone on exposed ports; none when it serves nothing.
fn ingress_rules(
    hr: &HostRole,
    name: &str,
    namespace: &str,
    world: &World,
) -> Option<Vec<NetworkPolicyIngressRule>> {
    use hostrole_api::ClientService;
    let servers = &hr.spec.servers;
    let mut rules = vec![NetworkPolicyIngressRule {
        ports: Some(vec![policy_port(ADMIN_PORT)]),
        from: None,
    }];
    let from_clients = |service: ClientService| -> Vec<NetworkPolicyPeer> {
        world
            .clients_of(namespace, name, service)
            .into_iter()
            .map(|(ns, client)| host_peer(&ns, &client))
            .collect()
    };
    let mut add = |ports: Vec<i32>, from: Vec<NetworkPolicyPeer>| {
        // A rule with no `from` admits everyone: leave a port nobody may use out instead.
        if !from.is_empty() {
            rules.push(NetworkPolicyIngressRule {
                ports: Some(ports.into_iter().map(policy_port).collect()),
                from: Some(from),
            });
        }
    };
    if let Some(web) = &servers.web {
        add(vec![web.port], from_clients(ClientService::Web));
    }
    if let Some(file) = &servers.file {
        add(vec![file.port], from_clients(ClientService::File));
    }
    if let Some(mail) = &servers.mail {
        let mut ports = vec![mail.submission_port, mail.imap_port, mail.pop3_port];
        if mail.tls.is_some() {
            ports.extend(mail.implicit_tls_ports().map(|(_, port)| port));
        }
        add(ports, from_clients(ClientService::Mail));
        // SMTP also takes the mail other mail hosts deliver (their routes to this one).
        let mut senders = from_clients(ClientService::Mail);
        for (ns, host) in world.mail_senders_to(namespace, name) {
            let peer = host_peer(&ns, &host);
            if !senders.contains(&peer) {
                senders.push(peer);
            }
        }
        add(vec![mail.smtp_port], senders);
    }
    if let Some(chat) = &servers.chat {
        let mut ports = vec![chat.port];
        if chat.tls.is_some() {
            ports.push(chat.tls_port);
        }
        add(ports, from_clients(ClientService::Chat));
    }
    if let Some(radio) = &servers.radio {
        add(vec![radio.port], from_clients(ClientService::Radio));
    }
    let network_peers = |network: &str| NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                NETWORK_LABEL.to_string(),
                network.to_string(),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Some(print) = &servers.print {
        // A peer shares its printer with the other peers of its network.
        let mut from = from_clients(ClientService::Print);
        if let Some(peer) = &hr.spec.peer {
            from.push(network_peers(&peer.network));
        }
        add(vec![print.port], from);
    }
    if let Some(index) = &servers.index {
        add(
            vec![index.port],
            world
                .networks_using_index(namespace, name)
                .iter()
                .map(|n| network_peers(n))
                .collect(),
        );
    }
    if let Some(peer) = &hr.spec.peer {
        add(vec![peer.port], vec![network_peers(&peer.network)]);
    }
    // Exposed roles are reached from outside the cluster and through a Gateway's pods, whose
    // addresses no selector names: their ports admit everyone.
    let mut ports = hr.spec.server_ports();
    if let Some(redirect) = servers.web.as_ref().and_then(|w| w.http_redirect_port) {
        ports.push(("web-redirect", redirect));
    }
    let exposed = crate::reach::exposed_ports(hr, &ports);
    if !exposed.is_empty() {
        rules.push(NetworkPolicyIngressRule {
            ports: Some(exposed.into_iter().map(policy_port).collect()),
            from: None,
        });
    }
    if servers.web.is_none()
        && servers.file.is_none()
        && servers.mail.is_none()
        && servers.index.is_none()
        && servers.chat.is_none()
        && servers.radio.is_none()
        && servers.print.is_none()
        && hr.spec.peer.is_none()
    {
        return None;
    }
    Some(rules)
}

/// The host pods of HostRole `ns/name`, as a NetworkPolicy names them.
fn host_peer(ns: &str, name: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(name)),
            ..Default::default()
        }),
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                ns.to_string(),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn policy_port(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        end_port: None,
    }
}
