//! Reaching hosts from outside, purely: cert-manager Certificates for `tls.issuerRef`, the
//! external Service of `spec.expose`, Gateway API routes, the NetworkPolicy's open ports and
//! `status.endpoints`.

use hostrole_api::HostRole;
use hostrole_api::access::object_uses;
use hostrole_api::manifest;
use hostrole_api::render::ProblemReason;
use hostrole_operator::desired::{self, Desired, PodIds, Settings};
use hostrole_operator::reach;
use hostrole_operator::world::World;
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Pod, PodStatus, ServiceStatus,
};

fn settings(policies: bool) -> Settings {
    Settings {
        agent_image: "hostrole/agent:test".into(),
        image_pull_policy: None,
        agent_cluster_role: "hostrole-agent".into(),
        network_policies: policies,
        egress_policies: false,
        api_server_cidrs: Vec::new(),
        image_pull_secrets: Vec::new(),
        pod_ids: PodIds::default(),
    }
}

fn hostrole(spec: &str) -> HostRole {
    let mut hr = manifest::parse(
        &format!("apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: office}}\nspec:\n{spec}"),
        "test",
    )
    .expect("valid manifest");
    hr.metadata.namespace = Some("lan".into());
    hr.metadata.uid = Some("0c5a6a8e-1111-4222-8333-944455556666".into());
    hr
}

fn build(hr: &HostRole, world: &World, policies: bool) -> Desired {
    desired::desired(hr, &settings(policies), world).expect("buildable")
}

/// Every Secret and ConfigMap `hr` names labelled for use (the issued Secret exists).
fn issued(hr: &HostRole) -> World {
    World::default().with_usable(
        object_uses(hr)
            .into_iter()
            .map(|u| (u.kind, "lan".to_string(), u.name)),
    )
}

const OFFICE: &str = "  replicas: 2
  servers:
    web:
      port: 8443
      tls: {issuerRef: {name: lan-ca, kind: ClusterIssuer}}
    file:
      port: 8444
      tls: {issuerRef: {name: lan-ca}}
    mail:
      domains: [office.lan]
      tls: {secret: mail-cert}
  expose:
    type: LoadBalancer
    roles: [web, mail]
    loadBalancerClass: example.com/lb
    annotations: {metallb.universe.tf/address-pool: lan}
    externalTrafficPolicy: Local
    nodePorts: {web: 30443}
    hostnames: [www.office.lan]
    gateway:
      parentRefs: [{name: lan-gw, namespace: gateways, sectionName: https}]
";

#[test]
fn an_issuer_ref_makes_a_certificate_of_every_name_and_mounts_its_secret_once_issued() {
    let hr = hostrole(OFFICE);
    let d = build(&hr, &issued(&hr), false);
    let certs: Vec<_> = d
        .reach
        .certificates
        .iter()
        .filter_map(|(r, c)| c.as_ref().map(|c| (*r, c)))
        .collect();
    assert_eq!(
        certs.len(),
        2,
        "web and file (mail has a Secret of its own)"
    );
    let (role, web) = certs[0];
    assert_eq!(role, "web");
    assert_eq!(web.metadata.name.as_deref(), Some("office-web"));
    assert_eq!(web.api_version, "cert-manager.io/v1");
    assert_eq!(web.kind, "Certificate");
    let spec = &web.spec;
    assert_eq!(spec["secretName"], "office-web-tls");
    assert_eq!(spec["issuerRef"]["name"], "lan-ca");
    assert_eq!(spec["issuerRef"]["kind"], "ClusterIssuer");
    assert_eq!(spec["issuerRef"]["group"], "cert-manager.io");
    assert_eq!(
        certs[1].1.spec["issuerRef"]["kind"], "Issuer",
        "the default kind"
    );
    assert_eq!(spec["secretTemplate"]["labels"]["hostrole.dev/use"], "true");
    let names: Vec<&str> = spec["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for n in [
        "office",
        "office.lan",
        "office.lan.svc",
        "office.lan.svc.cluster.local",
        "*.office-hosts.lan.svc",
        "*.office-hosts.lan.svc.cluster.local",
        "www.office.lan",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let owner = &web.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, "0c5a6a8e-1111-4222-8333-944455556666");
    assert_eq!(owner.controller, Some(true));

    // The issued Secret is mounted where the agent reads its certificate.
    let pod = d.stateful_set.spec.unwrap().template.spec.unwrap();
    let vol = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "web-tls")
        .expect("web-tls volume");
    assert_eq!(
        vol.secret.unwrap().secret_name.as_deref(),
        Some("office-web-tls")
    );
    assert!(d.problems.is_empty(), "{:?}", d.problems);
}

#[test]
fn before_cert_manager_issues_the_role_waits_and_says_why() {
    let hr = hostrole(OFFICE);
    // Only the mail Secret is usable: nothing issued yet.
    let world = World::default().with_usable([(
        hostrole_api::access::ObjectKind::Secret,
        "lan".to_string(),
        "mail-cert".to_string(),
    )]);
    let d = build(&hr, &world, false);
    let pending: Vec<_> = d
        .problems
        .iter()
        .filter(|p| p.reason == ProblemReason::CertificatePending)
        .collect();
    assert_eq!(pending.len(), 2, "{:?}", d.problems);
    assert!(
        pending[0].message.contains("Certificate office-web"),
        "{}",
        pending[0].message
    );
    assert!(
        pending[0]
            .message
            .contains("kubectl describe certificate office-web")
    );
    let pod = d.stateful_set.spec.unwrap().template.spec.unwrap();
    assert!(
        pod.volumes.unwrap().iter().all(|v| v.name != "web-tls"),
        "nothing mounted before issue"
    );
    // The Certificate is still wanted: it is what gets the Secret issued.
    assert!(d.reach.wants_certificates());
}

#[test]
fn an_issuer_ref_is_for_clusters_only() {
    let hr = hostrole("  servers:\n    web: {tls: {issuerRef: {name: ca}}}\n");
    let local = hostrole_api::render::Local {
        data_dir: "/tmp/x".into(),
        manifest_dir: "/tmp".into(),
        bind: std::net::Ipv4Addr::LOCALHOST.into(),
        admin_port: 9901,
        port_offset: 0,
        seeds: vec![],
        offsets: Default::default(),
    };
    let err = hostrole_api::render::render(
        &hr,
        hostrole_api::render::Environment::Local(&local),
        &Vec::<HostRole>::new(),
    )
    .expect_err("refused standalone");
    let text = err.to_string();
    assert!(
        text.contains("spec.servers.web.tls.issuerRef") && text.contains("tls.secret"),
        "{text}"
    );
}

#[test]
fn expose_makes_an_external_service_of_the_chosen_roles_only() {
    let hr = hostrole(OFFICE);
    let d = build(&hr, &issued(&hr), false);
    let svc = d.reach.external_service.expect("external Service");
    assert_eq!(svc.metadata.name.as_deref(), Some("office-external"));
    assert_eq!(
        svc.metadata.annotations.as_ref().unwrap()["metallb.universe.tf/address-pool"],
        "lan"
    );
    let spec = svc.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(spec.load_balancer_class.as_deref(), Some("example.com/lb"));
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
    let ports: Vec<(String, i32, Option<i32>)> = spec
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.port, p.node_port))
        .collect();
    assert_eq!(
        ports,
        [
            ("web".to_string(), 8443, Some(30443)),
            ("smtp".to_string(), 2525, None),
            ("submission".to_string(), 2587, None),
            ("imap".to_string(), 1143, None),
            ("pop3".to_string(), 1110, None),
            // Mail has a certificate: its implicit-TLS ports (RFC 8314) are exposed too.
            ("imaps".to_string(), 1993, None),
            ("pop3s".to_string(), 1995, None),
            ("submissions".to_string(), 2465, None),
        ],
        "file stays internal"
    );
    // The in-cluster Service is unchanged.
    assert_eq!(
        d.service.unwrap().spec.unwrap().type_.as_deref(),
        Some("ClusterIP")
    );
    // Without expose, or with ClusterIP, there is no external Service.
    let plain = hostrole("  servers:\n    web: {}\n");
    assert!(
        build(&plain, &World::default(), false)
            .reach
            .external_service
            .is_none()
    );
    let internal = hostrole("  servers:\n    web: {}\n  expose: {hostnames: [www.lan]}\n");
    assert!(
        build(&internal, &World::default(), false)
            .reach
            .external_service
            .is_none()
    );
}

#[test]
fn a_gateway_gets_http_routes_for_web_and_file_and_tcp_routes_for_mail_ports() {
    let hr = hostrole(OFFICE);
    let d = build(&hr, &issued(&hr), false);
    let http: Vec<_> = d
        .reach
        .http_routes
        .iter()
        .filter_map(|(n, r)| r.as_ref().map(|r| (n.as_str(), r)))
        .collect();
    assert_eq!(http.len(), 1, "web only: file is not exposed");
    let (name, route) = http[0];
    assert_eq!(name, "office-web");
    assert_eq!(route.api_version, "gateway.networking.k8s.io/v1");
    assert_eq!(route.spec["hostnames"][0], "www.office.lan");
    assert_eq!(route.spec["parentRefs"][0]["name"], "lan-gw");
    assert_eq!(route.spec["parentRefs"][0]["namespace"], "gateways");
    assert_eq!(route.spec["parentRefs"][0]["sectionName"], "https");
    assert_eq!(route.spec["rules"][0]["backendRefs"][0]["name"], "office");
    assert_eq!(route.spec["rules"][0]["backendRefs"][0]["port"], 8443);
    // The file route's name is listed without a route: one made before would be deleted.
    assert!(
        d.reach
            .http_routes
            .iter()
            .any(|(n, r)| n == "office-file" && r.is_none())
    );
    let tcp: Vec<_> = d
        .reach
        .tcp_routes
        .iter()
        .filter_map(|(n, r)| {
            r.as_ref().map(|r| {
                (
                    n.clone(),
                    r.spec["parentRefs"][0]["sectionName"].clone(),
                    r.spec["rules"][0]["backendRefs"][0]["port"].clone(),
                )
            })
        })
        .collect();
    assert_eq!(
        tcp.len(),
        7,
        "four ports, and three of implicit TLS with the certificate"
    );
    assert_eq!(tcp[0].0, "office-smtp");
    assert_eq!(
        tcp[0].1, "smtp",
        "each mail port attaches to the listener named after it"
    );
    assert_eq!(tcp[2].2, 1143);
    assert_eq!(
        (tcp[4].0.as_str(), tcp[4].1.as_str(), tcp[4].2.as_i64()),
        ("office-imaps", Some("imaps"), Some(1993))
    );
    assert_eq!(tcp[6].0, "office-submissions");
}

#[test]
fn exposed_ports_admit_everyone_in_the_network_policy_and_the_others_do_not() {
    let hr = hostrole(OFFICE);
    let policy = build(&hr, &issued(&hr), true)
        .network_policy
        .expect("policy");
    let rules = policy.spec.unwrap().ingress.unwrap();
    let open: Vec<i32> = rules
        .iter()
        .filter(|r| r.from.is_none())
        .flat_map(|r| r.ports.clone().unwrap_or_default())
        .filter_map(|p| match p.port {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p)) => Some(p),
            _ => None,
        })
        .collect();
    assert!(
        open.contains(&8443) && open.contains(&2525) && open.contains(&1110),
        "{open:?}"
    );
    assert!(
        !open.contains(&8444),
        "the file role is not exposed: {open:?}"
    );
}

fn pod_on(node: &str) -> Pod {
    Pod {
        status: Some(PodStatus {
            host_ip: Some(node.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn endpoints_list_pasteable_urls_the_main_one_first() {
    let hr = hostrole(OFFICE);
    let d = build(&hr, &issued(&hr), false);
    let mut svc = d.reach.external_service.clone().unwrap();
    let ports = hr.spec.server_ports();
    // A LoadBalancer without an address yet: nodes of the hosts with the node ports.
    let mut spec = svc.spec.clone().unwrap();
    for p in spec.ports.iter_mut().flatten() {
        p.node_port.get_or_insert(31000 + p.port % 1000);
    }
    svc.spec = Some(spec);
    let e = reach::endpoints(
        &hr,
        "office",
        "lan",
        &ports,
        Some(&svc),
        &[pod_on("192.168.1.20"), pod_on("192.168.1.20")],
    );
    let urls: Vec<&str> = e.iter().map(|e| e.url.as_str()).collect();
    assert_eq!(urls[0], "https://www.office.lan/", "through the Gateway");
    assert!(urls.contains(&"https://192.168.1.20:30443/"), "{urls:?}");
    assert!(urls.contains(&"imap://192.168.1.20:31143"), "{urls:?}");
    assert!(
        urls.contains(&"https://office.lan.svc:8444/"),
        "file, inside only: {urls:?}"
    );
    assert!(
        !urls
            .iter()
            .any(|u| u.contains("8444") && !u.contains(".svc")),
        "file not outside: {urls:?}"
    );
    assert!(
        e.iter()
            .filter(|e| e.scope == "External")
            .all(|e| e.role != "file")
    );
    // Once the load balancer has an address, that is where it is reached.
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some("192.168.1.240".into()),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    let e = reach::endpoints(&hr, "office", "lan", &ports, Some(&svc), &[]);
    let urls: Vec<&str> = e.iter().map(|e| e.url.as_str()).collect();
    assert!(urls.contains(&"https://192.168.1.240:8443/"), "{urls:?}");
    assert!(urls.contains(&"smtp://192.168.1.240:2525"), "{urls:?}");
    for url in [
        "imaps://192.168.1.240:1993",
        "pops://192.168.1.240:1995",
        "smtps://192.168.1.240:2465",
    ] {
        assert!(urls.contains(&url), "the implicit-TLS ports: {urls:?}");
    }
    // A host without expose: its Service's name, http without TLS.
    let plain = hostrole("  servers:\n    web: {}\n");
    let e = reach::endpoints(
        &plain,
        "office",
        "lan",
        &plain.spec.server_ports(),
        None,
        &[],
    );
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].url, "http://office.lan.svc:8080/");
    assert_eq!(e[0].scope, "Cluster");
}

#[test]
fn an_exposed_chat_host_gets_a_tcp_route_per_irc_port_and_irc_urls() {
    let hr = hostrole(
        "  servers:
    chat:
      tls: {secret: chat-cert}
  expose:
    type: LoadBalancer
    roles: [chat]
    gateway:
      parentRefs: [{name: lan-gw}]
",
    );
    let d = build(&hr, &issued(&hr), true);
    let tcp: Vec<_> = d
        .reach
        .tcp_routes
        .iter()
        .filter_map(|(n, r)| {
            r.as_ref().map(|r| {
                (
                    n.clone(),
                    r.spec["parentRefs"][0]["sectionName"]
                        .as_str()
                        .map(str::to_string),
                    r.spec["rules"][0]["backendRefs"][0]["port"].as_i64(),
                )
            })
        })
        .collect();
    assert_eq!(
        tcp,
        [
            ("office-irc".into(), Some("irc".into()), Some(6667)),
            ("office-ircs".into(), Some("ircs".into()), Some(6697)),
        ],
        "each IRC port attaches to the Gateway listener named after it"
    );
    let external: Vec<i32> = d
        .reach
        .external_service
        .and_then(|s| s.spec)
        .and_then(|s| s.ports)
        .unwrap_or_default()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(external, [6667, 6697]);
}

#[test]
fn an_exposed_radio_host_gets_an_http_route_and_an_external_port() {
    let hr = hostrole(
        "  servers:
    radio:
      port: 8800
      mounts: [{path: /jingles, playlist: {configMap: jingles}}]
  expose:
    type: LoadBalancer
    roles: [radio]
    gateway:
      parentRefs: [{name: lan-gw}]
",
    );
    let d = build(&hr, &issued(&hr), true);
    let http: Vec<_> = d
        .reach
        .http_routes
        .iter()
        .filter_map(|(n, r)| r.as_ref().map(|r| (n.as_str(), r)))
        .collect();
    assert_eq!(http.len(), 1, "{http:?}");
    let (name, route) = http[0];
    assert_eq!(name, "office-radio");
    assert_eq!(route.spec["rules"][0]["backendRefs"][0]["port"], 8800);
    let external: Vec<i32> = d
        .reach
        .external_service
        .and_then(|s| s.spec)
        .and_then(|s| s.ports)
        .unwrap_or_default()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(external, [8800]);
}
