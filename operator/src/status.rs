//! Pure status aggregation: from the HostRole, its StatefulSet and its pods to `status`.

use std::collections::BTreeMap;
use std::time::Duration;

use hostrole_api::{
    ClientStatus, HostRole, HostRoleStatus, HostStatus, NetworkPeer, NetworkStatus, RoleState,
};
use hostrole_config::{CLIENT_CONDITION_PREFIX, ClientConditionMessage, failed_role};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::desired::selector_string;
use hostrole_api::render::Problem;

/// Condition types.
pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const CLIENTS_HEALTHY: &str = "ClientsHealthy";

/// How long a pod may wait for a node before "no node takes it" counts as failing: long enough
/// for a provisioner to bind a fresh claim or an autoscaler to add a node.
pub const SCHEDULING_GRACE: Duration = Duration::from_secs(60);
/// Longest message kept per host (the scheduler's messages grow with the number of nodes).
const HOST_MESSAGE_MAX: usize = 600;
/// Hosts named in a condition message; the rest are counted.
const HOSTS_NAMED_MAX: usize = 5;

/// Why a host does not serve every role. Ordered from the most to the least telling: the
/// worst one gives the `Ready` and `Degraded` conditions their reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostReason {
    /// The pod waits for a claim no provisioner binds (no default StorageClass, say).
    VolumeNotBound,
    /// No node takes the pod (resources, taints, selectors), past [`SCHEDULING_GRACE`].
    Unschedulable,
    /// The agent image cannot be pulled.
    ImagePullFailed,
    /// The container cannot be created (a missing Secret or ConfigMap, say).
    ContainerConfigError,
    /// The agent keeps exiting.
    CrashLooping,
    /// The pod failed for good (evicted, say); the StatefulSet makes a new one.
    PodFailed,
    /// The pod waits for a node, within [`SCHEDULING_GRACE`].
    Scheduling,
    /// The agent runs, and its readiness check fails: a role does not answer.
    RoleNotReady,
    /// The container is being created or the pod replaced.
    Starting,
    /// The StatefulSet has not made the pod (yet).
    NoPod,
}

impl HostReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VolumeNotBound => "VolumeNotBound",
            Self::Unschedulable => "Unschedulable",
            Self::ImagePullFailed => "ImagePullFailed",
            Self::ContainerConfigError => "ContainerConfigError",
            Self::CrashLooping => "CrashLooping",
            Self::PodFailed => "PodFailed",
            Self::Scheduling => "Scheduling",
            Self::RoleNotReady => "RoleNotReady",
            Self::Starting => "Starting",
            Self::NoPod => "NoPod",
        }
    }

    /// Whether waiting will not fix it: the HostRole is `Degraded`.
    pub fn failing(self) -> bool {
        self < Self::Scheduling
    }
}

/// Why one host does not serve, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostProblem {
    pub host: String,
    pub reason: HostReason,
    /// What the reason means for this host (without its name).
    pub message: String,
}

/// Why the host `host` (pod `pod`, if it exists) does not serve every role; `None` when it does.
/// Pure: `now` only ages the scheduler's verdict.
pub fn host_problem(host: &str, pod: Option<&Pod>, now: &Time) -> Option<HostProblem> {
    let problem = |reason, message: String| {
        Some(HostProblem {
            host: host.to_string(),
            reason,
            message: bounded(message),
        })
    };
    let Some(pod) = pod else {
        return problem(
            HostReason::NoPod,
            "no pod yet; if this lasts, `kubectl describe statefulset` shows why it cannot be \
             created (a ResourceQuota or an admission policy, say)"
                .into(),
        );
    };
    if pod_ready(pod) {
        return None;
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return problem(HostReason::Starting, "the pod is being replaced".into());
    }
    let status = pod.status.clone().unwrap_or_default();
    if status.phase.as_deref() == Some("Failed") {
        return problem(
            HostReason::PodFailed,
            format!(
                "the pod failed ({}): {}; the StatefulSet replaces it",
                status.reason.as_deref().unwrap_or("no reason given"),
                status.message.as_deref().unwrap_or("no message")
            ),
        );
    }
    let unscheduled = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    if let Some(c) = unscheduled {
        let said = c.message.as_deref().unwrap_or("no message");
        let waited = c
            .last_transition_time
            .as_ref()
            .map_or(Duration::MAX, |t| elapsed(&t.0, &now.0));
        let claims = said.contains("PersistentVolumeClaim");
        let reason = match (waited < SCHEDULING_GRACE, claims) {
            (true, _) => HostReason::Scheduling,
            (false, true) => HostReason::VolumeNotBound,
            (false, false) => HostReason::Unschedulable,
        };
        let advice = if claims {
            "its volume claim is not bound: the cluster needs a default StorageClass, or a \
             provisioner for spec.template.storageClassName (`kubectl get pvc` shows the claim)"
        } else {
            "no node takes the pod: free resources or a node that matches \
             spec.template.nodeSelector and tolerations"
        };
        return problem(reason, format!("{advice}; the scheduler says: {said}"));
    }
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for c in containers {
        let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
        let Some(why) = waiting.and_then(|w| w.reason.as_deref()) else {
            continue;
        };
        let said = waiting.and_then(|w| w.message.as_deref()).unwrap_or("");
        match why {
            "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull" => {
                return problem(
                    HostReason::ImagePullFailed,
                    format!(
                        "cannot pull {} ({why}): {said}; check the image reference and \
                         spec.template.imagePullSecrets",
                        c.image
                    ),
                );
            }
            "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
                return problem(
                    HostReason::ContainerConfigError,
                    format!("container {} cannot start ({why}): {said}", c.name),
                );
            }
            "CrashLoopBackOff" => {
                let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
                let words = last
                    .and_then(|t| t.message.as_deref())
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .unwrap_or("no message");
                return problem(
                    HostReason::CrashLooping,
                    format!(
                        "the {} container exited {} times, last with code {} ({}): {words}",
                        c.name,
                        c.restart_count,
                        last.map_or(0, |t| t.exit_code),
                        last.and_then(|t| t.reason.as_deref())
                            .unwrap_or("no reason")
                    ),
                );
            }
            _ => {}
        }
    }
    let running = status
        .container_statuses
        .iter()
        .flatten()
        .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
    if running {
        return problem(
            HostReason::RoleNotReady,
            "the agent runs and its readiness check fails: a role does not answer yet \
             (`kubectl logs` on the pod says which)"
                .into(),
        );
    }
    problem(
        HostReason::Starting,
        format!(
            "starting (pod {})",
            status.phase.as_deref().unwrap_or("Pending")
        ),
    )
}

/// Time from `then` to `now`; zero when `then` is in the future.
fn elapsed(then: &k8s_openapi::jiff::Timestamp, now: &k8s_openapi::jiff::Timestamp) -> Duration {
    let secs = now.as_second().saturating_sub(then.as_second());
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// A message cut to [`HOST_MESSAGE_MAX`] bytes, on a character boundary.
fn bounded(mut message: String) -> String {
    if message.len() > HOST_MESSAGE_MAX {
        let mut end = HOST_MESSAGE_MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

/// The worst of `problems`, and a message naming the hosts of each distinct problem (at most
/// [`HOSTS_NAMED_MAX`] problems; the rest are counted).
fn summary<'a>(problems: impl Iterator<Item = &'a HostProblem>) -> Option<(HostReason, String)> {
    let mut grouped: BTreeMap<(HostReason, &str), Vec<&str>> = BTreeMap::new();
    for p in problems {
        grouped
            .entry((p.reason, p.message.as_str()))
            .or_default()
            .push(p.host.as_str());
    }
    let worst = grouped.keys().next()?.0;
    let mut text: Vec<String> = grouped
        .iter()
        .take(HOSTS_NAMED_MAX)
        .map(|((_, message), hosts)| {
            let named = hosts[..hosts.len().min(HOSTS_NAMED_MAX)].join(", ");
            match hosts.len().saturating_sub(HOSTS_NAMED_MAX) {
                0 => format!("{named}: {message}"),
                more => format!("{named} and {more} more: {message}"),
            }
        })
        .collect();
    let more: usize = grouped.values().skip(HOSTS_NAMED_MAX).map(Vec::len).sum();
    if more > 0 {
        text.push(format!("and {more} more host(s)"));
    }
    Some((worst, text.join("; ")))
}

/// When the reconciler should look again on its own: a host still within [`SCHEDULING_GRACE`]
/// turns failing without any watched object changing.
pub fn recheck_after(status: &HostRoleStatus) -> Option<Duration> {
    status
        .hosts
        .iter()
        .any(|h| h.reason.as_deref() == Some(HostReason::Scheduling.as_str()))
        .then_some(SCHEDULING_GRACE)
}

/// Each role's state on one host. A host that serves has every role serving; one with no pod
/// has every role pending. When the agent stopped because of one role (its last log line names
/// it, see [`hostrole_config::role_failure_line`]), that role has failed and the others only
/// wait for it; any other failure of the host (no node, no volume, no image) fails every role.
pub fn role_states(
    roles: &[&str],
    pod: Option<&Pod>,
    problem: Option<&HostProblem>,
) -> BTreeMap<String, RoleState> {
    let failed = match (problem, pod) {
        (Some(p), Some(pod)) if p.reason.failing() => {
            Some(agent_last_words(pod).and_then(|words| failed_role(words, roles)))
        }
        _ => None,
    };
    roles
        .iter()
        .map(|role| {
            let state = match (problem, pod, failed) {
                (None, _, _) => RoleState::Serving,
                (_, None, _) => RoleState::Pending,
                (_, _, Some(Some(culprit))) if culprit != *role => RoleState::Starting,
                (_, _, Some(_)) => RoleState::Failed,
                (Some(_), Some(_), None) => RoleState::Starting,
            };
            (role.to_string(), state)
        })
        .collect()
}

/// The termination message of the agent's last exit (the container's last log lines when it
/// failed), or of its current one.
fn agent_last_words(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == crate::desired::AGENT_CONTAINER)
        .and_then(|c| {
            terminated_message(c.state.as_ref())
                .or_else(|| terminated_message(c.last_state.as_ref()))
        })
}

fn terminated_message(state: Option<&k8s_openapi::api::core::v1::ContainerState>) -> Option<&str> {
    state?.terminated.as_ref()?.message.as_deref()
}

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
    let mut problems: Vec<HostProblem> = Vec::new();
    let hosts: Vec<HostStatus> = (0..desired_hosts)
        .map(|i| {
            let host = format!("{name}-{i}");
            let pod = pods_by_name.get(host.as_str()).copied();
            let ready = pod.is_some_and(pod_ready);
            let problem = host_problem(&host, pod, now);
            let status = HostStatus {
                roles: role_states(&server_roles, pod, problem.as_ref()),
                clients: client_results(hr, pod, observed.problems),
                reason: problem.as_ref().map(|p| p.reason.as_str().to_string()),
                message: problem.as_ref().map(|p| p.message.clone()),
                name: host,
                ready,
            };
            problems.extend(problem);
            status
        })
        .collect();
    let failing = summary(problems.iter().filter(|p| p.reason.failing()));
    let not_serving = summary(problems.iter());
    let client_total: usize = hosts.iter().map(|h| h.clients.len()).sum();
    let client_ok = hosts
        .iter()
        .flat_map(|h| &h.clients)
        .filter(|c| c.ok)
        .count();
    let ready_hosts = hosts.iter().filter(|h| h.ready).count() as i32;
    // Pods that show the rollout done stand for the StatefulSet status that lags them.
    let caught_up = observed
        .stateful_set
        .filter(|sts| pods_caught_up(sts, &name, observed.pods));
    let existing = match caught_up {
        Some(sts) => sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        None => observed
            .stateful_set
            .and_then(|s| s.status.as_ref())
            .map_or(0, |s| s.replicas),
    };
    let rolling = caught_up.is_none()
        && rollout_in_progress(observed.stateful_set, generation_of(observed.stateful_set));

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
                let count = format!("{ready_hosts}/{desired_hosts} hosts serve every role");
                match &not_serving {
                    Some((worst, why)) => {
                        cond(READY, false, worst.as_str(), &format!("{count}; {why}"))
                    }
                    // Every host serves but the StatefulSet is still replacing or adding
                    // pods: say so rather than only "4/4 hosts serve every role".
                    None if rolling => cond(
                        READY,
                        false,
                        "RollingOut",
                        &format!(
                            "{count}; the StatefulSet is still replacing pods ({})",
                            rollout_progress(observed.stateful_set)
                        ),
                    ),
                    None => cond(READY, false, "HostsNotReady", &count),
                }
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
            let degraded = if let Some((worst, why)) = &failing {
                cond(DEGRADED, true, worst.as_str(), why)
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
            let pending = ClientStatus::pending(spec);
            let prefix = format!("spec.clients[{i}]");
            if let Some(p) = problems.iter().find(|p| p.field.starts_with(&prefix)) {
                return ClientStatus {
                    reason: p.reason.as_str().to_string(),
                    last_error: p.message.clone(),
                    ..pending
                };
            }
            let condition_type =
                format!("{CLIENT_CONDITION_PREFIX}{}", spec.service.client_name(i));
            let reported = pod
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == condition_type));
            match reported {
                None => pending,
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
                        ok,
                        reason: c.reason.clone().unwrap_or_default(),
                        latency_ms: message.latency_ms.map(|l| l as i64),
                        last_error: if ok { String::new() } else { message.detail },
                        // The agent's word, checked: the schema holds `lastSuccess` to a
                        // date-time, and one bad value would make every status write fail.
                        last_success: message
                            .last_success
                            .filter(|t| t.parse::<k8s_openapi::jiff::Timestamp>().is_ok()),
                        ..pending
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
    Some(NetworkStatus::of(peer, peers))
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

/// How far the StatefulSet's own status says its rollout is, for a message.
fn rollout_progress(sts: Option<&StatefulSet>) -> String {
    let Some(sts) = sts else {
        return "not created yet".into();
    };
    let wanted = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    match &sts.status {
        None => "no status yet".into(),
        Some(st) if st.observed_generation < sts.metadata.generation => {
            "its controller has not seen the current spec".into()
        }
        Some(st) => format!(
            "{}/{wanted} pods on the current revision, {} ready",
            st.updated_replicas.unwrap_or(0),
            st.ready_replicas.unwrap_or(0)
        ),
    }
}

/// Whether the pods show a rollout done that the StatefulSet's status does not say yet (the
/// StatefulSet controller writes it several seconds after its pods turn ready when the cluster
/// is busy; waiting for it would cost a status write of its own): the controller has seen the
/// current StatefulSet spec (so its `updateRevision` is the current one), and every wanted
/// host's pod carries that revision's `controller-revision-hash`, is ready and not being
/// deleted, and no pod of a higher ordinal is left (a scale-down in progress).
fn pods_caught_up(sts: &StatefulSet, name: &str, pods: &[Pod]) -> bool {
    let Some(status) = &sts.status else {
        return false;
    };
    let Some(revision) = status.update_revision.as_deref() else {
        return false;
    };
    if status.observed_generation < sts.metadata.generation {
        return false;
    }
    let wanted = sts
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize;
    let mut on_revision = vec![false; wanted];
    for pod in pods {
        let Some(ordinal) = pod.metadata.name.as_deref().and_then(|n| {
            n.strip_prefix(name)?
                .strip_prefix('-')?
                .parse::<usize>()
                .ok()
        }) else {
            continue;
        };
        let Some(slot) = on_revision.get_mut(ordinal) else {
            return false;
        };
        *slot = pod.metadata.deletion_timestamp.is_none()
            && pod_ready(pod)
            && pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_LABEL))
                .is_some_and(|r| r == revision);
    }
    on_revision.iter().all(|ok| *ok)
}

/// The label the StatefulSet controller puts on each pod: the revision it was made from.
const REVISION_LABEL: &str = "controller-revision-hash";

/// Whether a status change must be written at once, rather than within a couple of seconds
/// (the reconciler lets the rest wait): the first status, a new generation, any condition
/// turning True or False, a new `Degraded` reason (what is failing), a host that was ready and
/// is not (or fewer ready hosts), other hosts, endpoints, the peer network and the printer
/// columns. What is left is progress (hosts turning ready while the `Ready` condition holds,
/// how many pods exist, the reason and message of a condition whose status holds, a host's role
/// states and problem text, client details): while hosts start it changes several times in a
/// few seconds, and the StatefulSet's own status lags its pods', so a host ready before the
/// StatefulSet says so would cost a write of its own.
pub fn urgent(old: Option<&HostRoleStatus>, new: &HostRoleStatus) -> bool {
    let Some(old) = old else { return true };
    let conditions = |s: &HostRoleStatus| -> Vec<(String, String, Option<String>)> {
        s.conditions
            .iter()
            .map(|c| {
                let reason = (c.type_ == DEGRADED).then(|| c.reason.clone());
                (c.type_.clone(), c.status.clone(), reason)
            })
            .collect()
    };
    let names =
        |s: &HostRoleStatus| -> Vec<String> { s.hosts.iter().map(|h| h.name.clone()).collect() };
    let lost_a_host = old.hosts.iter().any(|was| {
        was.ready
            && new
                .hosts
                .iter()
                .any(|now| now.name == was.name && !now.ready)
    });
    old.observed_generation != new.observed_generation
        || new.ready_hosts < old.ready_hosts
        || lost_a_host
        || old.roles != new.roles
        || old.selector != new.selector
        || old.clients != new.clients
        || old.network != new.network
        || old.endpoints != new.endpoints
        || conditions(old) != conditions(new)
        || names(old) != names(new)
}

/// Whether a pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
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
