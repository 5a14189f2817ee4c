//! The operator binary against a real API server, etcd, controller-manager (garbage collection,
//! StatefulSet controller) and a simulated node. Needs KUBECONFIG; `./test.sh` starts the local
//! control plane and runs these.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use hostrole_api::render::CONFIG_KEY;
use hostrole_api::{HostRole, RoleState};
use hostrole_config::AgentConfig;
use hostrole_e2e::{AGENT_IMAGE, Env, eventually, repo_root};
use hostrole_operator::desired::{CONFIG_HASH_ANNOTATION, digest_data, selector_string};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Service};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

const CONVERGE: Duration = Duration::from_secs(90);
const MANAGED: &str = "app.kubernetes.io/managed-by=hostrole-operator";

fn api<K>(client: &Client, ns: &str) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(client.clone(), ns)
}

/// Ready=True for the current generation.
fn is_ready(hr: &HostRole) -> bool {
    let generation = hr.metadata.generation;
    hr.status.as_ref().is_some_and(|s| {
        s.observed_generation == generation
            && s.conditions.iter().any(|c| {
                c.type_ == "Ready" && c.status == "True" && c.observed_generation == generation
            })
    })
}

async fn wait_ready(client: &Client, ns: &str, name: &str) -> HostRole {
    let hrs = api::<HostRole>(client, ns);
    eventually(
        &format!("HostRole {ns}/{name} is Ready"),
        CONVERGE,
        || async { hrs.get(name).await.ok().filter(is_ready) },
    )
    .await
}

async fn ready_pods(client: &Client, ns: &str, hostrole: &str) -> Vec<Pod> {
    api::<Pod>(client, ns)
        .list(&ListParams::default().labels(&selector_string(hostrole)))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(hostrole_operator::status::pod_ready)
        .collect()
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples"))
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn apply(env: &Env, ns: &str, file: &std::path::Path) {
    env.kubectl_ok(&["apply", "-n", ns, "-f", file.to_str().expect("utf-8 path")]);
}

fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// The port the agent's configuration serves `role` on (its first, for mail), if it serves it.
fn served_port(config: &AgentConfig, role: &str) -> Option<i32> {
    let port = match role {
        "web" => config.web.as_ref().map(|w| w.port),
        "file" => config.file.as_ref().map(|f| f.port),
        "mail" => config.mail.as_ref().map(|m| m.smtp_port),
        "index" => config.index.as_ref().map(|i| i.port),
        "chat" => config.chat.as_ref().map(|c| c.port),
        "radio" => config.radio.as_ref().map(|r| r.port),
        "print" => config.print.as_ref().map(|p| p.port),
        other => panic!("a server role this test does not know: {other}"),
    };
    port.map(i32::from)
}

/// The name of a role's (first) port in `server_ports`.
fn role_port(role: &str) -> &str {
    match role {
        "file" => "webdav",
        "mail" => "smtp",
        "chat" => "irc",
        "print" => "ipp",
        other => other,
    }
}

#[tokio::test]
async fn every_example_converges_with_the_expected_objects() {
    let env = Env::new().await;
    let ns = env.namespace("examples").await;
    let _operator = env.operator(&ns, &[]);
    let _volumes = env.provision_volumes(&ns);
    let files = examples();
    assert!(files.len() >= 2);
    for file in &files {
        apply(&env, &ns, file);
    }
    let hostroles = api::<HostRole>(&env.client, &ns)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    assert!(hostroles.len() >= 2, "every example HostRole was created");

    for hr in hostroles {
        let name = hr.name_any();
        let hr = wait_ready(&env.client, &ns, &name).await;
        let replicas = hr.spec.replicas;
        let status = hr.status.clone().expect("status");
        assert_eq!(status.ready_hosts, replicas, "{name}: readyHosts");
        assert_eq!(status.hosts.len() as i32, replicas);
        let uid = hr.uid().expect("uid");

        let sts = api::<StatefulSet>(&env.client, &ns)
            .get(&name)
            .await
            .expect("StatefulSet");
        let spec = sts.spec.clone().expect("spec");
        assert_eq!(spec.replicas, Some(replicas));
        let pod = spec.template.spec.clone().expect("pod spec");
        assert_eq!(pod.containers[0].image.as_deref(), Some(AGENT_IMAGE));

        let cm = api::<ConfigMap>(&env.client, &ns)
            .get(&format!("{name}-host"))
            .await
            .expect("ConfigMap");
        let config: AgentConfig =
            serde_yaml::from_str(&cm.data.as_ref().expect("data")[CONFIG_KEY])
                .expect("agent config");
        assert_eq!(config.host_role, name);
        // Every host serves its roles: judged by what each host's pod and agent get and report,
        // not by the status's role list (the operator writes one entry per role of the spec).
        let roles = hr.spec.server_roles();
        for role in &roles {
            assert_eq!(
                served_port(&config, role),
                hr.spec
                    .server_ports()
                    .iter()
                    .find(|(r, _)| role_port(role) == *r)
                    .map(|(_, p)| *p),
                "{name}: the agent's configuration serves {role} on the spec's port"
            );
        }
        for host in &status.hosts {
            let pod = api::<Pod>(&env.client, &ns)
                .get(&host.name)
                .await
                .unwrap_or_else(|e| panic!("{name}: the pod of host {}: {e}", host.name));
            assert!(
                hostrole_operator::status::pod_ready(&pod),
                "{name}: the node reports {} Ready",
                host.name
            );
            let declared: BTreeSet<(String, i32)> = pod
                .spec
                .iter()
                .flat_map(|s| &s.containers)
                .flat_map(|c| c.ports.iter().flatten())
                .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
                .collect();
            for (port_name, port) in hr.spec.server_ports() {
                assert!(
                    declared.contains(&(port_name.to_string(), port)),
                    "{name}: {} declares {port_name} {port}: {declared:?}",
                    host.name
                );
            }
            let serving: BTreeMap<String, RoleState> = roles
                .iter()
                .map(|r| (r.to_string(), RoleState::Serving))
                .collect();
            assert_eq!(
                (host.ready, &host.roles),
                (true, &serving),
                "{name}: the status of {} follows its Ready pod",
                host.name
            );
        }
        let hash = spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .expect("annotations")[CONFIG_HASH_ANNOTATION]
            .clone();
        assert_eq!(
            hash,
            digest_data(cm.data.as_ref()),
            "{name}: the pods carry the ConfigMap's hash"
        );

        let services = api::<Service>(&env.client, &ns);
        let wanted: Vec<i32> = hr.spec.server_ports().iter().map(|(_, p)| *p).collect();
        match services.get_opt(&name).await.expect("get Service") {
            Some(service) => {
                let ports: Vec<i32> = service
                    .spec
                    .and_then(|s| s.ports)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| p.port)
                    .collect();
                assert_eq!(ports, wanted, "{name}: the Service exposes the role ports");
            }
            None => assert!(
                wanted.is_empty(),
                "{name}: only a host that serves nothing (a client) has no Service"
            ),
        }
        let headless = services
            .get(&format!("{name}-hosts"))
            .await
            .expect("headless Service");
        assert_eq!(
            headless.spec.and_then(|s| s.cluster_ip).as_deref(),
            Some("None")
        );

        for owner_refs in [sts.owner_references(), cm.owner_references()] {
            assert_eq!(owner_refs.len(), 1);
            assert_eq!(owner_refs[0].uid, uid);
        }
        assert_eq!(
            ready_pods(&env.client, &ns, &name).await.len() as i32,
            replicas
        );

        let events = api::<Event>(&env.client, &ns)
            .list(&ListParams::default().fields(&format!(
                "involvedObject.name={name},involvedObject.kind=HostRole"
            )))
            .await
            .expect("events");
        let reasons: BTreeSet<String> = events
            .items
            .iter()
            .filter_map(|e| e.reason.clone())
            .collect();
        assert!(
            reasons.contains("Created") && reasons.contains("Ready"),
            "{name}: events {reasons:?}"
        );
        // What a reconcile made is one event naming each object, not an event per object (a
        // peer network's Secret has its own).
        let created: Vec<Vec<&str>> = events
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("Created"))
            .filter_map(|e| e.message.as_deref()?.strip_prefix("Created "))
            .map(|objects| objects.split(", ").collect())
            .collect();
        let naming = |object: String| -> Vec<usize> {
            (0..created.len())
                .filter(|&i| created[i].contains(&object.as_str()))
                .collect()
        };
        let config_map = naming(format!("ConfigMap {}", cm.name_any()));
        let headless = naming(format!("Service {name}-hosts"));
        let stateful_set = naming(format!("StatefulSet {name}"));
        for (object, found) in [
            ("ConfigMap", &config_map),
            ("headless Service", &headless),
            ("StatefulSet", &stateful_set),
        ] {
            assert_eq!(found.len(), 1, "{name}: the {object} in {created:?}");
        }
        assert_eq!(
            config_map, headless,
            "{name}: made in one reconcile, said in one event: {created:?}"
        );
    }

    let table = env.kubectl_ok(&["get", "hrole", "-n", &ns]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "ROLES", "READY", "HOSTS", "CLIENTS", "STATUS", "URL", "AGE"
        ]
    );
    assert!(table.contains("AllRolesServing"), "{table}");
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn a_spec_update_rolls_the_pods_and_scale_works() {
    let env = Env::new().await;
    let ns = env.namespace("update").await;
    let _operator = env.operator(&ns, &[]);
    apply(&env, &ns, &example("web-host.yaml"));
    let before = wait_ready(&env.client, &ns, "web").await;
    let pods = api::<Pod>(&env.client, &ns);
    let old_pod = pods.get("web-0").await.expect("web-0").uid();
    let old_hash = digest_data(
        api::<ConfigMap>(&env.client, &ns)
            .get("web-host")
            .await
            .expect("cm")
            .data
            .as_ref(),
    );

    env.kubectl_ok(&[
        "patch", "hrole", "web", "-n", &ns, "--type=merge", "-p",
        r#"{"spec":{"servers":{"web":{"site":{"files":[{"path":"index.html","content":"version two"}]}}}}}"#,
    ]);
    let after = eventually("the new spec is observed and ready", CONVERGE, || async {
        let hr = api::<HostRole>(&env.client, &ns).get("web").await.ok()?;
        (hr.metadata.generation > before.metadata.generation && is_ready(&hr)).then_some(hr)
    })
    .await;
    assert_eq!(
        after.status.as_ref().and_then(|s| s.observed_generation),
        after.metadata.generation
    );
    let cm = api::<ConfigMap>(&env.client, &ns)
        .get("web-host")
        .await
        .expect("cm");
    assert_eq!(cm.data.as_ref().expect("data")["site-000"], "version two");
    assert_ne!(digest_data(cm.data.as_ref()), old_hash);
    let sts = api::<StatefulSet>(&env.client, &ns)
        .get("web")
        .await
        .expect("sts");
    let st = sts.status.expect("sts status");
    // Ready comes when every pod is ready on the new revision: the StatefulSet controller has
    // seen the new spec by then, though its currentRevision may still lag (operator/src/status.rs
    // `pods_caught_up`).
    assert_eq!(
        st.observed_generation, sts.metadata.generation,
        "the StatefulSet controller saw the new spec"
    );
    assert!(st.update_revision.is_some(), "{st:?}");
    let new_pod = pods.get("web-0").await.expect("web-0");
    assert_ne!(new_pod.uid(), old_pod, "the pod was replaced");
    assert_eq!(
        new_pod.labels().get("controller-revision-hash"),
        st.update_revision.as_ref(),
        "the pod runs the new revision"
    );

    // The scale subresource: kubectl scale works on HostRoles.
    env.kubectl_ok(&["scale", "hrole/web", "-n", &ns, "--replicas=3"]);
    eventually("three hosts ready", CONVERGE, || async {
        let hr = api::<HostRole>(&env.client, &ns).get("web").await.ok()?;
        (is_ready(&hr) && hr.status.as_ref()?.ready_hosts == 3).then_some(())
    })
    .await;
    assert_eq!(ready_pods(&env.client, &ns, "web").await.len(), 3);
    let replicas = env.kubectl_ok(&[
        "get",
        "hrole",
        "web",
        "-n",
        &ns,
        "-o",
        "jsonpath={.status.replicas}",
    ]);
    assert_eq!(replicas, "3");
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn drift_in_owned_objects_is_undone() {
    let env = Env::new().await;
    let ns = env.namespace("drift").await;
    let _operator = env.operator(&ns, &[]);
    apply(&env, &ns, &example("web-host.yaml"));
    wait_ready(&env.client, &ns, "web").await;
    let services = api::<Service>(&env.client, &ns);
    let configmaps = api::<ConfigMap>(&env.client, &ns);

    let old_uid = services.get("web").await.expect("svc").uid();
    env.kubectl_ok(&["delete", "service", "web", "-n", &ns]);
    eventually("the deleted Service is recreated", CONVERGE, || async {
        services
            .get("web")
            .await
            .ok()
            .filter(|s| s.uid() != old_uid)
    })
    .await;
    env.kubectl_ok(&["delete", "service", "web-hosts", "-n", &ns]);
    eventually(
        "the deleted headless Service is recreated",
        CONVERGE,
        || async { services.get("web-hosts").await.ok() },
    )
    .await;

    let original = configmaps
        .get("web-host")
        .await
        .expect("cm")
        .data
        .expect("data")[CONFIG_KEY]
        .clone();
    env.kubectl_ok(&[
        "patch",
        "configmap",
        "web-host",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"data":{"agent.yaml":"tampered"}}"#,
    ]);
    eventually("the edited ConfigMap is restored", CONVERGE, || async {
        let data = configmaps.get("web-host").await.ok()?.data?;
        (data[CONFIG_KEY] == original).then_some(())
    })
    .await;

    env.kubectl_ok(&[
        "label",
        "service",
        "web",
        "-n",
        &ns,
        "app.kubernetes.io/instance-",
    ]);
    eventually("a removed label is put back", CONVERGE, || async {
        let svc = services.get("web").await.ok()?;
        (svc.labels()
            .get("app.kubernetes.io/instance")
            .map(String::as_str)
            == Some("web"))
        .then_some(())
    })
    .await;

    env.kubectl_ok(&["scale", "statefulset", "web", "-n", &ns, "--replicas=4"]);
    eventually(
        "the StatefulSet's replicas are restored",
        CONVERGE,
        || async {
            let sts = api::<StatefulSet>(&env.client, &ns).get("web").await.ok()?;
            (sts.spec?.replicas == Some(1)).then_some(())
        },
    )
    .await;
    wait_ready(&env.client, &ns, "web").await;
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn deleting_a_hostrole_collects_every_child() {
    let env = Env::new().await;
    let ns = env.namespace("delete").await;
    let _operator = env.operator(&ns, &[]);
    apply(&env, &ns, &example("web-configmap.yaml"));
    wait_ready(&env.client, &ns, "brochure").await;
    env.kubectl_ok(&["delete", "hrole", "brochure", "-n", &ns]);

    let selector = ListParams::default().labels(MANAGED);
    eventually("every child is garbage-collected", CONVERGE, || async {
        let sts = api::<StatefulSet>(&env.client, &ns)
            .list(&selector)
            .await
            .ok()?
            .items
            .len();
        let svc = api::<Service>(&env.client, &ns)
            .list(&selector)
            .await
            .ok()?
            .items
            .len();
        let cm = api::<ConfigMap>(&env.client, &ns)
            .list(&selector)
            .await
            .ok()?
            .items
            .len();
        let pods = api::<Pod>(&env.client, &ns)
            .list(&selector)
            .await
            .ok()?
            .items
            .len();
        (sts + svc + cm + pods == 0).then_some(())
    })
    .await;
    // The user's own ConfigMap is not the operator's to delete.
    api::<ConfigMap>(&env.client, &ns)
        .get("brochure-site")
        .await
        .expect("the site ConfigMap stays");
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn invalid_manifests_are_rejected_and_create_nothing() {
    let env = Env::new().await;
    let ns = env.namespace("invalid").await;
    let dir = repo_root().join("e2e/manifests/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("invalid/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "at least 20 invalid manifests");
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let out = env.kubectl(&["apply", "-n", &ns, "-f", file.to_str().expect("utf-8")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            failures.push(format!("{}: accepted", file.display()));
            continue;
        }
        for expect in text.lines().filter_map(|l| l.strip_prefix("# expect: ")) {
            if !stderr.contains(expect) {
                failures.push(format!("{}: {expect:?} not in: {stderr}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let left = api::<HostRole>(&env.client, &ns)
        .list(&ListParams::default())
        .await
        .expect("list");
    assert!(left.items.is_empty(), "nothing was created");
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn a_field_only_a_standalone_agent_can_honour_degrades_and_writes_no_children() {
    let env = Env::new().await;
    let ns = env.namespace("standalone-only").await;
    let _operator = env.operator(&ns, &[]);
    let dir = std::env::temp_dir().join(format!("hostrole-e2e-{ns}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("path-site.yaml");
    std::fs::write(
        &file,
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: laptop}\nspec:\n  servers:\n    web: {site: {path: ./site}}\n",
    )
    .expect("write");
    apply(&env, &ns, &file);
    let hr = eventually("the HostRole is Degraded", CONVERGE, || async {
        let hr = api::<HostRole>(&env.client, &ns).get("laptop").await.ok()?;
        let degraded = hr
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded")?
            .clone();
        (degraded.status == "True").then_some(degraded)
    })
    .await;
    assert_eq!(hr.reason, "UnsupportedInCluster");
    assert!(
        hr.message.contains("spec.servers.web.site.path"),
        "{}",
        hr.message
    );
    let sts = api::<StatefulSet>(&env.client, &ns)
        .list(&ListParams::default())
        .await
        .expect("list");
    assert!(
        sts.items.is_empty(),
        "nothing is created for a spec the operator cannot realise"
    );
    let _ = std::fs::remove_dir_all(dir);
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn a_restart_mid_reconcile_converges_without_duplicates() {
    const COUNT: usize = 50;
    let env = Env::new().await;
    let ns = env.namespace("restart").await;
    let manifest: String = (0..COUNT)
        .map(|i| {
            format!(
                "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: host-{i:02}}}\nspec:\n  servers:\n    web: {{}}\n---\n"
            )
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("hostrole-e2e-{ns}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("many.yaml");
    std::fs::write(&file, manifest).expect("write");
    apply(&env, &ns, &file);

    let statefulsets = api::<StatefulSet>(&env.client, &ns);
    let mut operator = env.operator(&ns, &["--concurrency", "1"]);
    let started = eventually("the operator is part-way through", CONVERGE, || async {
        let n = statefulsets
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .len();
        (n >= 3).then_some(n)
    })
    .await;
    operator.kill();
    let at_kill = statefulsets
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .len();
    assert!(
        at_kill < COUNT,
        "killed mid-way ({started}..{at_kill} of {COUNT} StatefulSets)"
    );
    drop(operator);

    let _operator = env.operator(&ns, &[]);
    let hrs = api::<HostRole>(&env.client, &ns);
    eventually(
        "all HostRoles are Ready after the restart",
        Duration::from_secs(240),
        || async {
            let items = hrs.list(&ListParams::default()).await.ok()?.items;
            (items.len() == COUNT && items.iter().all(is_ready)).then_some(())
        },
    )
    .await;

    let selector = ListParams::default().labels(MANAGED);
    let uids: BTreeMap<String, String> = hrs
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|h| (h.uid().unwrap_or_default(), h.name_any()))
        .collect();
    let sts = statefulsets.list(&selector).await.expect("sts").items;
    let svc = api::<Service>(&env.client, &ns)
        .list(&selector)
        .await
        .expect("svc")
        .items;
    let cm = api::<ConfigMap>(&env.client, &ns)
        .list(&selector)
        .await
        .expect("cm")
        .items;
    assert_eq!(sts.len(), COUNT, "one StatefulSet per HostRole");
    assert_eq!(svc.len(), 2 * COUNT, "two Services per HostRole");
    assert_eq!(cm.len(), COUNT, "one ConfigMap per HostRole");
    let owners = sts
        .iter()
        .map(|o| o.owner_references().to_vec())
        .chain(svc.iter().map(|o| o.owner_references().to_vec()))
        .chain(cm.iter().map(|o| o.owner_references().to_vec()));
    for refs in owners {
        assert_eq!(refs.len(), 1, "exactly one owner");
        assert!(uids.contains_key(&refs[0].uid), "owned by a live HostRole");
    }
    for hr in hrs.list(&ListParams::default()).await.expect("list").items {
        let types: Vec<String> = hr
            .status
            .expect("status")
            .conditions
            .into_iter()
            .map(|c| c.type_)
            .collect();
        assert_eq!(
            types,
            ["Ready", "Progressing", "Degraded"],
            "no duplicated conditions"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn an_idle_operator_writes_nothing() {
    let env = Env::new().await;
    let ns = env.namespace("idle").await;
    let operator = env.operator(&ns, &[]);
    let _volumes = env.provision_volumes(&ns);
    for file in examples() {
        apply(&env, &ns, &file);
    }
    let all = api::<HostRole>(&env.client, &ns)
        .list(&ListParams::default())
        .await
        .expect("list");
    for hr in all.items {
        wait_ready(&env.client, &ns, &hr.name_any()).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = operator.metric_sum("hostrole_operator_api_writes_total");
    let reconciles = operator.metric_sum("hostrole_operator_reconciles_total");
    assert!(
        writes > 0.0,
        "the metric counts the writes that created the objects"
    );
    // Reconciles read the operator's own objects and the host pods from the watch caches.
    const CACHED: [&str; 3] = ["StatefulSet", "Service", "Pod"];
    let reads = |source: &str| -> Vec<f64> {
        CACHED
            .iter()
            .map(|kind| {
                operator.metric(
                    "hostrole_operator_reads_total",
                    &[("kind", kind), ("source", source)],
                )
            })
            .collect()
    };
    let (api_before, cache_before) = (reads("api"), reads("cache"));

    // A change that does not touch the spec still triggers reconciles, which must write nothing.
    env.kubectl_ok(&[
        "annotate",
        "hrole",
        "--all",
        "-n",
        &ns,
        "example.com/touched=yes",
    ]);
    eventually(
        "the annotation triggered reconciles",
        Duration::from_secs(30),
        || async {
            (operator.metric_sum("hostrole_operator_reconciles_total") >= reconciles + 2.0)
                .then_some(())
        },
    )
    .await;
    let (api_after, cache_after) = (reads("api"), reads("cache"));
    assert_eq!(
        api_after, api_before,
        "reconciles of objects that exist read {CACHED:?} from the caches, not the API server"
    );
    for (kind, (after, before)) in CACHED.iter().zip(cache_after.iter().zip(&cache_before)) {
        assert!(after > before, "the reconciles read {kind} from its cache");
    }

    let versions = || async {
        let selector = ListParams::default().labels(MANAGED);
        let mut v: Vec<String> = Vec::new();
        v.extend(
            api::<HostRole>(&env.client, &ns)
                .list(&ListParams::default())
                .await
                .expect("hr")
                .items
                .iter()
                .filter_map(|o| o.resource_version()),
        );
        // A StatefulSet's status belongs to the StatefulSet controller, which may still update
        // it (a late pod becoming available): compare what the operator owns, its spec.
        v.extend(
            api::<StatefulSet>(&env.client, &ns)
                .list(&selector)
                .await
                .expect("sts")
                .items
                .iter()
                .map(|o| format!("{}@{:?}", o.name_any(), o.metadata.generation)),
        );
        v.extend(
            api::<Service>(&env.client, &ns)
                .list(&selector)
                .await
                .expect("svc")
                .items
                .iter()
                .filter_map(|o| o.resource_version()),
        );
        v.extend(
            api::<ConfigMap>(&env.client, &ns)
                .list(&selector)
                .await
                .expect("cm")
                .items
                .iter()
                .filter_map(|o| o.resource_version()),
        );
        v
    };
    let before = versions().await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        operator.metric_sum("hostrole_operator_api_writes_total"),
        writes,
        "no write in a minute of nothing changing (nor for the no-op reconciles): {}",
        operator.metrics().unwrap_or_default()
    );
    assert_eq!(versions().await, before, "no object changed");
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn with_leader_election_one_replica_reconciles_and_another_takes_over() {
    let env = Env::new().await;
    let ns = env.namespace("leader").await;
    let ids = ["replica-a", "replica-b"];
    let mut replicas: Vec<Option<hostrole_e2e::Operator>> = ids
        .iter()
        .map(|id| {
            Some(env.operator(
                &ns,
                &["--leader-elect", "--lease-namespace", &ns, "--identity", id],
            ))
        })
        .collect();
    let leading = |r: &Option<hostrole_e2e::Operator>| {
        r.as_ref()
            .map_or(0.0, |o| o.metric_sum("hostrole_operator_leader"))
    };
    let leader = eventually(
        "exactly one replica leads",
        Duration::from_secs(60),
        || async {
            let flags: Vec<f64> = replicas.iter().map(leading).collect();
            (flags.iter().sum::<f64>() == 1.0)
                .then(|| flags.iter().position(|f| *f == 1.0))
                .flatten()
        },
    )
    .await;
    let follower = 1 - leader;
    let lease = api::<Lease>(&env.client, &ns)
        .get("hostrole-operator")
        .await
        .expect("Lease");
    let holder = lease.spec.and_then(|s| s.holder_identity).expect("holder");
    assert_eq!(
        holder, ids[leader],
        "the Lease names the replica that reports itself leader"
    );

    apply(&env, &ns, &example("web-host.yaml"));
    wait_ready(&env.client, &ns, "web").await;
    // Read from the follower's own /metrics: a follower that does not answer fails here
    // (metric_sum panics), it does not read as 0 reconciles.
    let follower_reconciles = replicas[follower]
        .as_ref()
        .map_or(-1.0, |o| o.metric_sum("hostrole_operator_reconciles_total"));
    assert_eq!(follower_reconciles, 0.0, "the follower does not reconcile");

    // The leader dies without releasing the Lease; the follower takes over when it expires.
    if let Some(mut dead) = replicas[leader].take() {
        dead.kill();
    }
    eventually(
        "the follower takes the lead",
        Duration::from_secs(60),
        || async { (leading(&replicas[follower]) == 1.0).then_some(()) },
    )
    .await;
    apply(&env, &ns, &example("web-configmap.yaml"));
    wait_ready(&env.client, &ns, "brochure").await;
    let reconciles = replicas[follower]
        .as_ref()
        .map_or(0.0, |o| o.metric_sum("hostrole_operator_reconciles_total"));
    assert!(reconciles > 0.0, "the new leader reconciles");
    env.delete_namespace(&ns).await;
}

/// A replica whose view of the Lease is stale (it read it free just before another replica took
/// it) takes it as kube-lease-manager does, with a server-side apply that is not forced: the API
/// server must refuse it. The crate's mutual exclusion is that field-manager conflict, so it
/// holds only when each replica writes under its own manager (`run::lease_field_manager`). Under
/// one shared manager the second apply succeeded, both replicas led until the first renewal, and
/// the replaced one exited (the cause of a CI failure: "lost the leader lease" 10 s after
/// "became the leader").
#[tokio::test]
async fn a_replica_with_a_stale_view_cannot_take_a_held_lease() {
    use hostrole_operator::run::{LeaderElection, lease_field_manager, lease_manager};
    use kube::api::{Patch, PatchParams};
    let env = Env::new().await;
    let ns = env.namespace("lease-race").await;
    let election = |identity: &str| LeaderElection {
        namespace: ns.clone(),
        lease: "race".to_owned(),
        identity: identity.to_owned(),
    };
    let a = lease_manager(env.client.clone(), &election("replica-a"))
        .await
        .expect("manager a");
    let leads = tokio::time::timeout(Duration::from_secs(30), a.changed()).await;
    assert!(
        matches!(leads, Ok(Ok(true))),
        "replica-a takes the free Lease: {leads:?}"
    );
    // What replica-b sends when it read the Lease free a moment before (kube-lease-manager's
    // `LeaseState::lock` for an orphaned lease).
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    );
    let take = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "spec": {
            "acquireTime": now,
            "renewTime": now,
            "holderIdentity": "replica-b",
            "leaseDurationSeconds": 15,
        },
    });
    let leases = api::<Lease>(&env.client, &ns);
    let params = PatchParams {
        field_manager: Some(lease_field_manager("replica-b")),
        ..PatchParams::default()
    };
    let taken = leases.patch("race", &params, &Patch::Apply(&take)).await;
    let holder = leases
        .get("race")
        .await
        .expect("Lease")
        .spec
        .and_then(|s| s.holder_identity);
    assert!(
        matches!(&taken, Err(kube::Error::Api(e)) if e.code == 409),
        "the stale take is refused as a conflict, not {taken:?}; the Lease names {holder:?}"
    );
    assert_eq!(
        holder.as_deref(),
        Some("replica-a"),
        "replica-a still holds the Lease"
    );
    assert_ne!(
        lease_field_manager("replica-a"),
        lease_field_manager("replica-b"),
        "one field manager per replica"
    );
    env.delete_namespace(&ns).await;
}
