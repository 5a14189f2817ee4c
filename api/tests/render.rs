//! The one translator: a HostRole renders the same way in a cluster and on a machine, apart from
//! *where* things are (paths, host names, bind address). Every example is rendered in both
//! environments and compared after mapping the placement away.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use hostrole_api::HostRole;
use hostrole_api::access::ObjectKind;
use hostrole_api::manifest;
use hostrole_api::render::{
    self, Environment, HostPlan, Local, LocalDirectory, Location, ProblemReason, RenderError,
    Source,
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
        offsets: Default::default(),
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

/// A cluster Directory over plain lists (the operator's is its watch cache and what the API
/// server said of labels).
#[derive(Default)]
struct Cluster {
    hostroles: Vec<HostRole>,
    /// Namespace → its labels.
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Objects labelled for use: (kind, namespace, name).
    labelled: BTreeSet<(ObjectKind, String, String)>,
}

impl Cluster {
    fn of(hostroles: Vec<HostRole>) -> Cluster {
        Cluster {
            hostroles,
            ..Default::default()
        }
    }
}

impl render::Directory for Cluster {
    fn each(&self) -> Box<dyn Iterator<Item = (&str, &HostRole)> + '_> {
        Box::new(
            self.hostroles
                .iter()
                .map(|hr| (hr.metadata.namespace.as_deref().unwrap_or(""), hr)),
        )
    }

    fn namespace_labels(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.namespaces.get(namespace)
    }

    fn usable(&self, kind: ObjectKind, namespace: &str, name: &str) -> bool {
        self.labelled
            .contains(&(kind, namespace.to_string(), name.to_string()))
    }
}

/// The configuration with the placement mapped away: cluster paths as the local data
/// directory would hold them, Service names as loopback, and the environment's own settings
/// (bind, admin port, namespace, grace, peer UI bind, discovery) cleared.
#[test]
fn a_radio_client_listens_to_the_mount_its_url_names_or_its_path() {
    let hr = hostrole(
        "spec:\n  clients:\n    - {service: radio, url: \"http://radio.example.lan:8000/music/stream.mp3?x=1\"}\n    - {service: radio, url: \"https://radio.example.lan/\", path: /live, listen: 2s}\n",
    );
    let plan = render::render(
        &hr,
        Environment::Cluster { namespace: "lan" },
        &Cluster::of(vec![hr.clone()]),
    )
    .expect("renders");
    let got: Vec<_> = plan
        .config
        .clients
        .iter()
        .map(|c| (c.target.clone(), c.path.clone(), c.listen_ms))
        .collect();
    assert_eq!(
        got,
        [
            (
                ClientTarget::Url("http://radio.example.lan:8000/".into()),
                Some("/music/stream.mp3".into()),
                Some(5000)
            ),
            (
                ClientTarget::Url("https://radio.example.lan/".into()),
                Some("/live".into()),
                Some(2000)
            ),
        ]
    );
}

#[test]
fn a_radio_playlist_from_the_file_share_plays_a_folder_of_the_hosts_share() {
    let hr = hostrole(
        "spec:\n  servers:\n    file: {}\n    radio:\n      mounts: [{path: /music, playlist: {fileShare: station/music}}]\n",
    );
    let plan = render::render(
        &hr,
        Environment::Cluster { namespace: "lan" },
        &Cluster::of(vec![hr.clone()]),
    )
    .expect("renders");
    let radio = plan.config.radio.expect("radio");
    assert_eq!(
        radio.mounts[0].playlist_dir.as_deref(),
        Some(
            Location::FileData
                .cluster_path()
                .join("station/music")
                .as_path()
        )
    );
    assert_eq!(
        plan.config.file.expect("file").root,
        Location::FileData.cluster_path()
    );
}

#[test]
fn a_printer_keeps_its_queue_and_printouts_on_its_volume_or_prints_to_the_share() {
    let hr = hostrole(
        "spec:\n  servers:\n    print: {location: 2nd floor, maxJobs: 10, maxJobSize: 10Mi}\n",
    );
    let plan = render::render(
        &hr,
        Environment::Cluster { namespace: "lan" },
        &Cluster::of(vec![hr.clone()]),
    )
    .expect("renders");
    let print = plan.config.print.clone().expect("print");
    let data = Location::PrintData.cluster_path();
    assert_eq!(print.spool_dir, data.join("queue"));
    assert_eq!(print.output_dir, data.join("printouts"));
    assert_eq!((print.max_jobs, print.max_job_bytes), (10, 10 << 20));
    assert_eq!(print.port, 8631);
    assert_eq!(print.location.as_deref(), Some("2nd floor"));
    // The scratch volume holds every kept job's printout and the one being spooled.
    let volume = plan
        .mounts()
        .find(|m| m.location == Location::PrintData)
        .expect("the print volume");
    assert_eq!(
        volume.source,
        Source::Data {
            storage: None,
            scratch: k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into()),
        }
    );
    assert_eq!(
        plan.ports().collect::<Vec<_>>(),
        vec![("ipp", 8631)],
        "the printer's port is served"
    );

    let hr =
        hostrole("spec:\n  servers:\n    file: {}\n    print: {output: {fileShare: printouts}}\n");
    let plan = render::render(
        &hr,
        Environment::Cluster { namespace: "lan" },
        &Cluster::of(vec![hr.clone()]),
    )
    .expect("renders");
    let print = plan.config.print.expect("print");
    assert_eq!(
        print.output_dir,
        Location::FileData.cluster_path().join("printouts")
    );
    // A share without storage is scratch space (2Gi for the default 1Gi upload), which the
    // kubelet evicts the pod past: its quota leaves room in it for one upload being staged,
    // and printouts count against it as uploads do.
    let scratch_quota = Some(hostrole_config::OutputQuota {
        share_root: Location::FileData.cluster_path(),
        quota_bytes: 1 << 30,
    });
    assert_eq!(print.output_quota, scratch_quota);
    assert_eq!(
        plan.config.file.as_ref().map(|f| f.quota_bytes),
        Some(Some(1 << 30))
    );
    // On a machine there is no scratch space to keep.
    let local = render::render(
        &hr,
        Environment::Local(&local()),
        &Cluster::of(vec![hr.clone()]),
    )
    .expect("renders");
    assert_eq!(local.config.print.expect("print").output_quota, None);
    assert_eq!(local.config.file.expect("file").quota_bytes, None);
    // With one, printouts count against it.
    let hr = hostrole(
        "spec:\n  servers:\n    file: {storage: 2Gi}\n    print: {output: {fileShare: printouts}}\n",
    );
    let plan = render::render(
        &hr,
        Environment::Cluster { namespace: "lan" },
        &Cluster::of(vec![hr.clone()]),
    )
    .expect("renders");
    assert_eq!(
        plan.config.print.expect("print").output_quota,
        Some(hostrole_config::OutputQuota {
            share_root: Location::FileData.cluster_path(),
            quota_bytes: 2 << 30,
        })
    );
}

#[test]
fn a_peers_host_offers_its_printer_to_the_network_as_the_print_role_runs_it() {
    let offered = |yaml: &str, env: Environment| {
        let hr = hostrole(yaml);
        render::render(&hr, env, &Cluster::of(vec![hr.clone()]))
            .expect("renders")
            .config
            .peer
            .expect("peer")
            .printer
    };
    let cluster = || Environment::Cluster { namespace: "lan" };
    let printer = offered(
        "spec:\n  servers:\n    print: {port: 9631}\n  peer: {network: family}\n",
        cluster(),
    )
    .expect("offered");
    // The print role's defaults: the HostRole's name.
    assert_eq!(
        (printer.name.as_str(), printer.port, printer.tls),
        ("h", 9631, false)
    );
    let named = offered(
        "spec:\n  servers:\n    print: {name: Office laser}\n  peer: {network: family}\n",
        Environment::Local(&local()),
    )
    .expect("offered standalone too");
    assert_eq!((named.name.as_str(), named.port), ("Office laser", 8631));
    // Standalone with a port offset (a second host of the network on the same machine): the
    // printer moves with the peer's ports, and is offered where it listens.
    let shifted = Local {
        port_offset: 20,
        ..local()
    };
    let hr = hostrole("spec:\n  servers:\n    print: {}\n  peer: {network: family}\n");
    let plan = render::render(
        &hr,
        Environment::Local(&shifted),
        &Cluster::of(vec![hr.clone()]),
    )
    .expect("renders");
    assert_eq!(plan.config.print.expect("print").port, 8651);
    assert_eq!(
        plan.config
            .peer
            .expect("peer")
            .printer
            .expect("offered")
            .port,
        8651
    );
    assert_eq!(
        offered("spec:\n  peer: {network: family}\n", cluster()),
        None
    );
}

#[test]
fn a_print_client_reaches_the_printer_uri_of_its_server_or_its_url() {
    let printer =
        hostrole("spec:\n  servers:\n    print: {port: 9631, tls: {secret: printer-tls}}\n");
    let mut printer = printer;
    printer.metadata.name = Some("office".into());
    let laptop = hostrole(
        "spec:\n  clients:\n    - {service: print, server: office}\n    - {service: print, url: \"ipp://printer.example.lan/ipp/print\"}\n    - {service: print, url: \"ftp://printer.example.lan/\"}\n",
    );
    let plan = render::render(
        &laptop,
        Environment::Cluster { namespace: "lan" },
        &Cluster::of(vec![printer, laptop.clone()]),
    )
    .expect("renders");
    let targets: Vec<_> = plan
        .config
        .clients
        .iter()
        .map(|c| c.target.clone())
        .collect();
    assert_eq!(
        targets,
        vec![
            ClientTarget::Url("ipps://office.lan.svc:9631/ipp/print".into()),
            ClientTarget::Url("ipp://printer.example.lan/ipp/print".into()),
        ]
    );
    assert_eq!(plan.problems.len(), 1, "{:?}", plan.problems);
    assert_eq!(plan.problems[0].field, "spec.clients[2].url");
    assert!(
        plan.problems[0].message.contains("must be a printer URI"),
        "{}",
        plan.problems[0].message
    );
}

#[test]
fn a_printer_for_its_users_does_not_open_to_everyone_while_their_secret_cannot_be_used() {
    let hr = hostrole("spec:\n  servers:\n    print: {users: {secret: printer-users}}\n");
    let plan = render::render(
        &hr,
        Environment::Cluster { namespace: "lan" },
        &Cluster::of(vec![hr.clone()]),
    )
    .expect("renders");
    assert_eq!(plan.config.print, None, "no printer without its users");
    assert_eq!(plan.problems.len(), 1, "{:?}", plan.problems);
    assert_eq!(plan.problems[0].field, "spec.servers.print.users.secret");
    assert_eq!(plan.problems[0].reason, ProblemReason::ReferenceNotAllowed);

    let mut cluster = Cluster::of(vec![hr.clone()]);
    cluster
        .labelled
        .insert((ObjectKind::Secret, "lan".into(), "printer-users".into()));
    let plan =
        render::render(&hr, Environment::Cluster { namespace: "lan" }, &cluster).expect("renders");
    let print = plan.config.print.expect("print");
    assert_eq!(
        print.users_file,
        Some(Location::Users("print").cluster_path().join("users"))
    );
}

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
                Location::Users("chat"),
                Location::Tls("mail"),
                Location::Tls("chat"),
                Location::Tls("web"),
                Location::Tls("file"),
                Location::Networks,
                Location::Network,
                Location::RelayCredentials,
                Location::RelayCa,
                Location::SourcePassword,
                Location::Tls("radio"),
                Location::Playlist(0),
                Location::Playlist(1),
                Location::Playlist(2),
                Location::PrintData,
                Location::Users("print"),
                Location::Tls("print"),
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
        if let Some(outbound) = &mut mail.outbound {
            for route in &mut outbound.routes {
                route.host = "127.0.0.1".into();
            }
            if let Some(relay) = &mut outbound.relay {
                relay.credentials_dir.as_mut().map(path);
                relay.ca_file.as_mut().map(path);
            }
        }
    }
    if let Some(chat) = &mut config.chat {
        chat.users_file.as_mut().map(path);
        if let Some(tls) = &mut chat.tls {
            path(&mut tls.cert);
            path(&mut tls.key);
        }
    }
    if let Some(radio) = &mut config.radio {
        radio.source_password_file.as_mut().map(path);
        for mount in &mut radio.mounts {
            mount.playlist_dir.as_mut().map(path);
        }
        if let Some(tls) = &mut radio.tls {
            path(&mut tls.cert);
            path(&mut tls.key);
        }
    }
    if let Some(print) = &mut config.print {
        path(&mut print.spool_dir);
        path(&mut print.output_dir);
        print.users_file.as_mut().map(path);
        if let Some(quota) = &mut print.output_quota {
            path(&mut quota.share_root);
        }
        if let Some(tls) = &mut print.tls {
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
        if let Some(to) = &mut client.mail_to {
            path(&mut to.credentials_dir);
            to.target.host = "127.0.0.1".into();
        }
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

/// `http://name.ns.svc:port/…` → `http://127.0.0.1:port/…` (and `irc://`, `ipp://` and their
/// TLS forms alike).
fn loopback(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "http" | "https" | "irc" | "ircs" | "ipp" | "ipps") {
        return None;
    }
    let (host, tail) = rest.split_once(':')?;
    host.ends_with(".svc")
        .then(|| format!("{scheme}://127.0.0.1:{tail}"))
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
        let text = std::fs::read_to_string(&path).expect("readable");
        let hostroles = manifest::load(&path).expect("valid");
        // What the manifest labels for use, in the cluster's namespace and on the machine.
        let labelled = manifest::labelled_for_use(&text);
        let cluster = Cluster {
            hostroles: in_namespace(&hostroles, "lan"),
            labelled: labelled
                .iter()
                .map(|(kind, name)| (*kind, "lan".to_string(), name.clone()))
                .collect(),
            ..Default::default()
        };
        let machine = LocalDirectory {
            hostroles: hostroles.clone(),
            labelled,
        };
        for (hr, in_cluster) in hostroles.iter().zip(&cluster.hostroles) {
            let here = local();
            let local_plan = render::render(hr, Environment::Local(&here), &machine);
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
                    assert!(
                        l.problems
                            .iter()
                            .all(|p| p.reason != ProblemReason::ReferenceNotAllowed),
                        "{name}: the examples label every Secret and ConfigMap they use: {:?}",
                        l.problems
                    );
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
        &Cluster::of(vec![hr.clone()]),
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
        &Cluster::of(vec![]),
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
        &Cluster::of(vec![]),
    )
    .expect("renders");
    let data: Vec<_> = plan
        .mounts()
        .filter_map(|m| match &m.source {
            Source::Data { storage, scratch } => Some((
                m.volume.as_str(),
                storage.as_ref().map(|q| q.0.as_str()),
                scratch.0.as_str(),
            )),
            _ => None,
        })
        .collect();
    // Scratch space is room for two of the role's largest writes, at least 1 GiB: for the
    // default 1 GiB upload 2 GiB, for the default 25 MiB message 1 GiB.
    assert_eq!(
        data,
        [
            ("file-data", Some("1Gi"), "2Gi"),
            ("mail-data", None, "1Gi")
        ]
    );
    assert_eq!(plan.config.file.expect("file").quota_bytes, Some(1 << 30));
    let big = hostrole(
        "spec:\n  servers:\n    mail: {domains: [lan], maxMessageSize: 600Mi}\n  peer: {network: n}\n",
    );
    let plan = render::render(
        &big,
        Environment::Cluster { namespace: "lan" },
        &Cluster::of(vec![]),
    )
    .expect("renders");
    let scratch: Vec<_> = plan
        .mounts()
        .filter_map(|m| match &m.source {
            Source::Data { scratch, .. } => Some((m.volume.as_str(), scratch.0.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(scratch, [("mail-data", "1200Mi"), ("share-data", "1Gi")]);
}

/// A HostRole `name` in `namespace`.
fn in_ns(namespace: &str, name: &str, spec: &str) -> HostRole {
    manifest::parse_all(
        &format!(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: {name}, namespace: {namespace}}}\n{spec}"
        ),
        "test",
    )
    .expect("valid")
    .remove(0)
}

const OFFICE: &str = "spec:\n  servers:\n    web: {port: 8443}\n    mail: {smtpPort: 2626, domains: [secret-office.example]}\n";

fn office_allowing(allow: &str) -> HostRole {
    in_ns(
        "office",
        "office",
        &format!("{OFFICE}  allowClientsFrom: {allow}\n"),
    )
}

fn guest_laptop() -> HostRole {
    in_ns(
        "guests",
        "laptop",
        "spec:\n  clients:\n    - {service: web, server: office/office}\n    - {service: mail, server: office/office}\n",
    )
}

#[test]
fn a_server_in_another_namespace_without_consent_is_forbidden_and_reveals_nothing() {
    let laptop = guest_laptop();
    let render_with = |others: Vec<HostRole>| {
        let mut all = others;
        all.push(laptop.clone());
        render::render(
            &laptop,
            Environment::Cluster {
                namespace: "guests",
            },
            &Cluster::of(all),
        )
        .expect("renders")
    };
    let office = in_ns("office", "office", OFFICE);
    let not_consenting = render_with(vec![office]);
    let missing = render_with(vec![]);
    // Allowing another namespace is not allowing this one.
    let others_only = render_with(vec![office_allowing("{namespaces: [friends]}")]);
    for plan in [&not_consenting, &missing, &others_only] {
        let reasons: Vec<_> = plan.problems.iter().map(|p| p.reason).collect();
        assert_eq!(
            reasons,
            [ProblemReason::Forbidden, ProblemReason::Forbidden]
        );
        assert!(plan.config.clients.is_empty(), "no client of it runs");
        let text = format!("{:?} {:?}", plan.problems, plan.config);
        for secret in ["8443", "2626", "secret-office", "office.office.svc"] {
            assert!(!text.contains(secret), "{secret} revealed in {text}");
        }
    }
    // Whether it exists cannot be told from the answer.
    assert_eq!(not_consenting.problems, missing.problems);
    assert_eq!(others_only.problems, missing.problems);
    let message = &missing.problems[0].message;
    assert!(
        message.contains("spec.clients[0].server")
            && message.contains("office/office")
            && message.contains("allowClientsFrom")
            && message.contains("guests"),
        "{message}"
    );
}

#[test]
fn a_server_that_allows_the_namespace_by_name_or_labels_is_resolved() {
    let laptop = guest_laptop();
    let guests_labels = BTreeMap::from([("team".to_string(), "visitors".to_string())]);
    for (allow, labels) in [
        ("{namespaces: [guests]}", None),
        (
            "{namespaceSelector: {matchLabels: {team: visitors}}}",
            Some(guests_labels.clone()),
        ),
        (
            "{namespaceSelector: {matchExpressions: [{key: team, operator: In, values: [visitors, staff]}]}}",
            Some(guests_labels.clone()),
        ),
        ("{namespaceSelector: {}}", Some(BTreeMap::new())),
    ] {
        let cluster = Cluster {
            hostroles: vec![office_allowing(allow), laptop.clone()],
            namespaces: labels
                .map(|l| BTreeMap::from([("guests".to_string(), l)]))
                .unwrap_or_default(),
            ..Default::default()
        };
        let plan = render::render(
            &laptop,
            Environment::Cluster {
                namespace: "guests",
            },
            &cluster,
        )
        .expect("renders");
        assert!(plan.problems.is_empty(), "{allow}: {:?}", plan.problems);
        assert_eq!(
            plan.config.clients[0].target,
            ClientTarget::Url("http://office.office.svc:8443/".into()),
            "{allow}"
        );
    }
    // A selector on labels the namespace does not carry, or a namespace whose labels are not
    // known, is no consent.
    for labels in [
        Some(BTreeMap::from([(
            "team".to_string(),
            "strangers".to_string(),
        )])),
        None,
    ] {
        let cluster = Cluster {
            hostroles: vec![
                office_allowing("{namespaceSelector: {matchLabels: {team: visitors}}}"),
                laptop.clone(),
            ],
            namespaces: labels
                .map(|l| BTreeMap::from([("guests".to_string(), l)]))
                .unwrap_or_default(),
            ..Default::default()
        };
        let plan = render::render(
            &laptop,
            Environment::Cluster {
                namespace: "guests",
            },
            &cluster,
        )
        .expect("renders");
        assert_eq!(plan.problems[0].reason, ProblemReason::Forbidden);
    }
}

#[test]
fn secrets_and_config_maps_without_the_use_label_are_not_mounted_and_name_the_fix() {
    let hr = in_ns(
        "lan",
        "office",
        "spec:\n  servers:\n    web: {site: {configMap: pages}}\n    file: {users: {secret: share-users}}\n    mail: {domains: [lan], tls: {secret: mail-cert}}\n  clients:\n    - {service: file, url: 'http://nas.lan/', credentials: {secret: login}}\n",
    );
    let nothing = Cluster::of(vec![hr.clone()]);
    let plan =
        render::render(&hr, Environment::Cluster { namespace: "lan" }, &nothing).expect("renders");
    let problems: Vec<_> = plan
        .problems
        .iter()
        .map(|p| (p.field.as_str(), p.reason))
        .collect();
    assert_eq!(
        problems,
        [
            (
                "spec.servers.web.site.configMap",
                ProblemReason::ReferenceNotAllowed
            ),
            (
                "spec.servers.file.users.secret",
                ProblemReason::ReferenceNotAllowed
            ),
            (
                "spec.servers.mail.tls.secret",
                ProblemReason::ReferenceNotAllowed
            ),
            (
                "spec.clients[0].credentials.secret",
                ProblemReason::ReferenceNotAllowed
            ),
        ]
    );
    let message = &plan.problems[1].message;
    assert!(
        message.contains("Secret share-users")
            && message.contains("kubectl label secret share-users hostrole.dev/use=true"),
        "{message}"
    );
    assert!(
        plan.problems[0]
            .message
            .contains("kubectl label configmap pages hostrole.dev/use=true"),
        "{}",
        plan.problems[0].message
    );
    // Nothing of them is mounted or configured.
    let named: Vec<String> = plan
        .mounts()
        .filter_map(|m| match &m.source {
            Source::Secret { name, .. } | Source::ConfigMap { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert!(named.is_empty(), "{named:?}");
    assert!(
        plan.config
            .file
            .as_ref()
            .expect("file")
            .users_file
            .is_none()
    );
    assert!(
        plan.config.mail.is_none(),
        "without its certificate the mail role would take passwords in the clear"
    );
    assert!(!plan.ports().any(|(name, _)| name == "smtp"));
    assert!(plan.config.clients.is_empty());
    let site = plan.mounts().find(|m| m.volume == "site").expect("site");
    assert!(
        matches!(&site.source, Source::InlineSite { files } if files[0].content.contains("not published yet")),
        "a placeholder page: {:?}",
        site.source
    );

    // Labelled, every one is used.
    let labelled = Cluster {
        hostroles: vec![hr.clone()],
        labelled: [
            (ObjectKind::ConfigMap, "pages"),
            (ObjectKind::Secret, "share-users"),
            (ObjectKind::Secret, "mail-cert"),
            (ObjectKind::Secret, "login"),
        ]
        .into_iter()
        .map(|(k, n)| (k, "lan".to_string(), n.to_string()))
        .collect(),
        ..Default::default()
    };
    let plan =
        render::render(&hr, Environment::Cluster { namespace: "lan" }, &labelled).expect("renders");
    assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    assert!(plan.config.mail.expect("mail").tls.is_some());
    assert_eq!(plan.config.clients.len(), 1);
    // A label in another namespace is not this one's.
    let elsewhere = Cluster {
        hostroles: vec![hr.clone()],
        labelled: BTreeSet::from([(ObjectKind::Secret, "other".into(), "login".into())]),
        ..Default::default()
    };
    let plan = render::render(&hr, Environment::Cluster { namespace: "lan" }, &elsewhere)
        .expect("renders");
    assert!(
        plan.problems
            .iter()
            .any(|p| p.field == "spec.clients[0].credentials.secret")
    );
}

#[test]
fn a_machine_applies_the_same_label_rule_to_the_manifests_secrets() {
    let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: login}\nstringData: {username: a, password: b}\n---\n\
        apiVersion: v1\nkind: Secret\nmetadata: {name: users, labels: {hostrole.dev/use: \"true\"}}\nstringData: {users: x}\n---\n\
        apiVersion: v1\nkind: ConfigMap\nmetadata: {name: pages, labels: {hostrole.dev/use: \"yes\"}}\n";
    assert_eq!(
        manifest::labelled_for_use(text),
        BTreeSet::from([(ObjectKind::Secret, "users".to_string())]),
        "only the exact label counts"
    );
    let hr = hostrole(
        "spec:\n  servers:\n    file: {users: {secret: users}}\n  clients:\n    - {service: file, url: 'http://nas.lan/', credentials: {secret: login}}\n",
    );
    let machine = LocalDirectory {
        hostroles: vec![hr.clone()],
        labelled: manifest::labelled_for_use(text),
    };
    let here = local();
    let plan = render::render(&hr, Environment::Local(&here), &machine).expect("renders");
    let fields: Vec<_> = plan.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["spec.clients[0].credentials.secret"]);
    assert!(
        plan.problems[0]
            .message
            .contains("labelled hostrole.dev/use: \"true\""),
        "{}",
        plan.problems[0].message
    );
    assert!(plan.config.file.expect("file").users_file.is_some());
}

#[test]
fn https_mounts_the_certificate_serves_the_redirect_port_and_clients_use_https() {
    let server = hostrole(
        "spec:\n  servers:\n    web: {port: 8443, httpRedirectPort: 8080, tls: {secret: cert}}\n    file: {tls: {secret: cert}}\n",
    );
    let client = hostrole(
        "spec:\n  clients:\n    - {service: web, server: h}\n    - {service: file, server: h}\n",
    );
    let mut cluster = Cluster::of(vec![server.clone()]);
    let plan = |cluster: &Cluster, hr: &HostRole| {
        render::render(hr, Environment::Cluster { namespace: "lan" }, cluster).expect("renders")
    };
    // Unlabelled: neither role is served in the clear instead.
    let refused = plan(&cluster, &server);
    assert!(refused.config.web.is_none() && refused.config.file.is_none());
    assert_eq!(refused.problems.len(), 2, "{:?}", refused.problems);

    cluster
        .labelled
        .insert((ObjectKind::Secret, "lan".into(), "cert".into()));
    let served = plan(&cluster, &server);
    let web = served.config.web.as_ref().expect("web");
    assert_eq!(
        web.tls.as_ref().map(|t| t.cert.clone()),
        Some(PathBuf::from("/etc/hostrole/tls/web/tls.crt"))
    );
    assert_eq!(web.redirect_port, Some(8080));
    let ports: Vec<_> = served.ports().collect();
    assert!(ports.contains(&("web", 8443)) && ports.contains(&("web-redirect", 8080)));
    let volumes: Vec<_> = served.mounts().map(|m| m.volume.as_str()).collect();
    assert!(
        volumes.contains(&"web-tls") && volumes.contains(&"file-tls"),
        "{volumes:?}"
    );

    let clients = plan(&cluster, &client).config.clients;
    let urls: Vec<_> = clients
        .iter()
        .map(|c| match &c.target {
            ClientTarget::Url(u) => u.as_str(),
            ClientTarget::Mail(_) => "",
        })
        .collect();
    assert_eq!(urls, ["https://h.lan.svc:8443/", "https://h.lan.svc:8081/"]);
}

#[test]
fn a_mailbox_quota_defaults_to_1gi_or_the_volume_and_must_fit_a_message_and_the_volume() {
    let render_mail = |mail: &str| {
        render::render(
            &hostrole(&format!("spec:\n  servers:\n    mail: {mail}\n")),
            Environment::Cluster { namespace: "lan" },
            &Cluster::of(vec![]),
        )
    };
    let quota = |mail: &str| {
        render_mail(mail)
            .expect("renders")
            .config
            .mail
            .expect("mail")
            .mailbox_quota_bytes
    };
    assert_eq!(quota("{domains: [lan]}"), Some(1 << 30));
    assert_eq!(quota("{domains: [lan], storage: 100Mi}"), Some(100 << 20));
    assert_eq!(
        quota("{domains: [lan], mailboxQuota: 50Mi}"),
        Some(50 << 20)
    );
    for (mail, fix) in [
        (
            "{domains: [lan], mailboxQuota: 1Mi}",
            "raise mailboxQuota or lower maxMessageSize",
        ),
        (
            "{domains: [lan], storage: 1Gi, mailboxQuota: 2Gi}",
            "lower mailboxQuota to at most storage",
        ),
    ] {
        let err = render_mail(mail).expect_err(mail);
        let text = err.to_string();
        assert!(
            matches!(err, RenderError::Inconsistent { .. })
                && text.contains("spec.servers.mail.mailboxQuota")
                && text.contains(fix),
            "{text}"
        );
    }
}

#[test]
fn implicit_tls_ports_come_with_a_certificate_and_plaintext_logins_only_when_allowed() {
    let cert = Cluster {
        labelled: BTreeSet::from([(ObjectKind::Secret, "lan".into(), "mail-cert".into())]),
        ..Default::default()
    };
    let in_cluster = |mail: &str| {
        render::render(
            &hostrole(&format!("spec:\n  servers:\n    mail: {mail}\n")),
            Environment::Cluster { namespace: "lan" },
            &cert,
        )
        .expect("renders")
    };
    let mail_ports = |plan: &HostPlan| -> Vec<(&'static str, u16)> { plan.ports().collect() };

    // With a certificate: IMAPS, POP3S and submissions beside the STARTTLS ports, by default
    // on 1993, 1995 and 2465.
    let plan = in_cluster("{domains: [lan], tls: {secret: mail-cert}}");
    assert_eq!(
        mail_ports(&plan),
        [
            ("smtp", 2525),
            ("submission", 2587),
            ("imap", 1143),
            ("pop3", 1110),
            ("imaps", 1993),
            ("pop3s", 1995),
            ("submissions", 2465),
        ]
    );
    let config = plan.config.mail.expect("mail");
    assert_eq!(
        (
            config.imaps_port,
            config.pop3s_port,
            config.submissions_port
        ),
        (Some(1993), Some(1995), Some(2465))
    );
    assert!(!config.allow_plaintext_auth, "a cluster host: TLS only");
    let plan = in_cluster(
        "{domains: [lan], tls: {secret: mail-cert}, imapsPort: 10993, pop3sPort: 10995, submissionsPort: 10465}",
    );
    let config = plan.config.mail.expect("mail");
    assert_eq!(
        (
            config.imaps_port,
            config.pop3s_port,
            config.submissions_port
        ),
        (Some(10993), Some(10995), Some(10465))
    );

    // Without one: no implicit-TLS port anywhere, and no passwords unless the manifest says so.
    let plan = in_cluster("{domains: [lan]}");
    assert_eq!(mail_ports(&plan).len(), 4, "{:?}", mail_ports(&plan));
    let config = plan.config.mail.expect("mail");
    assert_eq!(
        (
            config.imaps_port,
            config.pop3s_port,
            config.submissions_port
        ),
        (None, None, None)
    );
    assert!(!config.allow_plaintext_auth);
    let config = in_cluster("{domains: [lan], allowPlaintextAuth: true}")
        .config
        .mail
        .expect("mail");
    assert!(config.allow_plaintext_auth);

    // A standalone host on loopback allows them unless told not to; on another address not.
    let standalone = |bind: std::net::IpAddr, mail: &str| {
        let here = Local { bind, ..local() };
        render::render(
            &hostrole(&format!("spec:\n  servers:\n    mail: {mail}\n")),
            Environment::Local(&here),
            &LocalDirectory {
                hostroles: Vec::new(),
                labelled: BTreeSet::from([(ObjectKind::Secret, "mail-cert".to_string())]),
            },
        )
        .expect("renders")
        .config
        .mail
        .expect("mail")
        .allow_plaintext_auth
    };
    let loopback = Ipv4Addr::LOCALHOST.into();
    let lan = Ipv4Addr::new(192, 168, 1, 20).into();
    assert!(standalone(loopback, "{domains: [lan]}"));
    assert!(
        !standalone(loopback, "{domains: [lan], tls: {secret: mail-cert}}"),
        "with a certificate, logins go over TLS"
    );
    assert!(!standalone(
        loopback,
        "{domains: [lan], allowPlaintextAuth: false}"
    ));
    assert!(!standalone(lan, "{domains: [lan]}"));
    assert!(standalone(
        lan,
        "{domains: [lan], allowPlaintextAuth: true}"
    ));
}

#[test]
fn an_implicit_tls_port_may_not_clash_with_another_port() {
    let err = manifest::parse_all(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: h}\nspec:\n  servers:\n    mail: {domains: [lan], tls: {secret: c}, imapsPort: 1143}\n",
        "test",
    )
    .expect_err("imapsPort on the IMAP port");
    assert!(
        err.to_string()
            .contains("two server roles use the same port"),
        "{err}"
    );
    // Without a certificate the port is not served, so it clashes with nothing.
    manifest::parse_all(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: h}\nspec:\n  servers:\n    mail: {domains: [lan], imapsPort: 1143}\n",
        "test",
    )
    .expect("valid");
}

#[test]
fn mail_hosts_route_each_others_domains_by_service_or_loopback_within_a_namespace() {
    let a = "spec:\n  servers:\n    mail: {domains: [a.example, shared.example]}\n";
    let b = "spec:\n  servers:\n    mail: {smtpPort: 2626, domains: [b.example, shared.example]}\n";
    let c = "spec:\n  servers:\n    mail: {smtpPort: 2727, domains: [b.example, c.example]}\n";
    let routes = |plan: &HostPlan| {
        plan.config
            .mail
            .as_ref()
            .expect("mail")
            .outbound
            .as_ref()
            .expect("outbound")
            .routes
            .iter()
            .map(|r| format!("{}={}:{}", r.domain, r.host, r.port))
            .collect::<Vec<_>>()
    };
    // One namespace: b's domains go to b's Service (its own shared domain stays local); a domain
    // two HostRoles claim goes to the first by name (b before c).
    let lan = vec![
        in_ns("lan", "a", a),
        in_ns("lan", "b", b),
        in_ns("lan", "c", c),
    ];
    let plan = render::render(
        &lan[0],
        Environment::Cluster { namespace: "lan" },
        &Cluster::of(lan.clone()),
    )
    .expect("renders");
    assert_eq!(
        routes(&plan),
        ["b.example=b.lan.svc:2626", "c.example=c.lan.svc:2727"]
    );
    let outbound = plan.config.mail.as_ref().and_then(|m| m.outbound.as_ref());
    let outbound = outbound.expect("outbound");
    assert_eq!(
        (
            outbound.retry_seconds,
            outbound.max_retry_seconds,
            outbound.lifetime_seconds,
            outbound.relay.is_none()
        ),
        (300, 3600, 5 * 24 * 3600, true)
    );
    // Standalone, the manifest's other hosts on loopback.
    let manifest: Vec<HostRole> = lan
        .iter()
        .cloned()
        .map(|mut h| {
            h.metadata.namespace = None;
            h
        })
        .collect();
    let plan =
        render::render(&manifest[0], Environment::Local(&local()), &manifest).expect("renders");
    assert_eq!(
        routes(&plan),
        ["b.example=127.0.0.1:2626", "c.example=127.0.0.1:2727"]
    );
    // Never another namespace's domains, not even one that admits this namespace as a client:
    // a domain is only a claim, and it would draw this host's mail (for any domain it names)
    // out of the namespace.
    let office = in_ns(
        "office",
        "office",
        "spec:\n  servers:\n    mail: {domains: [office.example]}\n",
    );
    let allowing = in_ns(
        "office",
        "office",
        "spec:\n  servers:\n    mail: {domains: [office.example]}\n  allowClientsFrom: {namespaces: [lan]}\n",
    );
    for office in [office, allowing] {
        let all = vec![in_ns("lan", "a", a), office];
        let plan = render::render(
            &all[0],
            Environment::Cluster { namespace: "lan" },
            &Cluster::of(all.clone()),
        )
        .expect("renders");
        assert!(routes(&plan).is_empty(), "{:?}", routes(&plan));
    }
}

#[test]
fn a_relay_mounts_its_labelled_secrets_and_its_timings_are_checked() {
    let spec = "spec:\n  servers:\n    mail:\n      domains: [lan]\n      outbound:\n        retryInterval: 1m\n        queueLifetime: 48h\n        relay: {host: smtp.provider.example, credentials: {secret: relay-login}, caSecret: relay-ca}\n";
    let hr = in_ns("lan", "h", spec);
    let mut cluster = Cluster::of(vec![hr.clone()]);
    let render_in = |cluster: &Cluster| {
        render::render(&hr, Environment::Cluster { namespace: "lan" }, cluster).expect("renders")
    };
    // Not labelled for use: no relay (and so no login sent anywhere), a problem naming the fix.
    let plan = render_in(&cluster);
    let outbound = plan.config.mail.as_ref().and_then(|m| m.outbound.clone());
    assert!(outbound.expect("outbound").relay.is_none());
    let fields: Vec<_> = plan.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.servers.mail.outbound.relay.credentials.secret",
            "spec.servers.mail.outbound.relay.caSecret"
        ]
    );
    assert!(
        plan.problems
            .iter()
            .all(|p| p.reason == ProblemReason::ReferenceNotAllowed)
    );
    for name in ["relay-login", "relay-ca"] {
        cluster
            .labelled
            .insert((ObjectKind::Secret, "lan".into(), name.into()));
    }
    let plan = render_in(&cluster);
    assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    let outbound = plan.config.mail.as_ref().and_then(|m| m.outbound.clone());
    let outbound = outbound.expect("outbound");
    let relay = outbound.relay.expect("relay");
    assert_eq!(
        (relay.host.as_str(), relay.port, relay.tls),
        (
            "smtp.provider.example",
            587,
            hostrole_config::RelayTls::StartTls
        )
    );
    assert_eq!(
        (
            outbound.retry_seconds,
            outbound.max_retry_seconds,
            outbound.lifetime_seconds
        ),
        (60, 3600, 48 * 3600)
    );
    let mounted: BTreeSet<_> = plan.mounts().map(|m| m.volume.clone()).collect();
    assert!(
        mounted.contains("mail-relay-credentials") && mounted.contains("mail-relay-ca"),
        "{mounted:?}"
    );
    let dir = relay.credentials_dir.expect("credentials");
    assert!(dir.starts_with("/etc/hostrole"), "{dir:?}");
    assert_eq!(
        relay.ca_file.expect("ca"),
        Location::RelayCa.cluster_path().join("ca.crt")
    );
    // A wait between tries shorter than the first is refused with the fix.
    let bad = in_ns(
        "lan",
        "h",
        "spec:\n  servers:\n    mail: {domains: [lan], outbound: {retryInterval: 2h, maxRetryInterval: 1h}}\n",
    );
    let err = render::render(
        &bad,
        Environment::Cluster { namespace: "lan" },
        &Cluster::of(vec![]),
    )
    .expect_err("inconsistent");
    let text = err.to_string();
    assert!(
        text.contains("spec.servers.mail.outbound.maxRetryInterval")
            && text.contains("raise maxRetryInterval"),
        "{text}"
    );
}

#[test]
fn a_cross_host_mail_probe_reads_back_on_the_other_host_with_its_own_login() {
    let text =
        std::fs::read_to_string(root().join("examples/two-mail-hosts.yaml")).expect("example");
    let hostroles = in_namespace(
        &manifest::parse_all(&text, "example").expect("valid"),
        "lan",
    );
    let mut cluster = Cluster::of(hostroles.clone());
    cluster
        .labelled
        .insert((ObjectKind::Secret, "lan".into(), "two-mail-users".into()));
    let south = hostroles
        .iter()
        .find(|h| h.metadata.name.as_deref() == Some("south"))
        .expect("south");
    let render_south = |cluster: &Cluster| {
        render::render(south, Environment::Cluster { namespace: "lan" }, cluster).expect("renders")
    };
    // Without the owners' consent to use the two logins, the probe does not run.
    let plan = render_south(&cluster);
    assert!(plan.config.clients.is_empty());
    let fields: Vec<_> = plan.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.clients[0].credentials.secret",
            "spec.clients[0].to.credentials.secret"
        ]
    );
    for name in ["south-bob", "north-alice"] {
        cluster
            .labelled
            .insert((ObjectKind::Secret, "lan".into(), name.into()));
    }
    let plan = render_south(&cluster);
    assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    let client = &plan.config.clients[0];
    let ClientTarget::Mail(sender) = &client.target else {
        panic!("a mail target: {client:?}")
    };
    assert_eq!(
        (sender.host.as_str(), sender.submission_port),
        ("south.lan.svc", Some(3587))
    );
    let to = client.mail_to.as_ref().expect("read back on north");
    assert_eq!(
        (
            to.server.as_str(),
            to.target.host.as_str(),
            to.target.imap_port,
            to.target.domain.as_deref()
        ),
        ("north", "north.lan.svc", Some(1143), Some("north.lan"))
    );
    assert_eq!(
        to.credentials_dir,
        Path::new("/etc/hostrole/clients/mail-0-to")
    );
    // A receiving host that does not exist is a problem naming to.server.
    let alone = Cluster {
        hostroles: vec![south.clone()],
        labelled: cluster.labelled.clone(),
        ..Default::default()
    };
    let plan =
        render::render(south, Environment::Cluster { namespace: "lan" }, &alone).expect("renders");
    assert!(plan.config.clients.is_empty());
    assert_eq!(plan.problems.len(), 1, "{:?}", plan.problems);
    assert_eq!(plan.problems[0].field, "spec.clients[0].to.server");
    assert_eq!(plan.problems[0].reason, ProblemReason::ServerNotFound);
    assert!(
        plan.problems[0]
            .message
            .contains("spec.clients[0].to.server")
    );
}

// Issue 19: TLS for the index and the peers. A peer with tls mounts its certificate and its
// Secret's ca.crt (the network's CA, optional in the volume: the agent names what is missing),
// reaches an HTTPS index by the same CA, and is told when the network's members disagree.
#[test]
fn peers_and_index_with_tls_mount_their_certificates_and_trust_the_network_ca() {
    let tracker = in_ns(
        "lan",
        "tracker",
        "spec:\n  servers:\n    index: {tls: {secret: tracker-cert}}\n",
    );
    let a = in_ns(
        "lan",
        "a",
        "spec:\n  peer: {network: family, index: tracker, tls: {secret: peer-cert}}\n",
    );
    let plain = in_ns(
        "lan",
        "b",
        "spec:\n  peer: {network: family, index: tracker}\n",
    );
    let world = Cluster {
        hostroles: vec![tracker.clone(), a.clone(), plain.clone()],
        labelled: [
            (ObjectKind::Secret, "tracker-cert"),
            (ObjectKind::Secret, "peer-cert"),
        ]
        .into_iter()
        .map(|(k, n)| (k, "lan".to_string(), n.to_string()))
        .collect(),
        ..Default::default()
    };
    let cluster = Environment::Cluster { namespace: "lan" };

    let index = render::render(&tracker, cluster, &world).expect("renders");
    let config = index.config.index.expect("index");
    assert!(config.tls.is_some(), "the index serves HTTPS");

    let peer = render::render(&a, cluster, &world).expect("renders");
    let config = peer.config.peer.clone().expect("peer");
    assert_eq!(
        config.index_url.as_deref(),
        Some("https://tracker.lan.svc:7000")
    );
    assert!(config.tls.is_some());
    let ca = config.network_ca.clone().expect("the network's CA");
    assert_eq!(
        config.index_ca.as_ref(),
        Some(&ca),
        "the index is trusted by it"
    );
    let ca_mount = peer
        .mounts()
        .find(|m| ca.starts_with(&m.path))
        .expect("the CA is mounted");
    assert_eq!(
        ca_mount.source,
        Source::OptionalKey {
            name: "peer-cert".into(),
            key: "ca.crt"
        }
    );
    // B speaks plain HTTP in a network where A speaks HTTPS, to an HTTPS index.
    let problems: Vec<_> = peer.problems.iter().map(|p| p.reason).collect();
    assert_eq!(
        problems,
        [ProblemReason::PeerTlsMismatch],
        "{:?}",
        peer.problems
    );
    assert!(
        peer.problems[0].message.contains("b of network family"),
        "{}",
        peer.problems[0].message
    );
    let other = render::render(&plain, cluster, &world).expect("renders");
    assert_eq!(
        other.problems.iter().map(|p| p.reason).collect::<Vec<_>>(),
        [
            ProblemReason::PeerTlsMismatch,
            ProblemReason::PeerTlsMismatch
        ],
        "{:?}",
        other.problems
    );
    assert!(
        other
            .problems
            .iter()
            .any(|p| p.message.contains("the index lan/tracker serves HTTPS")
                || p.message.contains("the index tracker serves HTTPS")),
        "{:?}",
        other.problems
    );

    // Standalone the certificate comes from the manifest's Secret; issuerRef needs a cluster.
    let issued = in_ns(
        "",
        "c",
        "spec:\n  peer: {network: family, seeds: [\"127.0.0.1:7001\"], tls: {issuerRef: {name: ca}}}\n",
    );
    let err = render::render(&issued, Environment::Local(&local()), &vec![issued.clone()])
        .expect_err("issuerRef standalone");
    assert!(err.to_string().contains("spec.peer.tls.issuerRef"), "{err}");
}
