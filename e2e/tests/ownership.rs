//! The operator never takes over an object it did not make (issue 14, item 1), on a real API
//! server: for each kind it writes, a HostRole whose name (or network) clashes with an existing
//! object leaves that object exactly as it was (no apply, no owner reference, no label) and
//! reports `Degraded`, reason `NameConflict`, with an event naming the object and what to rename.
//! A user's `peers-<network>` Secret labelled for the network is used and never adopted.

use std::time::Duration;

use hostrole_api::HostRole;
use hostrole_e2e::{Env, eventually, tempdir};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(90);

fn api<K>(client: &Client, ns: &str) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(client.clone(), ns)
}

fn apply_yaml(env: &Env, ns: &str, yaml: &str) {
    let dir = tempdir().expect("tempdir");
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, yaml).expect("write manifest");
    env.kubectl_ok(&["apply", "-n", ns, "-f", path.to_str().expect("utf-8")]);
}

/// What another writer would notice of a change: labels, annotations, owners and content.
/// (Not the resourceVersion: controllers write status, e.g. a StatefulSet's.)
fn fingerprint(env: &Env, ns: &str, kind: &str, name: &str) -> Value {
    let json = env.kubectl_ok(&["get", kind, name, "-n", ns, "-o", "json"]);
    let object: Value = serde_json::from_str(&json).expect("object json");
    let meta = &object["metadata"];
    serde_json::json!({
        "uid": meta["uid"],
        "labels": meta["labels"],
        "annotations": meta["annotations"],
        "ownerReferences": meta["ownerReferences"],
        "finalizers": meta["finalizers"],
        "spec": object["spec"],
        "data": object["data"],
        "type": object["type"],
        "roleRef": object["roleRef"],
        "subjects": object["subjects"],
        "automountServiceAccountToken": object["automountServiceAccountToken"],
    })
}

/// The HostRole's Degraded condition when it is True for the current generation.
async fn degraded(client: &Client, ns: &str, name: &str) -> Option<(String, String)> {
    let hr = api::<HostRole>(client, ns).get(name).await.ok()?;
    let generation = hr.metadata.generation;
    hr.status?
        .conditions
        .into_iter()
        .find(|c| {
            c.type_ == "Degraded" && c.status == "True" && c.observed_generation == generation
        })
        .map(|c| (c.reason, c.message))
}

/// A foreign object `kind/name` exists (made from `foreign`); then the HostRole (`hostrole`)
/// that needs the name is applied. The object must stay exactly as it was and the HostRole
/// must report the conflict, naming the object. Returns the namespace (still holding both).
async fn assert_no_takeover(
    env: &Env,
    prefix: &str,
    operator_args: &[&str],
    foreign: &str,
    (kind, name): (&str, &str),
    hostrole: &str,
    hostrole_name: &str,
) -> (String, hostrole_e2e::Operator) {
    let ns = env.namespace(prefix).await;
    let operator = env.operator(&ns, operator_args);
    apply_yaml(env, &ns, foreign);
    let before = fingerprint(env, &ns, kind, name);
    apply_yaml(env, &ns, hostrole);

    // On code that takes objects over, the object changes first: fail at once, not at the
    // timeout.
    let outcome = eventually(
        &format!("{hostrole_name} reports the conflict (or {kind}/{name} is changed)"),
        CONVERGE,
        || async {
            if fingerprint(env, &ns, kind, name) != before {
                return Some(Err(()));
            }
            degraded(&env.client, &ns, hostrole_name).await.map(Ok)
        },
    )
    .await;
    let after = fingerprint(env, &ns, kind, name);
    assert_eq!(
        after,
        before,
        "the foreign {kind} {name} was changed (taken over): {}",
        operator.logs()
    );
    let (reason, message) = outcome.expect("no change to the foreign object");
    assert_eq!(reason, "NameConflict", "{message}");
    let kind_name = kind_name(kind);
    assert!(
        message.contains(&format!("{kind_name} {name} already exists"))
            && message.contains("left untouched")
            && message.contains("rename"),
        "the condition names the object and what to rename: {message}"
    );
    let notes = eventually(
        "a NameConflict event names the object",
        Duration::from_secs(30),
        || async {
            let notes = env.kubectl_ok(&[
                "get",
                "events",
                "-n",
                &ns,
                "--field-selector",
                &format!("involvedObject.name={hostrole_name},reason=NameConflict"),
                "-o",
                "jsonpath={.items[*].message}",
            ]);
            notes
                .contains(&format!("{kind_name} {name} already exists"))
                .then_some(notes)
        },
    )
    .await;
    assert!(notes.contains("rename"), "{notes}");
    // Another reconcile (a touch of the HostRole) still leaves it alone.
    env.kubectl_ok(&[
        "annotate",
        "hrole",
        hostrole_name,
        "-n",
        &ns,
        "example.com/touched=yes",
    ]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fingerprint(env, &ns, kind, name), before);
    (ns, operator)
}

/// The kind as the operator names it in messages.
fn kind_name(kubectl_kind: &str) -> &'static str {
    match kubectl_kind {
        "service" => "Service",
        "configmap" => "ConfigMap",
        "serviceaccount" => "ServiceAccount",
        "rolebinding" => "RoleBinding",
        "statefulset" => "StatefulSet",
        "networkpolicy" => "NetworkPolicy",
        "secret" => "Secret",
        other => panic!("no kind name for {other}"),
    }
}

const WEB: &str = "apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: web}
spec:
  servers:
    web: {port: 8080}
";

/// Nothing of the HostRole was written when a conflict was found before any write.
async fn nothing_written(env: &Env, ns: &str, hostrole: &str) {
    let sts = api::<StatefulSet>(&env.client, ns)
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={hostrole}")))
        .await
        .expect("list");
    assert!(
        sts.items.is_empty(),
        "no StatefulSet is made for a HostRole with a name conflict"
    );
}

#[tokio::test]
async fn a_hostrole_named_like_a_users_service_leaves_it_untouched() {
    let env = Env::new().await;
    let foreign = "apiVersion: v1
kind: Service
metadata: {name: web, labels: {team: shop}}
spec:
  selector: {app: shop}
  ports: [{port: 80, targetPort: 8080}]
";
    let (ns, _operator) = assert_no_takeover(
        &env,
        "own-svc",
        &[],
        foreign,
        ("service", "web"),
        WEB,
        "web",
    )
    .await;
    nothing_written(&env, &ns, "web").await;
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn a_hostrole_whose_configmap_name_is_taken_leaves_it_untouched_and_recovers_when_it_goes() {
    let env = Env::new().await;
    let foreign = "apiVersion: v1
kind: ConfigMap
metadata: {name: web-host}
data: {settings: precious}
";
    let (ns, _operator) = assert_no_takeover(
        &env,
        "own-cm",
        &[],
        foreign,
        ("configmap", "web-host"),
        WEB,
        "web",
    )
    .await;
    nothing_written(&env, &ns, "web").await;
    // Once the user renames their ConfigMap out of the way, the HostRole converges (the
    // operator looks again on its own; it does not watch objects that are not its own).
    env.kubectl_ok(&["delete", "configmap", "web-host", "-n", &ns]);
    eventually("the HostRole is Ready", CONVERGE, || async {
        let hr = api::<HostRole>(&env.client, &ns).get("web").await.ok()?;
        hr.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;
    let cm = api::<ConfigMap>(&env.client, &ns)
        .get("web-host")
        .await
        .expect("the operator's ConfigMap");
    assert!(cm.data.expect("data").contains_key("agent.yaml"));
    env.delete_namespace(&ns).await;
}

const LAPTOP: &str = "apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: laptop}
spec:
  clients:
    - {service: web, url: 'http://example.invalid/'}
";

#[tokio::test]
async fn a_hostrole_whose_service_account_name_is_taken_leaves_it_untouched() {
    let env = Env::new().await;
    let foreign = "apiVersion: v1
kind: ServiceAccount
metadata: {name: laptop-host, labels: {team: ci}}
automountServiceAccountToken: true
";
    let (ns, _operator) = assert_no_takeover(
        &env,
        "own-sa",
        &[],
        foreign,
        ("serviceaccount", "laptop-host"),
        LAPTOP,
        "laptop",
    )
    .await;
    nothing_written(&env, &ns, "laptop").await;
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn a_hostrole_whose_role_binding_name_is_taken_leaves_it_untouched() {
    let env = Env::new().await;
    let foreign = "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: laptop-host}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: default}]
";
    let (ns, _operator) = assert_no_takeover(
        &env,
        "own-rb",
        &[],
        foreign,
        ("rolebinding", "laptop-host"),
        LAPTOP,
        "laptop",
    )
    .await;
    nothing_written(&env, &ns, "laptop").await;
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn a_hostrole_named_like_a_users_statefulset_leaves_it_untouched() {
    let env = Env::new().await;
    let foreign = "apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  replicas: 0
  serviceName: shop
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers: [{name: shop, image: example.invalid/shop:1}]
";
    let (ns, _operator) = assert_no_takeover(
        &env,
        "own-sts",
        &[],
        foreign,
        ("statefulset", "web"),
        WEB,
        "web",
    )
    .await;
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn a_hostrole_named_like_a_users_network_policy_leaves_it_untouched() {
    let env = Env::new().await;
    let foreign = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web}
spec:
  podSelector: {matchLabels: {app: shop}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: front}}}]}]
";
    let (ns, _operator) = assert_no_takeover(
        &env,
        "own-np",
        &["--network-policies"],
        foreign,
        ("networkpolicy", "web"),
        WEB,
        "web",
    )
    .await;
    nothing_written(&env, &ns, "web").await;
    env.delete_namespace(&ns).await;
}

const FAMILY: &str = "apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: family}
spec:
  peer: {network: family}
";

#[tokio::test]
async fn a_network_named_like_a_users_secret_leaves_it_untouched() {
    let env = Env::new().await;
    // Not labelled for the network: someone else's Secret that happens to have the name.
    let foreign = "apiVersion: v1
kind: Secret
metadata: {name: peers-family, labels: {team: billing}}
type: Opaque
stringData: {secret: not-for-peers, token: abc}
";
    let (ns, _operator) = assert_no_takeover(
        &env,
        "own-secret",
        &[],
        foreign,
        ("secret", "peers-family"),
        FAMILY,
        "family",
    )
    .await;
    nothing_written(&env, &ns, "family").await;
    let (_, message) = degraded(&env.client, &ns, "family")
        .await
        .expect("degraded");
    assert!(
        message.contains("label that Secret hostrole.dev/network=family"),
        "the message says how to opt the Secret in: {message}"
    );
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn a_network_named_like_a_users_service_leaves_it_untouched() {
    let env = Env::new().await;
    let foreign = "apiVersion: v1
kind: Service
metadata: {name: peers-family}
spec:
  selector: {app: family-photos}
  ports: [{port: 443}]
";
    let (ns, _operator) = assert_no_takeover(
        &env,
        "own-netsvc",
        &[],
        foreign,
        ("service", "peers-family"),
        FAMILY,
        "family",
    )
    .await;
    nothing_written(&env, &ns, "family").await;
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn a_users_network_secret_labelled_for_the_network_is_used_and_never_adopted() {
    let env = Env::new().await;
    let ns = env.namespace("own-consent").await;
    let _operator = env.operator(&ns, &[]);
    apply_yaml(
        &env,
        &ns,
        "apiVersion: v1
kind: Secret
metadata: {name: peers-family, labels: {hostrole.dev/network: family}}
type: Opaque
stringData: {secret: a-long-random-string-chosen-by-the-user}
",
    );
    let before = fingerprint(&env, &ns, "secret", "peers-family");
    apply_yaml(&env, &ns, FAMILY);
    eventually("the peer is Ready", CONVERGE, || async {
        let hr = api::<HostRole>(&env.client, &ns).get("family").await.ok()?;
        hr.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;
    assert_eq!(
        fingerprint(&env, &ns, "secret", "peers-family"),
        before,
        "the user's Secret is used as it is: no owner reference, no label, same value"
    );
    let sts = api::<StatefulSet>(&env.client, &ns)
        .get("family")
        .await
        .expect("the peer's StatefulSet");
    let mounted = serde_json::to_string(&sts.spec.expect("spec").template.spec).expect("json");
    assert!(
        mounted.contains("\"secretName\":\"peers-family\""),
        "{mounted}"
    );
    let notes = eventually("a UsingSecret event", Duration::from_secs(30), || async {
        let notes = env.kubectl_ok(&[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector",
            "involvedObject.name=family,reason=UsingSecret",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        (!notes.is_empty()).then_some(notes)
    })
    .await;
    assert!(notes.contains("never changes or deletes it"), "{notes}");

    // The network's last member goes: its Service is collected, the user's Secret stays.
    env.kubectl_ok(&["delete", "hrole", "family", "-n", &ns, "--wait=true"]);
    eventually("the network Service is collected", CONVERGE, || async {
        let out = env.kubectl_ok(&[
            "get",
            "service",
            "-n",
            &ns,
            "-l",
            "hostrole.dev/network=family",
            "-o",
            "name",
        ]);
        out.trim().is_empty().then_some(())
    })
    .await;
    assert_eq!(
        fingerprint(&env, &ns, "secret", "peers-family"),
        before,
        "the user's Secret outlives the network and is unchanged"
    );
    env.delete_namespace(&ns).await;
}
