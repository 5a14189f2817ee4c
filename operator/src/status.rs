//! Pure status aggregation: from the HostRole, its StatefulSet and its pods to `status`.

use std::collections::BTreeMap;

use hostrole_api::{
    ClientStatus, HostRole, HostRoleStatus, HostStatus, NetworkPeer, NetworkStatus, RoleState,
};
use hostrole_config::{CLIENT_CONDITION_PREFIX, ClientConditionMessage};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::desired::selector_string;
use hostrole_api::render::{Problem, network_object_name};

/// Condition types.
pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const CLIENTS_HEALTHY: &str = "ClientsHealthy";

/// Container states that will not get better by waiting.
const STUCK_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// What the operator saw of the objects that realise a HostRole.
#[derive(Clone, Debug, Default)]
pub struct Observed<'a> {
    pub stateful_set: Option<&'a StatefulSet>,
    pub pods: &'a [Pod],
    /// Why the HostRole could not be realised, if it could not (reason, message).
    pub failure: Option<(String, String)>,
    /// References that cannot be honoured yet.
    pub problems: &'a [Problem],
    /// Pods of every HostRole in this host's peer network.
    pub network_pods: &'a [Pod],
}

/// Computes the status. `now` stamps conditions whose status changed; unchanged conditions keep
/// their `lastTransitionTime`, so the same inputs give the same status and nothing is written.
pub fn status(hr: &HostRole, observed: &Observed, now: &Time) -> HostRoleStatus {
    let name = hr.metadata.name.clone().unwrap_or_default();
    let generation = hr.metadata.generation;
    let desired_hosts = hr.spec.replicas.max(0);
    let server_roles = hr.spec.server_roles();

    let pods_by_name: BTreeMap<&str, &Pod> = observed
        .pods
        .iter()
        .filter_map(|p| p.metadata.name.as_deref().map(|n| (n, p)))
        .collect();
    let hosts: Vec<HostStatus> = (0..desired_hosts)
        .map(|i| {
            let host = format!("{name}-{i}");
            let pod = pods_by_name.get(host.as_str()).copied();
            let ready = pod.is_some_and(pod_ready);
            let state = match pod {
                None => RoleState::Pending,
                Some(_) if ready => RoleState::Serving,
                Some(p) if stuck_reason(p).is_some() => RoleState::Failed,
                Some(_) => RoleState::Starting,
            };
            HostStatus {
                name: host,
                ready,
                roles: server_roles
                    .iter()
                    .map(|r| (r.to_string(), state))
                    .collect(),
                clients: client_results(hr, pod, observed.problems),
            }
        })
        .collect();
    let client_total: usize = hosts.iter().map(|h| h.clients.len()).sum();
    let client_ok = hosts
        .iter()
        .flat_map(|h| &h.clients)
        .filter(|c| c.ok)
        .count();
    let ready_hosts = hosts.iter().filter(|h| h.ready).count() as i32;
    let existing = observed
        .stateful_set
        .and_then(|s| s.status.as_ref())
        .map_or(0, |s| s.replicas);

    let stuck: Vec<String> = observed
        .pods
        .iter()
        .filter_map(|p| {
            stuck_reason(p).map(|r| format!("{}: {r}", p.metadata.name.as_deref().unwrap_or("?")))
        })
        .collect();
    let rolling = rollout_in_progress(observed.stateful_set, generation_of(observed.stateful_set));

    let (ready, progressing, degraded) = match &observed.failure {
        Some((reason, message)) => (
            cond(READY, false, reason, message),
            cond(
                PROGRESSING,
                false,
                reason,
                "waiting for the spec to be fixed",
            ),
            cond(DEGRADED, true, reason, message),
        ),
        None => {
            let all_ready = ready_hosts == desired_hosts && !rolling;
            let ready = if all_ready && desired_hosts == 0 {
                cond(
                    READY,
                    true,
                    "NoHosts",
                    "spec.replicas is 0: no hosts asked for",
                )
            } else if all_ready {
                cond(
                    READY,
                    true,
                    "AllRolesServing",
                    &format!("{ready_hosts}/{desired_hosts} hosts serve every role"),
                )
            } else {
                cond(
                    READY,
                    false,
                    "HostsNotReady",
                    &format!("{ready_hosts}/{desired_hosts} hosts serve every role"),
                )
            };
            let progressing = if rolling || ready_hosts != desired_hosts {
                cond(
                    PROGRESSING,
                    true,
                    "RollingOut",
                    &format!("{ready_hosts}/{desired_hosts} hosts ready on the current spec"),
                )
            } else {
                cond(
                    PROGRESSING,
                    false,
                    "RolloutComplete",
                    "every host runs the current spec",
                )
            };
            let degraded = if !stuck.is_empty() {
                cond(DEGRADED, true, "HostsFailing", &stuck.join("; "))
            } else if let Some(first) = observed.problems.first() {
                let all: Vec<&str> = observed
                    .problems
                    .iter()
                    .map(|p| p.message.as_str())
                    .collect();
                cond(DEGRADED, true, first.reason.as_str(), &all.join("; "))
            } else {
                cond(DEGRADED, false, "AsExpected", "no host is failing")
            };
            (ready, progressing, degraded)
        }
    };

    let previous = hr
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let clients_healthy =
        (!hr.spec.clients.is_empty()).then(|| clients_condition(&hosts, observed.problems));
    let conditions = [ready, progressing, degraded]
        .into_iter()
        .chain(clients_healthy)
        .map(|c| stamp(c, previous, generation, now))
        .collect();

    HostRoleStatus {
        observed_generation: generation,
        replicas: existing,
        ready_hosts,
        roles: hr.spec.all_roles().join(","),
        selector: selector_string(&name),
        conditions,
        hosts,
        clients: if client_total == 0 {
            String::new()
        } else {
            format!("{client_ok}/{client_total}")
        },
        network: network_status(hr, observed.network_pods),
        // Filled by the thin layer from the live external Service (`reach::endpoints`).
        endpoints: Vec::new(),
    }
}

/// Each declared client's latest result on one host: a reference problem, the condition the
/// host's agent reported on its pod, or pending.
fn client_results(hr: &HostRole, pod: Option<&Pod>, problems: &[Problem]) -> Vec<ClientStatus> {
    hr.spec
        .clients
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let server = spec
                .server
                .clone()
                .or_else(|| spec.url.clone())
                .unwrap_or_default();
            let service = spec.service.as_str().to_string();
            let prefix = format!("spec.clients[{i}]");
            if let Some(p) = problems.iter().find(|p| p.field.starts_with(&prefix)) {
                return ClientStatus {
                    service,
                    server,
                    ok: false,
                    reason: p.reason.as_str().to_string(),
                    last_error: p.message.clone(),
                    ..Default::default()
                };
            }
            let condition_type =
                format!("{CLIENT_CONDITION_PREFIX}{}", spec.service.client_name(i));
            let reported = pod
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == condition_type));
            match reported {
                None => ClientStatus {
                    service,
                    server,
                    ok: false,
                    reason: "Pending".into(),
                    ..Default::default()
                },
                Some(c) => {
                    let text = c.message.clone().unwrap_or_default();
                    let message =
                        ClientConditionMessage::parse(&text).unwrap_or(ClientConditionMessage {
                            latency_ms: None,
                            last_success: None,
                            detail: text,
                        });
                    let ok = c.status == "True";
                    ClientStatus {
                        service,
                        server,
                        ok,
                        reason: c.reason.clone().unwrap_or_default(),
                        latency_ms: message.latency_ms.map(|l| l as i64),
                        last_error: if ok { String::new() } else { message.detail },
                        last_success: message.last_success,
                    }
                }
            }
        })
        .collect()
}

fn clients_condition(hosts: &[HostStatus], problems: &[Problem]) -> Condition {
    let results: Vec<(&str, &ClientStatus)> = hosts
        .iter()
        .flat_map(|h| h.clients.iter().map(move |c| (h.name.as_str(), c)))
        .collect();
    let ok = results.iter().filter(|(_, c)| c.ok).count();
    let summary = format!("{ok}/{} client results healthy", results.len());
    if let Some(first) = problems
        .iter()
        .find(|p| p.field.starts_with("spec.clients"))
    {
        return cond(
            CLIENTS_HEALTHY,
            false,
            first.reason.as_str(),
            &first.message,
        );
    }
    let failing: Vec<String> = results
        .iter()
        .filter(|(_, c)| !c.ok && c.reason != "Pending")
        .map(|(host, c)| {
            format!(
                "{host}: {} → {}: {} {}",
                c.service, c.server, c.reason, c.last_error
            )
            .trim_end()
            .to_string()
        })
        .collect();
    if !failing.is_empty() {
        return cond(
            CLIENTS_HEALTHY,
            false,
            "ClientsFailing",
            &format!("{summary}; {}", failing.join("; ")),
        );
    }
    if ok < results.len() || results.is_empty() {
        let mut c = cond(CLIENTS_HEALTHY, false, "AwaitingReports", &summary);
        c.status = "Unknown".into();
        return c;
    }
    cond(CLIENTS_HEALTHY, true, "AllClientsHealthy", &summary)
}

fn network_status(hr: &HostRole, network_pods: &[Pod]) -> Option<NetworkStatus> {
    let peer = hr.spec.peer.as_ref()?;
    let mut peers: Vec<NetworkPeer> = network_pods
        .iter()
        .filter_map(|p| {
            Some(NetworkPeer {
                name: p.metadata.name.clone()?,
                host_role: p
                    .metadata
                    .labels
                    .as_ref()?
                    .get("app.kubernetes.io/instance")?
                    .clone(),
                ready: pod_ready(p),
            })
        })
        .collect();
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    Some(NetworkStatus {
        name: peer.network.clone(),
        mode: if peer.index.is_some() {
            "hybrid"
        } else {
            "decentralized"
        }
        .into(),
        index: peer.index.clone(),
        secret: network_object_name(&peer.network),
        service: network_object_name(&peer.network),
        peers,
    })
}

fn generation_of(sts: Option<&StatefulSet>) -> Option<i64> {
    sts.and_then(|s| s.metadata.generation)
}

/// True while the StatefulSet controller has not caught up with the latest StatefulSet spec.
fn rollout_in_progress(sts: Option<&StatefulSet>, generation: Option<i64>) -> bool {
    let Some(sts) = sts else { return true };
    let Some(status) = &sts.status else {
        return true;
    };
    let wanted = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    status.observed_generation < generation
        || status.updated_replicas.unwrap_or(0) < wanted
        || status.replicas != wanted
        || (status.update_revision.is_some() && status.current_revision != status.update_revision)
}

/// Whether a pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn stuck_reason(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .find(|r| STUCK_REASONS.contains(&r.as_str()))
}

fn cond(type_: &str, status: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: None,
        last_transition_time: Time(Default::default()),
    }
}

/// Sets `observedGeneration` and keeps the previous `lastTransitionTime` when the status of the
/// condition did not change.
fn stamp(
    mut c: Condition,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    c.observed_generation = generation;
    c.last_transition_time = previous
        .iter()
        .find(|p| p.type_ == c.type_ && p.status == c.status)
        .map_or_else(|| now.clone(), |p| p.last_transition_time.clone());
    c
}

/// The condition of a type, if present.
pub fn condition<'a>(status: Option<&'a HostRoleStatus>, type_: &str) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
}
