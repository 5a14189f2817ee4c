//! Status aggregation from the StatefulSet and its pods.

use hostrole_api::manifest;
use hostrole_api::{HostRole, RoleState};
use hostrole_operator::status::{self, Observed};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod,
    PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

fn hostrole(replicas: i32, generation: i64) -> HostRole {
    let mut hr = manifest::parse(
        &format!(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: office}}\nspec:\n  replicas: {replicas}\n  servers:\n    web: {{}}\n"
        ),
        "test",
    )
    .expect("valid");
    hr.metadata.namespace = Some("lan".into());
    hr.metadata.generation = Some(generation);
    hr
}

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + secs).expect("timestamp"))
}

/// A StatefulSet whose controller has caught up with `replicas` hosts.
fn settled(replicas: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            generation: Some(4),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            ..Default::default()
        }),
        status: Some(StatefulSetStatus {
            observed_generation: Some(4),
            replicas,
            ready_replicas: Some(replicas),
            updated_replicas: Some(replicas),
            current_revision: Some("office-abc".into()),
            update_revision: Some("office-abc".into()),
            ..Default::default()
        }),
    }
}

fn pod(name: &str, ready: bool, waiting: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            container_statuses: waiting.map(|reason| {
                vec![ContainerStatus {
                    name: "agent".into(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(reason.into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition present")
}

#[test]
fn a_new_hostrole_is_progressing_and_not_ready() {
    let hr = hostrole(2, 1);
    let s = status::status(&hr, &Observed::default(), &at(0));
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!((s.replicas, s.ready_hosts), (0, 0));
    assert_eq!(s.roles, "web");
    assert_eq!(
        s.selector,
        "app.kubernetes.io/instance=office,app.kubernetes.io/name=hostrole-host"
    );
    let ready = find(&s.conditions, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NoPod")
    );
    assert!(
        ready
            .message
            .starts_with("0/2 hosts serve every role; office-0, office-1: no pod yet"),
        "{}",
        ready.message
    );
    assert_eq!(find(&s.conditions, "Progressing").status, "True");
    assert_eq!(find(&s.conditions, "Degraded").status, "False");
    assert_eq!(s.hosts.len(), 2);
    assert_eq!(s.hosts[0].name, "office-0");
    assert_eq!(s.hosts[0].roles.get("web"), Some(&RoleState::Pending));
    for c in &s.conditions {
        assert_eq!(c.observed_generation, Some(1));
    }
}

#[test]
fn all_hosts_ready_means_ready() {
    let hr = hostrole(2, 3);
    let sts = settled(2);
    let pods = [pod("office-0", true, None), pod("office-1", true, None)];
    let observed = Observed {
        stateful_set: Some(&sts),
        pods: &pods,
        failure: None,
        problems: &[],
        network_pods: &[],
    };
    let s = status::status(&hr, &observed, &at(0));
    assert_eq!((s.replicas, s.ready_hosts), (2, 2));
    let ready = find(&s.conditions, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "AllRolesServing")
    );
    assert_eq!(find(&s.conditions, "Progressing").reason, "RolloutComplete");
    assert!(
        s.hosts
            .iter()
            .all(|h| h.ready && h.roles.get("web") == Some(&RoleState::Serving))
    );
}

#[test]
fn a_rollout_in_progress_is_not_ready_even_with_ready_pods() {
    let hr = hostrole(2, 3);
    let mut sts = settled(2);
    if let Some(st) = sts.status.as_mut() {
        st.update_revision = Some("office-def".into());
        st.updated_replicas = Some(1);
    }
    let pods = [pod("office-0", true, None), pod("office-1", true, None)];
    let observed = Observed {
        stateful_set: Some(&sts),
        pods: &pods,
        failure: None,
        problems: &[],
        network_pods: &[],
    };
    let s = status::status(&hr, &observed, &at(0));
    let ready = find(&s.conditions, "Ready");
    assert_eq!(ready.status, "False");
    // Every host serves, so the reason is the rollout, and the message does not read as if
    // everything were fine ("2/2 hosts serve every role" alone, under a False condition).
    assert_eq!(ready.reason, "RollingOut");
    assert!(
        ready
            .message
            .contains("still replacing pods (1/2 pods on the current revision"),
        "{}",
        ready.message
    );
    assert_eq!(find(&s.conditions, "Progressing").reason, "RollingOut");
}

#[test]
fn a_crashing_host_is_degraded_and_named() {
    let hr = hostrole(2, 1);
    let sts = settled(2);
    let pods = [
        pod("office-0", true, None),
        pod("office-1", false, Some("CrashLoopBackOff")),
    ];
    let observed = Observed {
        stateful_set: Some(&sts),
        pods: &pods,
        failure: None,
        problems: &[],
        network_pods: &[],
    };
    let s = status::status(&hr, &observed, &at(0));
    let degraded = find(&s.conditions, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "CrashLooping")
    );
    assert!(
        degraded
            .message
            .starts_with("office-1: the agent container exited 0 times"),
        "{}",
        degraded.message
    );
    assert_eq!(s.hosts[1].roles.get("web"), Some(&RoleState::Failed));
    assert_eq!(s.hosts[1].reason.as_deref(), Some("CrashLooping"));
    assert_eq!(
        (s.hosts[0].reason.as_ref(), s.hosts[0].message.as_ref()),
        (None, None)
    );
    assert_eq!(s.ready_hosts, 1);
}

/// A pod the scheduler refused `waited` seconds before `at(0)`, saying `message`.
fn unscheduled(name: &str, waited: i64, message: &str) -> Pod {
    let mut p = pod(name, false, None);
    if let Some(status) = p.status.as_mut() {
        status.phase = Some("Pending".into());
        status.conditions = Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(message.into()),
            last_transition_time: Some(at(-waited)),
            ..Default::default()
        }]);
    }
    p
}

fn observe<'a>(sts: &'a StatefulSet, pods: &'a [Pod]) -> Observed<'a> {
    Observed {
        stateful_set: Some(sts),
        pods,
        ..Default::default()
    }
}

const NO_STORAGE_CLASS: &str = "0/1 nodes are available: pod has unbound immediate \
    PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for \
    scheduling.";

#[test]
fn a_claim_no_provisioner_binds_says_so_once_the_scheduler_has_had_its_chance() {
    let hr = hostrole(1, 1);
    let sts = settled(1);
    // Just refused: a provisioner may still bind the claim. Not failing, and look again soon.
    let pods = [unscheduled("office-0", 10, NO_STORAGE_CLASS)];
    let s = status::status(&hr, &observe(&sts, &pods), &at(0));
    assert_eq!(find(&s.conditions, "Ready").reason, "Scheduling");
    assert_eq!(find(&s.conditions, "Degraded").status, "False");
    assert_eq!(s.hosts[0].roles.get("web"), Some(&RoleState::Starting));
    assert_eq!(status::recheck_after(&s), Some(status::SCHEDULING_GRACE));

    let pods = [unscheduled("office-0", 120, NO_STORAGE_CLASS)];
    let s = status::status(&hr, &observe(&sts, &pods), &at(0));
    let (ready, degraded) = (
        find(&s.conditions, "Ready"),
        find(&s.conditions, "Degraded"),
    );
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "VolumeNotBound")
    );
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "VolumeNotBound")
    );
    assert!(
        degraded
            .message
            .starts_with("office-0: its volume claim is not bound")
    );
    assert!(degraded.message.contains("default StorageClass"));
    assert!(degraded.message.contains("spec.template.storageClassName"));
    assert!(
        degraded
            .message
            .contains("pod has unbound immediate PersistentVolumeClaims")
    );
    assert!(
        ready
            .message
            .starts_with("0/1 hosts serve every role; office-0: its volume claim")
    );
    assert_eq!(s.hosts[0].reason.as_deref(), Some("VolumeNotBound"));
    assert_eq!(s.hosts[0].roles.get("web"), Some(&RoleState::Failed));
    assert_eq!(status::recheck_after(&s), None);
}

#[test]
fn a_pod_no_node_takes_is_unschedulable_with_the_schedulers_words() {
    let hr = hostrole(1, 1);
    let sts = settled(1);
    let said = "0/3 nodes are available: 3 Insufficient memory.";
    let pods = [unscheduled("office-0", 300, said)];
    let s = status::status(&hr, &observe(&sts, &pods), &at(0));
    let degraded = find(&s.conditions, "Degraded");
    assert_eq!(degraded.reason, "Unschedulable");
    assert!(degraded.message.ends_with(said), "{}", degraded.message);
}

#[test]
fn an_image_that_cannot_be_pulled_is_named_with_the_pull_error() {
    let hr = hostrole(1, 1);
    let sts = settled(1);
    let mut p = pod("office-0", false, Some("ImagePullBackOff"));
    if let Some(c) = p
        .status
        .as_mut()
        .and_then(|s| s.container_statuses.as_mut())
        .and_then(|cs| cs.first_mut())
    {
        c.image = "registry.invalid/hostrole/agent:0.1.0".into();
        if let Some(w) = c.state.as_mut().and_then(|s| s.waiting.as_mut()) {
            w.message = Some("Back-off pulling image: 401 Unauthorized".into());
        }
    }
    let pods = [p];
    let s = status::status(&hr, &observe(&sts, &pods), &at(0));
    let degraded = find(&s.conditions, "Degraded");
    assert_eq!(degraded.reason, "ImagePullFailed");
    for part in [
        "office-0: cannot pull registry.invalid/hostrole/agent:0.1.0 (ImagePullBackOff)",
        "401 Unauthorized",
        "imagePullSecrets",
    ] {
        assert!(
            degraded.message.contains(part),
            "{part} in {}",
            degraded.message
        );
    }
}

#[test]
fn a_crash_loop_carries_the_agents_last_words() {
    use k8s_openapi::api::core::v1::ContainerStateTerminated;
    let hr = hostrole(1, 1);
    let sts = settled(1);
    let mut p = pod("office-0", false, Some("CrashLoopBackOff"));
    if let Some(c) = p
        .status
        .as_mut()
        .and_then(|s| s.container_statuses.as_mut())
        .and_then(|cs| cs.first_mut())
    {
        c.restart_count = 7;
        c.last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 2,
                reason: Some("Error".into()),
                message: Some("error: cannot bind 0.0.0.0:80: permission denied\n".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let pods = [p];
    let s = status::status(&hr, &observe(&sts, &pods), &at(0));
    assert_eq!(
        s.hosts[0].message.as_deref(),
        Some(
            "the agent container exited 7 times, last with code 2 (Error): error: \
             cannot bind 0.0.0.0:80: permission denied"
        )
    );
}

#[test]
fn a_running_agent_that_is_not_ready_is_starting_not_failing() {
    use k8s_openapi::api::core::v1::ContainerStateRunning;
    let hr = hostrole(1, 1);
    let sts = settled(1);
    let mut p = pod("office-0", false, None);
    if let Some(status) = p.status.as_mut() {
        status.container_statuses = Some(vec![ContainerStatus {
            name: "agent".into(),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            }),
            ..Default::default()
        }]);
    }
    let pods = [p];
    let s = status::status(&hr, &observe(&sts, &pods), &at(0));
    assert_eq!(find(&s.conditions, "Ready").reason, "RoleNotReady");
    assert_eq!(find(&s.conditions, "Degraded").status, "False");
    assert_eq!(s.hosts[0].roles.get("web"), Some(&RoleState::Starting));
}

#[test]
fn condition_messages_stay_bounded_however_many_hosts_fail_and_however_long_the_words() {
    let hr = hostrole(40, 1);
    let sts = settled(40);
    // Every host a different message (the scheduler counts nodes): each is cut, five are named.
    let pods: Vec<Pod> = (0..40)
        .map(|i| {
            let said = format!(
                "0/{i} nodes are available: {}",
                "node(s) had taint x. ".repeat(500)
            );
            unscheduled(&format!("office-{i}"), 600, &said)
        })
        .collect();
    let s = status::status(&hr, &observe(&sts, &pods), &at(0));
    let degraded = find(&s.conditions, "Degraded");
    assert!(degraded.message.len() < 4_000, "{}", degraded.message.len());
    assert!(
        degraded.message.ends_with("; and 35 more host(s)"),
        "{}",
        degraded.message
    );
    assert!(
        s.hosts
            .iter()
            .all(|h| h.message.as_ref().is_some_and(|m| m.len() <= 610))
    );
    // The same message on every host: said once, five hosts named.
    let pods: Vec<Pod> = (0..40)
        .map(|i| unscheduled(&format!("office-{i}"), 600, "0/3 nodes are available."))
        .collect();
    let s = status::status(&hr, &observe(&sts, &pods), &at(0));
    let degraded = find(&s.conditions, "Degraded");
    assert!(
        degraded.message.starts_with(
            "office-0, office-1, office-2, office-3, office-4 and 35 more: no node takes"
        ),
        "{}",
        degraded.message
    );
}

#[test]
fn a_spec_the_operator_cannot_realise_is_reported() {
    let hr = hostrole(1, 2);
    let observed = Observed {
        failure: Some((
            "UnsupportedInCluster".into(),
            "spec.servers.web.site.path is for standalone agents only".into(),
        )),
        ..Default::default()
    };
    let s = status::status(&hr, &observed, &at(0));
    let ready = find(&s.conditions, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "UnsupportedInCluster")
    );
    let degraded = find(&s.conditions, "Degraded");
    assert_eq!(degraded.status, "True");
    assert!(degraded.message.contains("spec.servers.web.site.path"));
}

#[test]
fn zero_replicas_is_ready_with_no_hosts() {
    let hr = hostrole(0, 1);
    let sts = settled(0);
    let observed = Observed {
        stateful_set: Some(&sts),
        ..Default::default()
    };
    let s = status::status(&hr, &observed, &at(0));
    assert_eq!(find(&s.conditions, "Ready").reason, "NoHosts");
    assert!(s.hosts.is_empty());
}

#[test]
fn unchanged_inputs_give_the_same_status_so_nothing_is_written() {
    let mut hr = hostrole(1, 1);
    let sts = settled(1);
    let pods = [pod("office-0", true, None)];
    let observed = Observed {
        stateful_set: Some(&sts),
        pods: &pods,
        failure: None,
        problems: &[],
        network_pods: &[],
    };
    let first = status::status(&hr, &observed, &at(0));
    hr.status = Some(first.clone());
    let later = status::status(&hr, &observed, &at(600));
    assert_eq!(
        first, later,
        "a later reconcile computes an identical status"
    );

    // A transition stamps only the condition that changed.
    let not_ready = [pod("office-0", false, None)];
    let observed = Observed {
        stateful_set: Some(&sts),
        pods: &not_ready,
        failure: None,
        problems: &[],
        network_pods: &[],
    };
    let changed = status::status(&hr, &observed, &at(900));
    assert_eq!(
        find(&changed.conditions, "Ready").last_transition_time,
        at(900)
    );
    assert_eq!(
        find(&changed.conditions, "Degraded").last_transition_time,
        at(0)
    );
}

#[test]
fn a_clients_last_success_is_copied_only_when_it_is_a_timestamp() {
    // A host's agent writes its client results on its pod; what it writes must not make the
    // HostRole's status unwritable (the schema holds lastSuccess to a date-time).
    let hr = {
        let mut hr = manifest::parse(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: office}\nspec:\n  clients:\n    - {service: web, url: \"http://intranet.lan/\"}\n",
            "test",
        )
        .expect("valid");
        hr.metadata.namespace = Some("lan".into());
        hr
    };
    let sts = settled(1);
    let reported = |success: &str| {
        let mut p = pod("office-0", true, None);
        if let Some(cs) = p.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            cs.push(PodCondition {
                type_: "clients.hostrole.dev/web-0".into(),
                status: "True".into(),
                reason: Some("Succeeded".into()),
                message: Some(format!("latencyMs=12; lastSuccess={success}; 200 OK")),
                ..Default::default()
            });
        }
        let pods = [p];
        status::status(&hr, &observe(&sts, &pods), &at(0)).hosts[0].clients[0]
            .last_success
            .clone()
    };
    assert_eq!(
        reported("2026-11-25T03:00:00Z").as_deref(),
        Some("2026-11-25T03:00:00Z")
    );
    assert_eq!(reported("yesterday"), None);
    assert_eq!(reported("2026-13-45T99:00:00Z"), None);
}

#[test]
fn the_role_the_agent_names_in_its_last_words_has_failed_and_the_others_wait() {
    let mut hr = manifest::parse(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: office}\nspec:\n  servers:\n    web: {}\n    mail: {domains: [office.lan]}\n",
        "test",
    )
    .expect("valid");
    hr.metadata.namespace = Some("lan".into());
    let sts = settled(1);
    let crashing = |message: Option<String>| {
        let mut p = pod("office-0", false, Some("CrashLoopBackOff"));
        if let Some(statuses) = p
            .status
            .as_mut()
            .and_then(|s| s.container_statuses.as_mut())
        {
            statuses[0].last_state = Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 1,
                    reason: Some("Error".into()),
                    message,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        p
    };
    let words = format!(
        "2026-12-01T10:00:00Z INFO hostrole_agent: binding\n{}\n",
        hostrole_config::role_failure_line(
            "mail",
            "the mail role cannot start: cannot listen on 0.0.0.0:25 for the smtp role: \
             Address in use"
        )
    );
    let pods = [crashing(Some(words))];
    let s = status::status(&hr, &observe(&sts, &pods), &at(0));
    assert_eq!(s.hosts[0].reason.as_deref(), Some("CrashLooping"));
    assert_eq!(
        (s.hosts[0].roles.get("mail"), s.hosts[0].roles.get("web")),
        (Some(&RoleState::Failed), Some(&RoleState::Starting)),
        "{:?}",
        s.hosts[0]
    );
    assert!(
        s.hosts[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("hostrole-agent: role mail failed")),
        "{:?}",
        s.hosts[0].message
    );

    // Last words that name no role of this host (none, or another's): every role has failed.
    for words in [
        None,
        Some("error: out of memory".to_string()),
        Some(hostrole_config::role_failure_line("index", "x")),
    ] {
        let pods = [crashing(words.clone())];
        let s = status::status(&hr, &observe(&sts, &pods), &at(0));
        assert_eq!(
            (s.hosts[0].roles.get("mail"), s.hosts[0].roles.get("web")),
            (Some(&RoleState::Failed), Some(&RoleState::Failed)),
            "{words:?}"
        );
    }
}

#[test]
fn progress_detail_can_wait_but_readiness_and_failures_cannot() {
    let hr = hostrole(2, 3);
    let mut sts = settled(2);
    if let Some(s) = sts.status.as_mut() {
        s.ready_replicas = Some(0);
    }
    let observe = |pods: &[Pod]| {
        let observed = Observed {
            stateful_set: Some(&sts),
            pods,
            ..Default::default()
        };
        status::status(&hr, &observed, &at(10))
    };
    let first = observe(&[]);
    assert!(status::urgent(None, &first), "the first status");
    // The StatefulSet has made its pods (the scale subresource's count), none ready yet.
    assert_eq!(first.replicas, 2);
    let mut none_made = first.clone();
    none_made.replicas = 0;
    assert!(!status::urgent(Some(&none_made), &first));
    // The pods appear, still starting: only the reasons and host details change.
    let starting = observe(&[
        pod("office-0", false, Some("ContainerCreating")),
        pod("office-1", false, Some("ContainerCreating")),
    ]);
    assert_ne!(first, starting, "the status did change");
    assert!(!status::urgent(Some(&first), &starting), "{starting:?}");
    // One host of two turns ready: progress, the HostRole is not ready yet.
    let one = observe(&[
        pod("office-0", true, None),
        pod("office-1", false, Some("ContainerCreating")),
    ]);
    assert_eq!(one.ready_hosts, 1);
    assert!(!status::urgent(Some(&starting), &one));
    // Both: Ready turns True, at once.
    let both = observe(&[pod("office-0", true, None), pod("office-1", true, None)]);
    assert_eq!(find(&both.conditions, "Ready").status, "True");
    assert!(status::urgent(Some(&one), &both));
    // A ready host lost: at once, also while Ready was False already.
    assert!(status::urgent(Some(&both), &one));
    assert!(status::urgent(Some(&one), &starting));
    // A host that cannot pull its image: Degraded, at once.
    let failing = observe(&[
        pod("office-0", true, None),
        pod("office-1", false, Some("ImagePullBackOff")),
    ]);
    assert_eq!(find(&failing.conditions, "Degraded").status, "True");
    assert!(status::urgent(Some(&one), &failing));
    // A new generation: at once, even with nothing else changed.
    let mut newer = one.clone();
    newer.observed_generation = Some(4);
    assert!(status::urgent(Some(&one), &newer));
}

/// A pod made from StatefulSet revision `revision`.
fn on_revision(name: &str, ready: bool, revision: &str) -> Pod {
    let mut p = pod(name, ready, None);
    p.metadata.labels = Some(std::collections::BTreeMap::from([(
        "controller-revision-hash".to_string(),
        revision.to_string(),
    )]));
    p
}

#[test]
fn ready_pods_of_the_current_revision_end_a_rollout_the_statefulset_status_has_not_caught_up_with()
{
    let hr = hostrole(2, 3);
    // The controller has seen the spec (revision def) but not yet counted its ready pods.
    let mut sts = settled(2);
    if let Some(st) = sts.status.as_mut() {
        st.update_revision = Some("office-def".into());
        st.updated_replicas = Some(0);
        st.ready_replicas = Some(0);
    }
    let judge = |sts: &StatefulSet, pods: &[Pod]| {
        let s = status::status(&hr, &observe(sts, pods), &at(0));
        (
            find(&s.conditions, "Ready").status.clone(),
            find(&s.conditions, "Progressing").reason.clone(),
        )
    };
    let done = [
        on_revision("office-0", true, "office-def"),
        on_revision("office-1", true, "office-def"),
    ];
    assert_eq!(
        judge(&sts, &done),
        ("True".into(), "RolloutComplete".into())
    );
    if let Some(st) = sts.status.as_mut() {
        st.replicas = 1;
    }
    let s = status::status(&hr, &observe(&sts, &done), &at(0));
    assert_eq!(s.replicas, 2, "the pods stand for the lagging count too");
    // Not while a pod is of the old revision, not ready, being deleted, or missing, nor while a
    // pod beyond the replicas is left.
    let old = [
        on_revision("office-0", true, "office-def"),
        on_revision("office-1", true, "office-abc"),
    ];
    let unready = [
        on_revision("office-0", true, "office-def"),
        on_revision("office-1", false, "office-def"),
    ];
    let mut deleting = done.clone();
    deleting[1].metadata.deletion_timestamp = Some(at(0));
    let missing = [on_revision("office-0", true, "office-def")];
    let extra = [
        on_revision("office-0", true, "office-def"),
        on_revision("office-1", true, "office-def"),
        on_revision("office-2", true, "office-def"),
    ];
    for pods in [&old[..], &unready, &deleting, &missing, &extra] {
        assert_eq!(judge(&sts, pods).1, "RollingOut", "{pods:?}");
        assert_eq!(judge(&sts, pods).0, "False");
    }
    // Nor when the controller has not seen the latest spec: its updateRevision is stale.
    if let Some(st) = sts.status.as_mut() {
        st.observed_generation = Some(3);
    }
    assert_eq!(judge(&sts, &done).1, "RollingOut");
}
