//! Reaching a host from outside the cluster, purely: the cert-manager `Certificate`s of roles
//! with `tls.issuerRef`, the external Service of `spec.expose`, Gateway API routes, and the
//! URLs of `status.endpoints`. No I/O: the thin layer (`reconcile`) applies these only when
//! the APIs they belong to are served, and says so in status when they are not.

use std::collections::BTreeMap;

use hostrole_api::access::{USE_LABEL, USE_LABEL_VALUE};
use hostrole_api::{
    HostRole, IssuerRef, ServiceType, Tls, TrafficPolicy, certificate_name, issued_secret_name,
};
use k8s_openapi::api::core::v1::{Pod, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::desired::{FIELD_MANAGER, Names, labels, owner_reference, selector_labels};

/// The cluster's DNS domain, as in the names cert-manager puts in certificates.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// Annotation cert-manager sets on the Secrets it fills: the Certificate's name.
pub const CERTIFICATE_NAME_ANNOTATION: &str = "cert-manager.io/certificate-name";

/// A third-party object the operator writes without its crate: `apiVersion`, `kind`,
/// metadata and a spec kept as JSON (only the fields the operator sets).
macro_rules! foreign_resource {
    ($name:ident, $group:literal, $version:literal, $kind:literal, $plural:literal) => {
        #[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            #[serde(default)]
            pub api_version: String,
            #[serde(default)]
            pub kind: String,
            #[serde(default)]
            pub metadata: ObjectMeta,
            #[serde(default)]
            pub spec: Value,
        }

        impl $name {
            pub fn new(metadata: ObjectMeta, spec: Value) -> Self {
                Self {
                    api_version: <Self as k8s_openapi::Resource>::API_VERSION.into(),
                    kind: <Self as k8s_openapi::Resource>::KIND.into(),
                    metadata,
                    spec,
                }
            }
        }

        impl k8s_openapi::Resource for $name {
            const API_VERSION: &'static str = concat!($group, "/", $version);
            const GROUP: &'static str = $group;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = $version;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = k8s_openapi::NamespaceResourceScope;
        }

        impl k8s_openapi::Metadata for $name {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

foreign_resource!(
    Certificate,
    "cert-manager.io",
    "v1",
    "Certificate",
    "certificates"
);
foreign_resource!(
    HttpRoute,
    "gateway.networking.k8s.io",
    "v1",
    "HTTPRoute",
    "httproutes"
);
foreign_resource!(
    TcpRoute,
    "gateway.networking.k8s.io",
    "v1",
    "TCPRoute",
    "tcproutes"
);

/// The roles that may carry `tls.issuerRef`, in order.
pub const TLS_ROLES: [&str; 8] = [
    "web", "file", "mail", "index", "chat", "radio", "print", "peer",
];
/// Roles with an HTTPRoute; mail's and chat's ports have a TCPRoute each ([`TCP_ROUTE_PORTS`]).
pub const HTTP_ROUTE_ROLES: [&str; 3] = ["web", "file", "radio"];
/// The chat ports; `ircs` only exists when the role has a certificate.
pub const CHAT_PORTS: [&str; 2] = ["irc", "ircs"];
/// The ports with a TCPRoute each when their role is exposed through a Gateway: (role, port).
pub fn tcp_route_ports() -> impl Iterator<Item = (&'static str, &'static str)> {
    MAIL_PORTS
        .iter()
        .map(|p| ("mail", *p))
        .chain(CHAT_PORTS.iter().map(|p| ("chat", *p)))
}
/// The mail ports; the last three (implicit TLS) only exist when the role has a certificate.
pub const MAIL_PORTS: [&str; 7] = [
    "smtp",
    "submission",
    "imap",
    "pop3",
    "imaps",
    "pop3s",
    "submissions",
];

/// What a HostRole wants of the reach objects; every possible name is listed, with `None`
/// where it wants none (so that one it made before is deleted).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Reach {
    /// (role, Certificate) for web, file, mail.
    pub certificates: Vec<(&'static str, Option<Certificate>)>,
    /// `<name>-external`: a NodePort or LoadBalancer Service.
    pub external_service: Option<Service>,
    /// (object name, route): HTTPRoutes of web and file, TCPRoutes of the mail ports.
    pub http_routes: Vec<(String, Option<HttpRoute>)>,
    pub tcp_routes: Vec<(String, Option<TcpRoute>)>,
}

impl Reach {
    /// Whether the HostRole asks for any cert-manager object.
    pub fn wants_certificates(&self) -> bool {
        self.certificates.iter().any(|(_, c)| c.is_some())
    }

    /// Whether the HostRole asks for any Gateway API object.
    pub fn wants_routes(&self) -> bool {
        self.http_routes.iter().any(|(_, r)| r.is_some())
            || self.tcp_routes.iter().any(|(_, r)| r.is_some())
    }
}

/// Name of the external Service.
pub fn external_service_name(hr: &str) -> String {
    format!("{hr}-external")
}

/// The `tls` of a role, if it has one.
pub fn role_tls<'a>(hr: &'a HostRole, role: &str) -> Option<&'a Tls> {
    let s = &hr.spec.servers;
    match role {
        "web" => s.web.as_ref()?.tls.as_ref(),
        "file" => s.file.as_ref()?.tls.as_ref(),
        "mail" => s.mail.as_ref()?.tls.as_ref(),
        "index" => s.index.as_ref()?.tls.as_ref(),
        "chat" => s.chat.as_ref()?.tls.as_ref(),
        "radio" => s.radio.as_ref()?.tls.as_ref(),
        "print" => s.print.as_ref()?.tls.as_ref(),
        "peer" => hr.spec.peer.as_ref()?.tls.as_ref(),
        _ => None,
    }
}

/// The roles reached from outside: those named in `expose.roles`, or every server role.
pub fn exposed_roles(hr: &HostRole) -> Vec<&'static str> {
    let Some(expose) = &hr.spec.expose else {
        return Vec::new();
    };
    let served = hr.spec.server_roles();
    if expose.roles.is_empty() {
        return served;
    }
    served
        .into_iter()
        .filter(|r| expose.roles.iter().any(|e| e.as_str() == *r))
        .collect()
}

/// Every name the host answers to: its Service's DNS names, every host's (a wildcard over the
/// headless Service, so scaling needs no new certificate) and its names outside the cluster.
pub fn dns_names(hr: &HostRole, name: &str, namespace: &str) -> Vec<String> {
    let svc = Names::service(name);
    let hosts = Names::headless_service(name);
    let mut names = vec![
        svc.clone(),
        format!("{svc}.{namespace}"),
        format!("{svc}.{namespace}.svc"),
        format!("{svc}.{namespace}.svc.{CLUSTER_DOMAIN}"),
        format!("*.{hosts}.{namespace}.svc"),
        format!("*.{hosts}.{namespace}.svc.{CLUSTER_DOMAIN}"),
    ];
    if let Some(expose) = &hr.spec.expose {
        for h in &expose.hostnames {
            if !names.contains(h) {
                names.push(h.clone());
            }
        }
    }
    names
}

/// Computes the reach objects of `hr`.
pub fn reach(hr: &HostRole, name: &str, namespace: &str, ports: &[(&'static str, i32)]) -> Reach {
    let certificates = TLS_ROLES
        .iter()
        .map(|role| {
            let cert = role_tls(hr, role)
                .and_then(|t| t.issuer_ref.as_ref())
                .map(|issuer| certificate(hr, name, namespace, role, issuer));
            (*role, cert)
        })
        .collect();
    let exposed = exposed_roles(hr);
    let gateway = hr.spec.expose.as_ref().and_then(|e| e.gateway.as_ref());
    let http_routes = HTTP_ROUTE_ROLES
        .iter()
        .map(|role| {
            let object = format!("{name}-{role}");
            let route = gateway.filter(|_| exposed.contains(role)).and_then(|g| {
                let port = role_port(ports, role)?;
                Some(http_route(hr, &object, name, namespace, g, port))
            });
            (object, route)
        })
        .collect();
    let tcp_routes = tcp_route_ports()
        .map(|(role, port_name)| {
            let object = format!("{name}-{port_name}");
            let route = gateway.filter(|_| exposed.contains(&role)).and_then(|g| {
                let port = ports.iter().find(|(n, _)| *n == port_name)?.1;
                Some(tcp_route(hr, &object, name, namespace, g, port_name, port))
            });
            (object, route)
        })
        .collect();
    Reach {
        certificates,
        external_service: external_service(hr, name, namespace, ports, &exposed),
        http_routes,
        tcp_routes,
    }
}

/// The Service port of a role that has one port (web, file, index, radio).
fn role_port(ports: &[(&'static str, i32)], role: &str) -> Option<i32> {
    let port_name = match role {
        "web" => "web",
        "file" => "webdav",
        "index" => "index",
        "radio" => "radio",
        _ => return None,
    };
    ports.iter().find(|(n, _)| *n == port_name).map(|(_, p)| *p)
}

/// The Service ports of a role.
fn role_ports(role: &str) -> &'static [&'static str] {
    match role {
        "web" => &["web", "web-redirect"],
        "file" => &["webdav"],
        "mail" => &MAIL_PORTS,
        "index" => &["index"],
        "chat" => &CHAT_PORTS,
        "radio" => &["radio"],
        "print" => &["ipp"],
        _ => &[],
    }
}

fn meta(hr: &HostRole, name: String, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: Some(labels(hr.metadata.name.as_deref().unwrap_or_default())),
        owner_references: owner_reference(hr).map(|o| vec![o]),
        ..Default::default()
    }
}

/// The Certificate of `role`: every name of the host, into `<name>-<role>-tls`, which
/// cert-manager labels for use (`secretTemplate`) so the operator may mount it.
fn certificate(
    hr: &HostRole,
    name: &str,
    namespace: &str,
    role: &str,
    issuer: &IssuerRef,
) -> Certificate {
    let mut secret_labels = selector_labels(name);
    secret_labels.insert(USE_LABEL.into(), USE_LABEL_VALUE.into());
    secret_labels.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
    Certificate::new(
        meta(hr, certificate_name(name, role), namespace),
        json!({
            "secretName": issued_secret_name(name, role),
            "secretTemplate": {"labels": secret_labels},
            "issuerRef": {
                "name": issuer.name,
                "kind": issuer.kind.as_str(),
                "group": issuer.group,
            },
            "dnsNames": dns_names(hr, name, namespace),
            "usages": ["server auth", "digital signature", "key encipherment"],
            "privateKey": {"algorithm": "ECDSA", "size": 256, "encoding": "PKCS8", "rotationPolicy": "Always"},
        }),
    )
}

/// The NodePort or LoadBalancer Service of the exposed roles (none for ClusterIP: routes go
/// through the `<name>` Service).
fn external_service(
    hr: &HostRole,
    name: &str,
    namespace: &str,
    ports: &[(&'static str, i32)],
    exposed: &[&'static str],
) -> Option<Service> {
    let expose = hr.spec.expose.as_ref()?;
    if expose.type_ == ServiceType::ClusterIP {
        return None;
    }
    let service_ports: Vec<ServicePort> = exposed
        .iter()
        .flat_map(|role| role_ports(role).iter())
        .filter_map(|port_name| ports.iter().find(|(n, _)| n == port_name))
        .map(|(port_name, port)| ServicePort {
            name: Some((*port_name).to_string()),
            port: *port,
            target_port: Some(IntOrString::String((*port_name).to_string())),
            protocol: Some("TCP".into()),
            node_port: expose.node_ports.get(*port_name).copied(),
            ..Default::default()
        })
        .collect();
    if service_ports.is_empty() {
        return None;
    }
    let mut metadata = meta(hr, external_service_name(name), namespace);
    if !expose.annotations.is_empty() {
        metadata.annotations = Some(expose.annotations.clone());
    }
    Some(Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(expose.type_.as_str().into()),
            selector: Some(selector_labels(name)),
            ports: Some(service_ports),
            load_balancer_class: expose
                .load_balancer_class
                .clone()
                .filter(|_| expose.type_ == ServiceType::LoadBalancer),
            external_traffic_policy: expose.external_traffic_policy.map(|p| {
                match p {
                    TrafficPolicy::Cluster => "Cluster",
                    TrafficPolicy::Local => "Local",
                }
                .to_string()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn parent_refs(gateway: &hostrole_api::GatewayRoutes, section: Option<&str>) -> Vec<Value> {
    gateway
        .parent_refs
        .iter()
        .map(|p| {
            let mut r =
                json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": p.name});
            if let Some(ns) = &p.namespace {
                r["namespace"] = json!(ns);
            }
            if let Some(s) = section.or(p.section_name.as_deref()) {
                r["sectionName"] = json!(s);
            }
            r
        })
        .collect()
}

fn http_route(
    hr: &HostRole,
    object: &str,
    name: &str,
    namespace: &str,
    gateway: &hostrole_api::GatewayRoutes,
    port: i32,
) -> HttpRoute {
    let mut spec = json!({
        "parentRefs": parent_refs(gateway, None),
        "rules": [{"backendRefs": [{"group": "", "kind": "Service", "name": Names::service(name), "port": port}]}],
    });
    let hostnames = &hr
        .spec
        .expose
        .as_ref()
        .map(|e| e.hostnames.clone())
        .unwrap_or_default();
    if !hostnames.is_empty() {
        spec["hostnames"] = json!(hostnames);
    }
    HttpRoute::new(meta(hr, object.to_string(), namespace), spec)
}

fn tcp_route(
    hr: &HostRole,
    object: &str,
    name: &str,
    namespace: &str,
    gateway: &hostrole_api::GatewayRoutes,
    port_name: &str,
    port: i32,
) -> TcpRoute {
    TcpRoute::new(
        meta(hr, object.to_string(), namespace),
        json!({
            "parentRefs": parent_refs(gateway, Some(port_name)),
            "rules": [{"backendRefs": [{"group": "", "kind": "Service", "name": Names::service(name), "port": port}]}],
        }),
    )
}

/// Where each role is reached, the main one first: from outside (a LoadBalancer's address, a
/// node running a host for a NodePort, `expose.hostnames` through a Gateway or a Service),
/// then from inside (the Service's DNS name).
pub fn endpoints(
    hr: &HostRole,
    name: &str,
    namespace: &str,
    ports: &[(&'static str, i32)],
    external: Option<&Service>,
    pods: &[Pod],
) -> Vec<hostrole_api::Endpoint> {
    let mut out = Vec::new();
    let exposed = exposed_roles(hr);
    let roles = hr.spec.server_roles();
    let expose = hr.spec.expose.as_ref();
    let hostnames = expose.map(|e| e.hostnames.clone()).unwrap_or_default();
    let via_gateway = expose.is_some_and(|e| e.gateway.is_some());
    // External addresses with the port each is reached on, by port name.
    let mut external_hosts: Vec<(String, BTreeMap<String, i32>)> = Vec::new();
    if let Some(svc) = external {
        let spec = svc.spec.as_ref();
        let svc_ports = spec.and_then(|s| s.ports.clone()).unwrap_or_default();
        let by = |node: bool| -> BTreeMap<String, i32> {
            svc_ports
                .iter()
                .filter_map(|p| {
                    let port = if node { p.node_port? } else { p.port };
                    Some((p.name.clone()?, port))
                })
                .collect()
        };
        let kind = spec.and_then(|s| s.type_.as_deref()).unwrap_or_default();
        let ingress: Vec<String> = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.hostname.or(i.ip))
            .collect();
        if kind == "LoadBalancer" && !ingress.is_empty() {
            for host in hostnames.iter().cloned().chain(ingress) {
                external_hosts.push((host, by(false)));
            }
        } else if kind == "NodePort" || kind == "LoadBalancer" {
            let mut nodes: Vec<String> = pods
                .iter()
                .filter_map(|p| p.status.as_ref()?.host_ip.clone())
                .collect();
            nodes.sort();
            nodes.dedup();
            for host in hostnames.iter().cloned().chain(nodes) {
                external_hosts.push((host, by(true)));
            }
        }
    }
    for role in &roles {
        let tls = role_tls(hr, role).is_some();
        if exposed.contains(role) {
            if via_gateway && matches!(*role, "web" | "file") {
                for h in &hostnames {
                    let scheme = if tls { "https" } else { "http" };
                    out.push(endpoint(role, format!("{scheme}://{h}/"), "External"));
                }
            }
            for (host, by_name) in &external_hosts {
                for url in urls(role, tls, host, |n| by_name.get(n).copied()) {
                    out.push(endpoint(role, url, "External"));
                }
            }
        }
    }
    let internal = format!("{}.{namespace}.svc", Names::service(name));
    for role in &roles {
        let tls = role_tls(hr, role).is_some();
        let port = |n: &str| ports.iter().find(|(p, _)| *p == n).map(|(_, p)| *p);
        for url in urls(role, tls, &internal, port) {
            out.push(endpoint(role, url, "Cluster"));
        }
    }
    out.dedup();
    out
}

fn endpoint(role: &str, url: String, scope: &str) -> hostrole_api::Endpoint {
    hostrole_api::Endpoint {
        role: role.to_string(),
        url,
        scope: scope.to_string(),
    }
}

/// The URLs of one role at `host`, with the port of each port name from `port`.
fn urls(role: &str, tls: bool, host: &str, port: impl Fn(&str) -> Option<i32>) -> Vec<String> {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let http = if tls { "https" } else { "http" };
    let at = |scheme: &str, p: i32, slash: &str| format!("{scheme}://{host}:{p}{slash}");
    match role {
        "web" => port("web").map(|p| at(http, p, "/")).into_iter().collect(),
        "file" => port("webdav")
            .map(|p| at(http, p, "/"))
            .into_iter()
            .collect(),
        "index" => port("index")
            .map(|p| at(http, p, "/"))
            .into_iter()
            .collect(),
        "radio" => port("radio")
            .map(|p| at(http, p, "/status-json.xsl"))
            .into_iter()
            .collect(),
        // The printer URI clients add (`lpadmin -v`, a system's "add printer" dialog).
        "print" => port("ipp")
            .map(|p| at(if tls { "ipps" } else { "ipp" }, p, "/ipp/print"))
            .into_iter()
            .collect(),
        "chat" => [("irc", "irc"), ("ircs", "ircs")]
            .iter()
            .filter_map(|(n, scheme)| port(n).map(|p| at(scheme, p, "")))
            .collect(),
        "mail" => [
            ("smtp", "smtp"),
            ("submission", "smtp"),
            ("imap", "imap"),
            ("pop3", "pop"),
            ("imaps", "imaps"),
            ("pop3s", "pops"),
            ("submissions", "smtps"),
        ]
        .iter()
        .filter_map(|(n, scheme)| port(n).map(|p| at(scheme, p, "")))
        .collect(),
        _ => Vec::new(),
    }
}

/// The ports the exposed roles serve (admitted from anywhere by the NetworkPolicy: outside
/// traffic and a Gateway's pods come from addresses no selector names).
pub fn exposed_ports(hr: &HostRole, ports: &[(&'static str, i32)]) -> Vec<i32> {
    exposed_roles(hr)
        .iter()
        .flat_map(|role| role_ports(role).iter())
        .filter_map(|n| ports.iter().find(|(p, _)| p == n).map(|(_, p)| *p))
        .collect()
}
