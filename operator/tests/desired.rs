//! The pure builders: what a HostRole turns into.

use std::collections::BTreeMap;

use hostrole_api::access::object_uses;
use hostrole_api::manifest;
use hostrole_api::render::{CONFIG_KEY, Location};
use hostrole_api::{HostRole, HostTemplate};
use hostrole_config::AgentConfig;
use hostrole_operator::desired::{
    self, CONFIG_HASH_ANNOTATION, Desired, PodIds, Settings, SpecError,
};
use hostrole_operator::world::World;
use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn settings() -> Settings {
    Settings {
        agent_image: "hostrole/agent:test".into(),
        image_pull_policy: Some("IfNotPresent".into()),
        agent_cluster_role: "hostrole-agent".into(),
        network_policies: false,
        egress_policies: false,
        api_server_cidrs: Vec::new(),
        image_pull_secrets: Vec::new(),
        pod_ids: PodIds::default(),
    }
}

/// A HostRole as the API server would hand it to the operator.
fn hostrole(yaml: &str) -> HostRole {
    let mut hr = manifest::parse(yaml, "test").expect("valid manifest");
    hr.metadata.namespace = Some("lan".into());
    hr.metadata.uid = Some("0c5a6a8e-1111-4222-8333-944455556666".into());
    hr.metadata.generation = Some(1);
    hr
}

fn example(file: &str) -> HostRole {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    let text = std::fs::read_to_string(path).expect("example");
    let mut hr = manifest::parse_all(&text, file).expect("valid").remove(0);
    hr.metadata.namespace = Some("lan".into());
    hr.metadata.uid = Some("0c5a6a8e-1111-4222-8333-944455556666".into());
    hr
}

fn web(extra: &str) -> HostRole {
    hostrole(&format!(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: office}}\nspec:\n  replicas: 2\n  servers:\n    web:\n      port: 8080{extra}\n"
    ))
}

/// A world in which the owners of every Secret and ConfigMap `hr` names labelled them for use.
fn labelled(hr: &HostRole) -> World {
    let ns = hr.metadata.namespace.clone().unwrap_or_default();
    World::default().with_usable(
        object_uses(hr)
            .into_iter()
            .map(|u| (u.kind, ns.clone(), u.name)),
    )
}

fn build(hr: &HostRole) -> Desired {
    desired::desired(hr, &settings(), &labelled(hr)).expect("buildable")
}

fn pod(d: &Desired) -> PodSpec {
    d.stateful_set
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod spec")
}

fn config_hash(d: &Desired) -> String {
    d.stateful_set
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
        .expect("config hash annotation")
}

#[test]
fn snapshot_of_the_web_host_example() {
    let d = build(&example("web-host.yaml"));
    insta::assert_yaml_snapshot!("web-host-configmap", d.config_map);
    insta::assert_yaml_snapshot!("web-host-headless-service", d.headless_service);
    insta::assert_yaml_snapshot!("web-host-service", d.service);
    insta::assert_yaml_snapshot!("web-host-statefulset", d.stateful_set);
}

#[test]
fn host_pods_run_as_the_ids_the_operator_is_given_or_leave_them_to_the_platform() {
    let hr = web("");
    let world = labelled(&hr);
    let mut given = settings();
    given.pod_ids = PodIds {
        run_as_user: Some(1000680000),
        run_as_group: Some(1000680001),
        fs_group: Some(1000680002),
    };
    let d = desired::desired(&hr, &given, &world).expect("desired");
    let sc = pod(&d)
        .security_context
        .clone()
        .expect("pod securityContext");
    assert_eq!(
        (sc.run_as_user, sc.run_as_group, sc.fs_group),
        (Some(1000680000), Some(1000680001), Some(1000680002))
    );
    // OpenShift's restricted-v2 assigns every id: nothing of ours may contradict it.
    given.pod_ids = PodIds {
        run_as_user: None,
        run_as_group: None,
        fs_group: None,
    };
    let d = desired::desired(&hr, &given, &world).expect("desired");
    let sc = pod(&d)
        .security_context
        .clone()
        .expect("pod securityContext");
    assert_eq!(
        (sc.run_as_user, sc.run_as_group, sc.fs_group),
        (None, None, None)
    );
    assert_eq!(sc.fs_group_change_policy, None);
    assert_eq!(sc.run_as_non_root, Some(true));
}

#[test]
fn pods_meet_the_restricted_pod_security_standard() {
    let spec = pod(&build(&web("")));
    let pod_sc = spec.security_context.as_ref().expect("pod securityContext");
    assert_eq!(pod_sc.run_as_non_root, Some(true));
    // No user of our own by default: the image's USER (65532) or the platform's policy applies.
    assert_eq!((pod_sc.run_as_user, pod_sc.run_as_group), (None, None));
    assert_eq!(pod_sc.fs_group, Some(65532));
    assert_eq!(
        pod_sc.fs_group_change_policy.as_deref(),
        Some("OnRootMismatch")
    );
    assert_eq!(
        pod_sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    assert!(spec.host_network.is_none() && spec.host_pid.is_none() && spec.host_ipc.is_none());
    for volume in spec.volumes.iter().flatten() {
        assert!(volume.host_path.is_none(), "no hostPath volumes");
    }
    for c in &spec.containers {
        let sc = c
            .security_context
            .as_ref()
            .expect("container securityContext");
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.privileged, None);
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()])
        );
        assert!(
            sc.capabilities
                .as_ref()
                .and_then(|c| c.add.as_ref())
                .is_none()
        );
        for port in c.ports.iter().flatten() {
            assert!(port.host_port.is_none(), "no host ports");
        }
    }
}

#[test]
fn every_object_is_owned_and_labelled() {
    let hr = web("");
    let d = build(&hr);
    let metas = [
        &d.config_map.metadata,
        &d.headless_service.metadata,
        &d.service.as_ref().expect("service").metadata,
        &d.stateful_set.metadata,
    ];
    for meta in metas {
        let owners = meta.owner_references.as_ref().expect("owner references");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].uid, "0c5a6a8e-1111-4222-8333-944455556666");
        assert_eq!(owners[0].kind, "HostRole");
        assert_eq!(owners[0].controller, Some(true));
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(
            labels.get("app.kubernetes.io/instance").map(String::as_str),
            Some("office")
        );
        assert_eq!(
            labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("hostrole-operator")
        );
        assert_eq!(meta.namespace.as_deref(), Some("lan"));
    }
}

#[test]
fn services_expose_the_role_ports_and_the_headless_one_gives_hosts_dns() {
    let d = build(&web(""));
    let service = d.service.expect("service");
    let ports: Vec<(String, i32)> = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name.unwrap_or_default(), p.port))
        .collect();
    assert_eq!(ports, vec![("web".to_string(), 8080)]);

    let headless = d.headless_service.spec.expect("spec");
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    let names: Vec<String> = headless
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["web", "admin"]);
    let sts = d.stateful_set.spec.expect("spec");
    assert_eq!(sts.service_name.as_deref(), Some("office-hosts"));
    assert_eq!(sts.replicas, Some(2));
}

#[test]
fn a_host_without_server_roles_gets_no_service() {
    let mut hr = web("");
    hr.spec.servers.web = None;
    let d = build(&hr);
    assert!(d.service.is_none());
    let ports = d
        .headless_service
        .spec
        .and_then(|s| s.ports)
        .unwrap_or_default();
    assert_eq!(ports.len(), 1, "only the admin port");
}

#[test]
fn the_rendered_config_is_what_the_agent_reads() {
    let d = build(&web("\n      maxConnections: 77"));
    let data = d.config_map.data.expect("data");
    let config: AgentConfig = serde_yaml::from_str(&data[CONFIG_KEY]).expect("agent config parses");
    assert_eq!(config.host_role, "office");
    assert_eq!(config.namespace.as_deref(), Some("lan"));
    assert_eq!(config.bind.to_string(), "0.0.0.0");
    let web = config.web.expect("web role");
    assert_eq!((web.port, web.max_connections), (8080, 77));
    assert_eq!(web.root, Location::Site.cluster_path());
}

#[test]
fn inline_files_are_mapped_to_their_paths_and_a_configmap_site_is_mounted_whole() {
    let inline = build(&example("web-host.yaml"));
    let site = pod(&inline)
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "site")
        .and_then(|v| v.config_map)
        .expect("site volume");
    assert_eq!(site.name, "web-host");
    let items: BTreeMap<String, String> = site
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.key, i.path))
        .collect();
    assert_eq!(
        items.get("site-000").map(String::as_str),
        Some("index.html")
    );
    assert_eq!(
        items.get("site-001").map(String::as_str),
        Some("css/site.css")
    );
    let data = inline.config_map.data.expect("data");
    assert!(data["site-001"].contains("font-family"));

    let from_configmap = build(&web("\n      site: {configMap: office-site}"));
    let site = pod(&from_configmap)
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "site")
        .and_then(|v| v.config_map)
        .expect("site volume");
    assert_eq!(site.name, "office-site");
    assert!(
        site.items.is_none(),
        "every key of the user's ConfigMap is a file"
    );

    // A ConfigMap that may not be used is not mounted: a placeholder page stands in, kept in the
    // host ConfigMap like inline files (so the pod's volume finds its key).
    let refused = web("\n      site: {configMap: office-site}");
    let d = desired::desired(&refused, &settings(), &World::default()).expect("buildable");
    assert_eq!(d.problems[0].reason.as_str(), "ReferenceNotAllowed");
    let site = pod(&d)
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "site")
        .and_then(|v| v.config_map)
        .expect("site volume");
    assert_eq!(site.name, "office-host", "not the user's ConfigMap");
    let keys: Vec<String> = site
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.key)
        .collect();
    let data = d.config_map.data.expect("data");
    assert_eq!(keys, ["site-000"]);
    assert!(data["site-000"].contains("not published yet"));

    let default_page = build(&web(""));
    let data = default_page.config_map.data.expect("data");
    assert!(
        data["site-000"].contains("<h1>office</h1>"),
        "no site: a page naming the host"
    );
}

#[test]
fn a_config_change_rolls_the_pods_and_a_scale_does_not() {
    let base = config_hash(&build(&web("")));
    let other_port = config_hash(&build(&web("").tap(|h| {
        if let Some(w) = h.spec.servers.web.as_mut() {
            w.port = 8081;
        }
    })));
    let other_site = config_hash(&build(&web(
        "\n      site: {files: [{path: index.html, content: new}]}",
    )));
    let scaled = config_hash(&build(&web("").tap(|h| h.spec.replicas = 5)));
    assert_ne!(base, other_port);
    assert_ne!(base, other_site);
    assert_eq!(base, scaled);
}

#[test]
fn placement_is_passed_through() {
    let mut hr = web("");
    hr.spec.template = Some(HostTemplate {
        node_selector: Some(BTreeMap::from([("disk".into(), "ssd".into())])),
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".into(), Quantity("1Gi".into()))])),
            ..Default::default()
        }),
        tolerations: Some(vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }]),
        priority_class_name: Some("hosts".into()),
        ..Default::default()
    });
    let spec = pod(&build(&hr));
    assert_eq!(
        spec.node_selector
            .and_then(|n| n.get("disk").cloned())
            .as_deref(),
        Some("ssd")
    );
    assert_eq!(spec.tolerations.map(|t| t.len()), Some(1));
    assert_eq!(spec.priority_class_name.as_deref(), Some("hosts"));
    let limits = spec.containers[0]
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .expect("limits");
    assert_eq!(limits.get("memory"), Some(&Quantity("1Gi".into())));
}

/// (cpu request, memory request, memory limit) of the host container.
fn resources_of(hr: &HostRole) -> (String, String, String) {
    let r = pod(&build(hr)).containers[0]
        .resources
        .clone()
        .expect("resources");
    let get = |m: Option<&BTreeMap<String, Quantity>>, k: &str| {
        m.and_then(|m| m.get(k))
            .map(|q| q.0.clone())
            .unwrap_or_default()
    };
    (
        get(r.requests.as_ref(), "cpu"),
        get(r.requests.as_ref(), "memory"),
        get(r.limits.as_ref(), "memory"),
    )
}

#[test]
fn a_host_requests_what_its_roles_need() {
    let web_only = resources_of(&web(""));
    assert_eq!(web_only, ("15m".into(), "32Mi".into(), "256Mi".into()));
    // web, file, mail, chat, radio and print.
    let office = resources_of(&example("home-office.yaml"));
    assert_eq!(office, ("45m".into(), "104Mi".into(), "768Mi".into()));
    // A peer holds chunks in memory: 16 fetches and 32 upload slots of 1 MiB.
    let peer = resources_of(&hostrole(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: family}\nspec:\n  peer: {network: family, seeds: [\"a:7001\"]}\n",
    ));
    assert_eq!(peer, ("20m".into(), "64Mi".into(), "320Mi".into()));
    // What the HostRole names wins.
    let mut named = web("");
    named.spec.template = Some(HostTemplate {
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([("cpu".into(), Quantity("1".into()))])),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(resources_of(&named).0, "1");
}

#[test]
fn host_pods_pull_with_the_hostrole_pull_secrets_else_the_operator_default() {
    let mut with_default = settings();
    with_default.image_pull_secrets = vec!["regcred".into()];
    let names = |spec: PodSpec| -> Vec<String> {
        spec.image_pull_secrets
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.name)
            .collect()
    };
    let hr = web("");
    assert!(
        pod(&build(&hr)).image_pull_secrets.is_none(),
        "none by default"
    );
    let d = desired::desired(&hr, &with_default, &labelled(&hr)).expect("desired");
    assert_eq!(names(pod(&d)), ["regcred"]);
    let own = hostrole(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: web}\nspec:\n  servers: {web: {}}\n  template:\n    imagePullSecrets: [{name: team-registry}]\n",
    );
    let d = desired::desired(&own, &with_default, &labelled(&own)).expect("desired");
    assert_eq!(
        names(pod(&d)),
        ["team-registry"],
        "the HostRole's own replace the default"
    );
}

#[test]
fn claims_take_the_storage_class_and_the_retention_policy() {
    let hr = hostrole(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: nas}\nspec:\n  servers: {file: {storage: 2Gi}}\n  template:\n    storageClassName: fast-expandable\n    persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete}\n",
    );
    let spec = build(&hr).stateful_set.spec.expect("spec");
    let claims = spec.volume_claim_templates.expect("claims");
    let claim = claims[0].spec.as_ref().expect("claim spec");
    assert_eq!(claim.storage_class_name.as_deref(), Some("fast-expandable"));
    let policy = spec
        .persistent_volume_claim_retention_policy
        .expect("retention policy");
    assert_eq!(policy.when_deleted.as_deref(), Some("Delete"));
    assert_eq!(policy.when_scaled.as_deref(), Some("Retain"), "the default");
    // Without either: the cluster's default class, and the StatefulSet's default (Retain).
    let plain = build(&hostrole(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: nas}\nspec:\n  servers: {file: {storage: 2Gi}}\n",
    ))
    .stateful_set
    .spec
    .expect("spec");
    assert!(plain.persistent_volume_claim_retention_policy.is_none());
    assert!(
        plain.volume_claim_templates.expect("claims")[0]
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
            .is_none()
    );
}

#[test]
fn probes_use_the_admin_port() {
    let spec = pod(&build(&web("")));
    let c = &spec.containers[0];
    let ready = c
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.clone())
        .expect("readiness");
    let live = c
        .liveness_probe
        .as_ref()
        .and_then(|p| p.http_get.clone())
        .expect("liveness");
    assert_eq!(ready.path.as_deref(), Some("/readyz"));
    assert_eq!(live.path.as_deref(), Some("/healthz"));
    let admin = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("admin"))
        .expect("admin port");
    assert_eq!(admin.container_port, hostrole_api::rules::ADMIN_PORT);
    assert_eq!(c.image.as_deref(), Some("hostrole/agent:test"));
    assert_eq!(
        c.args.as_ref().map(|a| a.join(" ")),
        Some("run --config /etc/hostrole/agent.yaml".into())
    );
}

#[test]
fn a_standalone_only_field_is_refused_with_the_field_named() {
    let hr = web("\n      site: {path: ./site}");
    let err = desired::desired(&hr, &settings(), &World::default())
        .expect_err("site.path needs a standalone agent");
    assert!(matches!(err, SpecError::Unsupported { .. }));
    assert_eq!(err.reason(), "UnsupportedInCluster");
    assert!(
        err.to_string().contains("spec.servers.web.site.path"),
        "{err}"
    );
    assert!(
        err.to_string().contains("site.configMap or site.files"),
        "{err}"
    );
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}
impl Tap for HostRole {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[test]
fn the_file_role_gets_a_claim_per_host_its_users_and_its_limits() {
    let hr = hostrole(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: nas}\nspec:\n  replicas: 2\n  servers:\n    file:\n      port: 8081\n      storage: 2Gi\n      maxUploadSize: 100Mi\n      anonymous: ReadOnly\n      users: {secret: nas-users}\n",
    );
    let d = build(&hr);
    let sts = d.stateful_set.spec.clone().expect("spec");
    let claims = sts.volume_claim_templates.expect("a claim template");
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].metadata.name.as_deref(), Some("file-data"));
    let request = claims[0]
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage").cloned());
    assert_eq!(request, Some(Quantity("2Gi".into())));

    let spec = pod(&d);
    let users = spec
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "file-users")
        .and_then(|v| v.secret)
        .expect("users Secret volume");
    assert_eq!(users.secret_name.as_deref(), Some("nas-users"));
    assert_eq!(users.default_mode, Some(0o440));
    let mounts = spec.containers[0].volume_mounts.clone().unwrap_or_default();
    let data = mounts
        .iter()
        .find(|m| m.name == "file-data")
        .expect("data mount");
    assert_eq!(
        data.mount_path,
        Location::FileData.cluster_path().to_string_lossy()
    );
    assert_eq!(data.read_only, None, "the share is writable");

    let config: AgentConfig =
        serde_yaml::from_str(&d.config_map.data.expect("data")[CONFIG_KEY]).expect("config");
    let file = config.file.expect("file role");
    assert_eq!(file.quota_bytes, Some(2 << 30));
    assert_eq!(file.max_upload_bytes, 100 << 20);
    assert_eq!(file.anonymous, hostrole_config::AnonymousAccess::ReadOnly);
    assert_eq!(
        file.users_file.as_deref(),
        Some(std::path::Path::new("/etc/hostrole/users/file/users"))
    );
    let service = d
        .service
        .expect("service")
        .spec
        .expect("spec")
        .ports
        .expect("ports");
    assert_eq!(service[0].name.as_deref(), Some("webdav"));
}

#[test]
fn without_storage_the_share_is_an_empty_dir_and_bad_sizes_or_files_are_refused() {
    let hr = hostrole(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: nas}\nspec:\n  servers:\n    file: {}\n",
    );
    let d = build(&hr);
    assert!(
        d.stateful_set
            .spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.clone())
            .is_none()
    );
    let volume = pod(&d)
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "file-data")
        .expect("volume");
    // Bounded scratch space: room for two of the largest uploads (default 1 GiB).
    assert_eq!(
        volume.empty_dir.expect("emptyDir").size_limit,
        Some(Quantity("2Gi".into()))
    );
    // Every emptyDir the operator makes has a limit.
    let mail_and_peer = hostrole(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: box}\nspec:\n  servers:\n    mail: {domains: [lan], maxMessageSize: 10Mi}\n    file: {maxUploadSize: 700Mi}\n  peer: {network: n}\n",
    );
    let limits: Vec<(String, Option<String>)> = pod(&build(&mail_and_peer))
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| Some((v.name, v.empty_dir?.size_limit.map(|q| q.0))))
        .collect();
    assert_eq!(
        limits,
        [
            ("tmp".to_string(), Some("64Mi".to_string())),
            ("file-data".to_string(), Some("1400Mi".to_string())),
            ("mail-data".to_string(), Some("1Gi".to_string())),
            ("share-data".to_string(), Some("1Gi".to_string())),
        ]
    );

    let mut bad = hr.clone();
    if let Some(f) = bad.spec.servers.file.as_mut() {
        f.storage = Some(Quantity("lots".into()));
    }
    let err = desired::desired(&bad, &settings(), &World::default()).expect_err("unreadable size");
    assert!(
        err.to_string().contains("spec.servers.file.storage"),
        "{err}"
    );

    let mut local = hr.clone();
    if let Some(f) = local.spec.servers.file.as_mut() {
        f.users = Some(hostrole_api::UsersRef {
            secret: None,
            file: Some("./users".into()),
        });
    }
    let err = desired::desired(&local, &settings(), &World::default())
        .expect_err("users.file is standalone only");
    assert!(
        err.to_string().contains("spec.servers.file.users.file"),
        "{err}"
    );
}

#[test]
fn the_home_office_example_runs_six_roles_with_their_volumes_secrets_and_ports() {
    let d = build(&example("home-office.yaml"));
    let claims: Vec<String> = d
        .stateful_set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(claims, ["file-data", "mail-data"]);
    let spec = pod(&d);
    let volumes: Vec<String> = spec
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    for v in [
        "config",
        "site",
        "file-users",
        "mail-users",
        "chat-users",
        "radio-source",
        "radio-playlist-0",
        "print-users",
        "print-data",
    ] {
        assert!(volumes.contains(&v.to_string()), "{v} in {volumes:?}");
    }
    let mounts: Vec<String> = spec.containers[0]
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.mount_path)
        .collect();
    assert!(
        mounts.contains(
            &Location::MailData
                .cluster_path()
                .to_string_lossy()
                .to_string()
        )
    );
    let ports: Vec<String> = d
        .service
        .and_then(|s| s.spec)
        .and_then(|s| s.ports)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.name)
        .collect();
    assert_eq!(
        ports,
        [
            "web",
            "webdav",
            "smtp",
            "submission",
            "imap",
            "pop3",
            "irc",
            "radio",
            "ipp"
        ]
    );
    let config: AgentConfig =
        serde_yaml::from_str(&d.config_map.data.expect("data")[CONFIG_KEY]).expect("config");
    let mail = config.mail.expect("mail role");
    assert_eq!(mail.domains, ["office.lan"]);
    assert_eq!(mail.max_message_bytes, 10 << 20);
    assert_eq!(mail.hostname, "office");
    assert_eq!(
        mail.users_file.as_deref(),
        Some(std::path::Path::new("/etc/hostrole/users/mail/users"))
    );
    assert!(mail.tls.is_none());
}

#[test]
fn a_mail_host_with_a_certificate_serves_its_implicit_tls_ports_everywhere_ports_go() {
    let hr = hostrole(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: post}\nspec:\n  networkPolicy: true\n  servers:\n    mail: {domains: [lan], tls: {secret: mail-cert}, pop3sPort: 10995}\n  clients:\n    - {service: mail, server: post}\n",
    );
    let d = build(&hr);
    let names =
        |ports: Vec<Option<String>>| -> Vec<String> { ports.into_iter().flatten().collect() };
    let all = [
        "smtp",
        "submission",
        "imap",
        "pop3",
        "imaps",
        "pop3s",
        "submissions",
    ];
    let service = d.service.clone().and_then(|s| s.spec).and_then(|s| s.ports);
    let service = service.unwrap_or_default();
    assert_eq!(names(service.iter().map(|p| p.name.clone()).collect()), all);
    assert!(
        service
            .iter()
            .any(|p| p.name.as_deref() == Some("pop3s") && p.port == 10995)
    );
    let container = pod(&d).containers[0].ports.clone().unwrap_or_default();
    let container = names(container.into_iter().map(|p| p.name).collect());
    for name in all {
        assert!(container.iter().any(|n| n == name), "{name}: {container:?}");
    }
    // The NetworkPolicy admits the host's mail clients on every one of them.
    let policy = d.network_policy.expect("policy").spec.expect("spec");
    let admitted: Vec<String> = policy
        .ingress
        .unwrap_or_default()
        .iter()
        .flat_map(|r| r.ports.clone().unwrap_or_default())
        .filter_map(|p| p.port.map(|p| format!("{p:?}")))
        .collect();
    for port in [1993, 10995, 2465] {
        assert!(
            admitted.iter().any(|a| a.contains(&port.to_string())),
            "{port}: {admitted:?}"
        );
    }

    // Without a certificate none of them exists.
    let plain = hostrole(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: post}\nspec:\n  servers:\n    mail: {domains: [lan]}\n",
    );
    let d = build(&plain);
    let service = d.service.and_then(|s| s.spec).and_then(|s| s.ports);
    assert_eq!(
        names(
            service
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.name)
                .collect()
        ),
        ["smtp", "submission", "imap", "pop3"]
    );
}

fn disruption_budget(d: &Desired) -> (Option<String>, Option<String>) {
    let spec = d
        .disruption_budget
        .as_ref()
        .and_then(|b| b.spec.clone())
        .unwrap_or_default();
    let max = spec.max_unavailable.map(|m| match m {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s,
    });
    (max, spec.unhealthy_pod_eviction_policy)
}

#[test]
fn two_or_more_hosts_spread_over_nodes_and_lose_one_at_a_time_to_a_drain() {
    let d = build(&web("")); // two hosts
    assert_eq!(
        disruption_budget(&d),
        (Some("1".into()), Some("AlwaysAllow".into()))
    );
    let budget = d.disruption_budget.as_ref().expect("budget");
    assert_eq!(budget.metadata.name.as_deref(), Some("office"));
    assert!(
        budget
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o[0].controller == Some(true)),
        "owned, so it goes with the HostRole"
    );
    let selects = budget
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| s.match_labels.clone());
    assert_eq!(selects, Some(desired::selector_labels("office")));
    let spread = pod(&d).topology_spread_constraints.unwrap_or_default();
    let keys: Vec<(&str, &str, i32)> = spread
        .iter()
        .map(|c| {
            (
                c.topology_key.as_str(),
                c.when_unsatisfiable.as_str(),
                c.max_skew,
            )
        })
        .collect();
    assert_eq!(keys, [("kubernetes.io/hostname", "ScheduleAnyway", 1)]);
    assert!(spread.iter().all(|c| {
        c.label_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            == Some(desired::selector_labels("office"))
    }));
}

#[test]
fn a_single_host_has_no_budget_that_would_block_every_drain_unless_asked() {
    let one = hostrole(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: solo}\nspec:\n  servers:\n    web: {}\n",
    );
    let d = build(&one);
    assert_eq!(d.disruption_budget, None);
    assert_eq!(pod(&d).topology_spread_constraints, None);
    let asked = hostrole(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: solo}\nspec:\n  template:\n    disruptionBudget: {maxUnavailable: 0}\n  servers:\n    web: {}\n",
    );
    assert_eq!(
        disruption_budget(&build(&asked)),
        (Some("0".into()), Some("AlwaysAllow".into()))
    );
}

#[test]
fn a_hostroles_own_spread_and_budget_replace_the_defaults() {
    let d = build(&web(
        "\n  template:\n    disruptionBudget: {maxUnavailable: 25%}\n    topologySpread:\n      - {maxSkew: 2, topologyKey: rack, whenUnsatisfiable: DoNotSchedule}\n",
    ));
    assert_eq!(disruption_budget(&d).0.as_deref(), Some("25%"));
    let spread = pod(&d).topology_spread_constraints.unwrap_or_default();
    assert_eq!(spread.len(), 1);
    assert_eq!(
        (spread[0].topology_key.as_str(), spread[0].max_skew),
        ("rack", 2)
    );
    // Without a labelSelector a constraint would count no pods at all: it counts the hosts.
    assert_eq!(
        spread[0]
            .label_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        Some(desired::selector_labels("office"))
    );
    let none = build(&web("\n  template:\n    topologySpread: []\n"));
    assert_eq!(pod(&none).topology_spread_constraints, None);
}

#[test]
fn a_hosts_ephemeral_storage_is_bounded_by_what_its_scratch_volumes_may_hold() {
    let limits = |d: &Desired| {
        let c = &pod(d).containers[0];
        let r = c.resources.clone().unwrap_or_default();
        (
            r.requests
                .unwrap_or_default()
                .get("ephemeral-storage")
                .cloned(),
            r.limits
                .unwrap_or_default()
                .get("ephemeral-storage")
                .cloned(),
        )
    };
    // A web host: /tmp (64Mi) and the logs (64Mi).
    assert_eq!(
        limits(&build(&web(""))),
        (
            Some(Quantity("64Mi".into())),
            Some(Quantity("128Mi".into()))
        )
    );
    // A file host without storage also keeps its data in an emptyDir (at least 1 GiB).
    let file = hostrole(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: nas}\nspec:\n  servers:\n    file: {}\n",
    );
    let d = build(&file);
    let scratch = pod(&d)
        .volumes
        .unwrap_or_default()
        .iter()
        .filter(|v| v.name != "tmp")
        .filter_map(|v| v.empty_dir.as_ref()?.size_limit.clone())
        .map(|q| hostrole_api::quantity::parse_bytes(&q.0).expect("size") >> 20)
        .sum::<u64>();
    assert!(scratch >= 1024, "{scratch} MiB");
    assert_eq!(limits(&d).1, Some(Quantity(format!("{}Mi", scratch + 128))));
}

#[test]
fn a_chat_host_serves_irc_and_with_a_certificate_ircs_to_its_chat_clients() {
    let hr = hostrole(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: talk}\nspec:\n  networkPolicy: true\n  servers:\n    chat: {tls: {secret: chat-cert}, tlsPort: 16697, users: {secret: chat-users}, requireLogin: true, network: office}\n  clients:\n    - {service: chat, server: talk}\n",
    );
    let d = build(&hr);
    let service = d.service.clone().and_then(|s| s.spec).and_then(|s| s.ports);
    let ports: Vec<(String, i32)> = service
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name.unwrap_or_default(), p.port))
        .collect();
    assert_eq!(
        ports,
        [("irc".to_string(), 6667), ("ircs".to_string(), 16697)]
    );
    let container = pod(&d).containers[0].ports.clone().unwrap_or_default();
    for name in ["irc", "ircs"] {
        assert!(
            container.iter().any(|p| p.name.as_deref() == Some(name)),
            "{name}: {container:?}"
        );
    }
    let config: AgentConfig =
        serde_yaml::from_str(&d.config_map.data.clone().expect("data")[CONFIG_KEY])
            .expect("config");
    let chat = config.chat.expect("chat role");
    assert_eq!((chat.port, chat.tls_port), (6667, Some(16697)));
    assert_eq!(chat.network, "office");
    assert_eq!(chat.server_name, "talk");
    assert!(chat.require_login);
    assert!(
        !chat.allow_plaintext_auth,
        "passwords only over TLS in a cluster"
    );
    assert_eq!(
        chat.users_file.as_deref(),
        Some(std::path::Path::new("/etc/hostrole/users/chat/users"))
    );
    let client = &config.clients[0];
    assert_eq!(
        client.target,
        hostrole_config::ClientTarget::Url("irc://talk.lan.svc:6667/".into()),
        "the chat client probes the plain port"
    );
    // The NetworkPolicy admits the host's chat clients on both ports.
    let policy = d.network_policy.expect("policy").spec.expect("spec");
    let admitted: Vec<String> = policy
        .ingress
        .unwrap_or_default()
        .iter()
        .filter(|r| r.from.is_some())
        .flat_map(|r| r.ports.clone().unwrap_or_default())
        .filter_map(|p| p.port.map(|p| format!("{p:?}")))
        .collect();
    for port in [6667, 16697] {
        assert!(
            admitted.iter().any(|a| a.contains(&port.to_string())),
            "{port}: {admitted:?}"
        );
    }
}

#[test]
fn a_radio_host_serves_its_mounts_with_playlists_and_a_source_password_to_its_radio_clients() {
    let hr = hostrole(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: radio}\nspec:\n  networkPolicy: true\n  servers:\n    radio:\n      station: Office FM\n      sourcePassword: {secret: radio-source}\n      mounts:\n        - {path: /jingles, playlist: {configMap: jingles}, maxListeners: 5}\n        - {path: /live, live: true}\n  clients:\n    - {service: radio, server: radio, listen: 3s}\n",
    );
    let d = build(&hr);
    let service = d.service.clone().and_then(|s| s.spec).and_then(|s| s.ports);
    let ports: Vec<(String, i32)> = service
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name.unwrap_or_default(), p.port))
        .collect();
    assert_eq!(ports, [("radio".to_string(), 8000)]);
    let config: AgentConfig =
        serde_yaml::from_str(&d.config_map.data.clone().expect("data")[CONFIG_KEY])
            .expect("config");
    let radio = config.radio.expect("radio role");
    assert_eq!((radio.port, radio.station.as_str()), (8000, "Office FM"));
    assert_eq!(radio.max_listeners, 100, "the default");
    assert_eq!(
        radio.source_password_file.as_deref(),
        Some(std::path::Path::new("/etc/hostrole/radio/source/password"))
    );
    assert_eq!(radio.mounts.len(), 2);
    assert_eq!(
        radio.mounts[0].playlist_dir.as_deref(),
        Some(std::path::Path::new("/srv/hostrole/radio/playlist-0"))
    );
    assert_eq!(radio.mounts[0].max_listeners, Some(5));
    assert!(!radio.mounts[0].live && radio.mounts[1].live);
    assert_eq!(radio.mounts[1].playlist_dir, None);
    // The playlist's ConfigMap and the password's Secret are the pod's volumes.
    let volumes = pod(&d).volumes.clone().unwrap_or_default();
    let playlist = volumes
        .iter()
        .find(|v| v.name == "radio-playlist-0")
        .expect("the playlist volume");
    assert_eq!(
        playlist.config_map.as_ref().map(|c| c.name.as_str()),
        Some("jingles")
    );
    let source = volumes
        .iter()
        .find(|v| v.name == "radio-source")
        .expect("the source password volume");
    assert_eq!(
        source
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref()),
        Some("radio-source")
    );
    // The client listens to the first mount for 3 s.
    let client = &config.clients[0];
    assert_eq!(
        client.target,
        hostrole_config::ClientTarget::Url("http://radio.lan.svc:8000/".into())
    );
    assert_eq!(client.path.as_deref(), Some("/jingles"));
    assert_eq!(client.listen_ms, Some(3000));
    // The NetworkPolicy admits the host's radio clients.
    let policy = d.network_policy.expect("policy").spec.expect("spec");
    let admitted: Vec<String> = policy
        .ingress
        .unwrap_or_default()
        .iter()
        .filter(|r| r.from.is_some())
        .flat_map(|r| r.ports.clone().unwrap_or_default())
        .filter_map(|p| p.port.map(|p| format!("{p:?}")))
        .collect();
    assert!(admitted.iter().any(|a| a.contains("8000")), "{admitted:?}");
}

#[test]
fn a_peer_shares_its_printer_with_its_network_and_its_print_clients() {
    let hr = hostrole(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: den}\nspec:\n  networkPolicy: true\n  peer: {network: family}\n  servers:\n    print: {name: Den printer}\n  clients:\n    - {service: print, server: den}\n",
    );
    let d = build(&hr);
    let ports: Vec<(String, i32)> = d
        .service
        .clone()
        .and_then(|s| s.spec)
        .and_then(|s| s.ports)
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name.unwrap_or_default(), p.port))
        .collect();
    assert!(ports.contains(&("ipp".to_string(), 8631)), "{ports:?}");
    let config: AgentConfig =
        serde_yaml::from_str(&d.config_map.data.clone().expect("data")[CONFIG_KEY])
            .expect("config");
    let print = config.print.expect("print role");
    assert_eq!(print.name, "Den printer");
    assert_eq!(
        print.spool_dir,
        std::path::Path::new("/var/lib/hostrole/print/queue")
    );
    // The print volume is the pod's (scratch without storage).
    let volumes = pod(&d).volumes.clone().unwrap_or_default();
    assert!(
        volumes.iter().any(|v| v.name == "print-data"),
        "{volumes:?}"
    );
    // The printer's port admits the print clients and the peers of its network.
    let policy = d.network_policy.expect("policy").spec.expect("spec");
    let rule = policy
        .ingress
        .unwrap_or_default()
        .into_iter()
        .find(|r| {
            r.ports
                .iter()
                .flatten()
                .any(|p| format!("{:?}", p.port).contains("8631"))
        })
        .expect("a rule for the printer's port");
    let from = format!("{:?}", rule.from.expect("from"));
    assert!(from.contains("family"), "the network's peers: {from}");
    assert!(from.contains("den"), "the print clients: {from}");
}
