//! Status aggregation from the StatefulSet and its pods.

use hostrole_api::manifest;
use hostrole_api::{HostRole, RoleState};
use hostrole_operator::status::{self, Observed};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodStatus,
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
        ("False", "HostsNotReady")
    );
    assert_eq!(ready.message, "0/2 hosts serve every role");
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
    assert_eq!(find(&s.conditions, "Ready").status, "False");
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
        ("True", "HostsFailing")
    );
    assert_eq!(degraded.message, "office-1: CrashLoopBackOff");
    assert_eq!(s.hosts[1].roles.get("web"), Some(&RoleState::Failed));
    assert_eq!(s.ready_hosts, 1);
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
