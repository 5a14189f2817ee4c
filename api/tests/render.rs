//! The one translator: a HostRole renders the same way in a cluster and on a machine, apart from
//! *where* things are (paths, host names, bind address). Every example is rendered in both
//! environments and compared after mapping the placement away.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use hostrole_api::HostRole;
use hostrole_api::manifest;
use hostrole_api::render::{
    self, Environment, HostPlan, Local, Location, ProblemReason, RenderError, Source,
};
use hostrole_config::{AgentConfig, ClientTarget};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn local() -> Local {
    Local {
        data_dir: PathBuf::from("/data"),
        manifest_dir: PathBuf::from("/manifests"),
        bind: Ipv4Addr::LOCALHOST.into(),
        admin_port: 9901,
        port_offset: 0,
        seeds: Vec::new(),
    }
}

fn in_namespace(hostroles: &[HostRole], namespace: &str) -> Vec<HostRole> {
    hostroles
        .iter()
        .cloned()
        .map(|mut hr| {
            hr.metadata.namespace = Some(namespace.into());
            hr
        })
        .collect()
}

/// A cluster Directory over a plain list (the operator's is its watch cache).
struct Cluster(Vec<HostRole>);
impl render::Directory for Cluster {
    fn each(&self) -> Box<dyn Iterator<Item = (&str, &HostRole)> + '_> {
        Box::new(
            self.0
                .iter()
                .map(|hr| (hr.metadata.namespace.as_deref().unwrap_or(""), hr)),
        )
    }
}

/// The configuration with the placement mapped away: cluster paths as the local data
/// directory would hold them, Service names as loopback, and the environment's own settings
/// (bind, admin port, namespace, grace, peer UI bind, discovery) cleared.
fn placeless(mut config: AgentConfig, cluster: bool) -> AgentConfig {
    let path = |p: &mut PathBuf| {
        if cluster {
            for location in [
                Location::Site,
                Location::FileData,
                Location::MailData,
                Location::ShareData,
                Location::Users("file"),
                Location::Users("mail"),
                Location::MailTls,
                Location::Networks,
                Location::Network,
            ] {
                if let Ok(rest) = p.strip_prefix(location.cluster_path()) {
                    *p = Path::new("/data").join(location.relative()).join(rest);
                    return;
                }
            }
            if let Ok(rest) = p.strip_prefix("/etc/hostrole/clients") {
                *p = Path::new("/data/clients").join(rest);
            }
        }
    };
    config.namespace = None;
    config.bind = Ipv4Addr::UNSPECIFIED.into();
    config.admin_port = 0;
    config.shutdown_grace_seconds = 0;
    if let Some(web) = &mut config.web {
        path(&mut web.root);
    }
    if let Some(file) = &mut config.file {
        path(&mut file.root);
        file.users_file.as_mut().map(path);
    }
    if let Some(mail) = &mut config.mail {
        path(&mut mail.root);
        mail.users_file.as_mut().map(path);
        if let Some(tls) = &mut mail.tls {
            path(&mut tls.cert);
            path(&mut tls.key);
        }
    }
    if let Some(index) = &mut config.index {
        path(&mut index.networks_dir);
    }
    if let Some(peer) = &mut config.peer {
        path(&mut peer.root);
        path(&mut peer.secret_file);
        peer.ui_bind = None;
        peer.discovery_dns = None;
        peer.seeds.clear();
        peer.index_url = peer.index_url.take().map(|u| loopback(&u).unwrap_or(u));
    }
    for client in &mut config.clients {
        client.credentials_dir.as_mut().map(path);
        match &mut client.target {
            ClientTarget::Url(url) => {
                if let Some(l) = loopback(url) {
                    *url = l;
                }
            }
            ClientTarget::Mail(mail) => mail.host = "127.0.0.1".into(),
        }
    }
    config
}

/// `http://name.ns.svc:port/…` → `http://127.0.0.1:port/…`.
fn loopback(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let (host, tail) = rest.split_once(':')?;
    host.ends_with(".svc")
        .then(|| format!("http://127.0.0.1:{tail}"))
}

/// Each role: its name, ports, and (volume, source) of its mounts.
type Shape = Vec<(String, Vec<(&'static str, u16)>, Vec<(String, String)>)>;

fn shape(plan: &HostPlan) -> Shape {
    plan.roles
        .iter()
        .map(|r| {
            (
                r.role.to_string(),
                r.ports.clone(),
                r.mounts
                    .iter()
                    .map(|m| (m.volume.clone(), format!("{:?}", m.source)))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn every_example_renders_the_same_in_a_cluster_and_on_a_machine() {
    let mut compared = 0;
    for entry in std::fs::read_dir(root().join("examples")).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let hostroles = manifest::load(&path).expect("valid");
        let cluster = Cluster(in_namespace(&hostroles, "lan"));
        for (hr, in_cluster) in hostroles.iter().zip(&cluster.0) {
            let here = local();
            let local_plan = render::render(hr, Environment::Local(&here), &hostroles);
            let cluster_plan = render::render(
                in_cluster,
                Environment::Cluster { namespace: "lan" },
                &cluster,
            );
            let name = hr.metadata.name.clone().unwrap_or_default();
            match (local_plan, cluster_plan) {
                (Ok(l), Ok(c)) => {
                    assert_eq!(shape(&l), shape(&c), "{name}: roles, ports and mounts");
                    assert_eq!(l.problems, c.problems, "{name}: problems");
                    assert_eq!(
                        placeless(l.config, false),
                        placeless(c.config, true),
                        "{name}: the configuration apart from placement"
                    );
                    compared += 1;
                }
                // Fields for one environment only are refused by the other, naming the field.
                (Err(RenderError::Unsupported { field, .. }), Ok(_))
                | (Ok(_), Err(RenderError::Unsupported { field, .. })) => {
                    assert!(field.starts_with("spec."), "{name}: {field}");
                }
                (l, c) => panic!("{name}: local {l:?}, cluster {c:?}"),
            }
        }
    }
    assert!(compared >= 7, "compared {compared} HostRoles");
}

fn hostrole(yaml: &str) -> HostRole {
    manifest::parse_all(
        &format!(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: h, namespace: lan}}\n{yaml}"
        ),
        "test",
    )
    .expect("valid")
    .remove(0)
}

#[test]
fn client_defaults_names_and_problems_are_the_translators() {
    let hr = hostrole(
        "spec:\n  clients:\n    - {service: web, server: missing}\n    - {service: mail, server: h}\n    - {service: file, url: \"http://nas.lan/\", every: 1m}\n",
    );
    let plan = render::render(
        &hr,
        Environment::Cluster { namespace: "lan" },
        &Cluster(vec![hr.clone()]),
    )
    .expect("renders");
    let problems: Vec<_> = plan
        .problems
        .iter()
        .map(|p| (p.field.as_str(), p.reason))
        .collect();
    assert_eq!(
        problems,
        [
            ("spec.clients[0].server", ProblemReason::ServerNotFound),
            ("spec.clients[1].server", ProblemReason::RoleMissing),
        ]
    );
    // Unresolved clients are left out; the others keep their position in their name.
    assert_eq!(plan.config.clients.len(), 1);
    let file = &plan.config.clients[0];
    assert_eq!(file.name, "file-2");
    assert_eq!((file.every_ms, file.timeout_ms), (60_000, 10_000));
}

#[test]
fn fields_of_one_environment_are_refused_by_the_other_with_the_fix() {
    let path_site = hostrole("spec:\n  servers:\n    web: {site: {path: site}}\n");
    let err = render::render(
        &path_site,
        Environment::Cluster { namespace: "lan" },
        &Cluster(vec![]),
    )
    .expect_err("a pod cannot see the machine")
    .to_string();
    assert!(
        err.contains("spec.servers.web.site.path") && err.contains("site.configMap"),
        "{err}"
    );
    let here = local();
    let config = render::render(
        &path_site,
        Environment::Local(&here),
        &vec![path_site.clone()],
    )
    .expect("standalone reads the path")
    .config;
    assert_eq!(config.web.expect("web").root, Path::new("/manifests/site"));

    let config_map_site = hostrole("spec:\n  servers:\n    web: {site: {configMap: pages}}\n");
    let err = render::render(
        &config_map_site,
        Environment::Local(&here),
        &vec![config_map_site.clone()],
    )
    .expect_err("no cluster")
    .to_string();
    assert!(err.contains("site.configMap needs a cluster"), "{err}");
}

#[test]
fn data_with_storage_is_a_claim_and_without_is_scratch() {
    let hr = hostrole("spec:\n  servers:\n    file: {storage: 1Gi}\n    mail: {domains: [lan]}\n");
    let plan = render::render(
        &hr,
        Environment::Cluster { namespace: "lan" },
        &Cluster(vec![]),
    )
    .expect("renders");
    let data: Vec<_> = plan
        .mounts()
        .filter_map(|m| match &m.source {
            Source::Data { storage } => {
                Some((m.volume.as_str(), storage.as_ref().map(|q| q.0.as_str())))
            }
            _ => None,
        })
        .collect();
    assert_eq!(data, [("file-data", Some("1Gi")), ("mail-data", None)]);
    assert_eq!(plan.config.file.expect("file").quota_bytes, Some(1 << 30));
}
