//! Who may use what, decided once for the translator and the operator (docs/security.md, items
//! 3 and 4):
//! - a HostRole in one namespace may be the server of a client in another only when it
//!   consents, in `spec.allowClientsFrom` ([`allows_client`]): the translator resolves the
//!   client's reference with it, and the operator admits the client into the server's
//!   NetworkPolicy with it;
//! - a HostRole may use a Secret or ConfigMap of its namespace (users, TLS, client credentials,
//!   a site) only when the object's owner labelled it [`USE_LABEL`]`: "true"` ([`object_uses`]
//!   lists the references, [`labelled_for_use`] reads the label).
//!
//! Pure: what the labels are is the caller's to find out (the operator's caches, the manifest).

use std::collections::BTreeMap;

use kube::core::{Expression, Selector, SelectorExt};

use crate::hostrole::{HostRole, NamespaceSelector, SelectorOperator};

/// The label a Secret's or ConfigMap's owner sets to let HostRoles of its namespace use it.
pub const USE_LABEL: &str = "hostrole.dev/use";
/// Its value.
pub const USE_LABEL_VALUE: &str = "true";

/// Whether HostRole `server` (in `server_ns`) lets HostRoles of `client_ns` be its clients.
/// The same namespace always may; another only when `spec.allowClientsFrom` names it, or its
/// labels (`client_ns_labels`, `None` when unknown) match the namespace selector there. Unknown
/// labels match no selector: consent is never assumed.
pub fn allows_client(
    server_ns: &str,
    server: &HostRole,
    client_ns: &str,
    client_ns_labels: Option<&BTreeMap<String, String>>,
) -> bool {
    if server_ns == client_ns {
        return true;
    }
    let Some(allow) = &server.spec.allow_clients_from else {
        return false;
    };
    if allow.namespaces.iter().any(|n| n == client_ns) {
        return true;
    }
    match (&allow.namespace_selector, client_ns_labels) {
        (Some(selector), Some(labels)) => selector_of(selector).matches(labels),
        _ => false,
    }
}

/// The selector as Kubernetes evaluates label selectors (kube's implementation).
fn selector_of(selector: &NamespaceSelector) -> Selector {
    let equal = selector
        .match_labels
        .iter()
        .map(|(k, v)| Expression::Equal(k.clone(), v.clone()));
    let requirements = selector.match_expressions.iter().map(|r| {
        let values = r.values.iter().cloned().collect();
        match r.operator {
            SelectorOperator::In => Expression::In(r.key.clone(), values),
            SelectorOperator::NotIn => Expression::NotIn(r.key.clone(), values),
            SelectorOperator::Exists => Expression::Exists(r.key.clone()),
            SelectorOperator::DoesNotExist => Expression::DoesNotExist(r.key.clone()),
        }
    });
    equal.chain(requirements).collect()
}

/// A kind of object a HostRole may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Secret,
    ConfigMap,
}

impl ObjectKind {
    /// `Secret` or `ConfigMap`.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Secret => "Secret",
            ObjectKind::ConfigMap => "ConfigMap",
        }
    }

    /// The name `kubectl` knows it by.
    pub fn kubectl(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secret",
            ObjectKind::ConfigMap => "configmap",
        }
    }
}

/// A Secret or ConfigMap a HostRole names, and the field that names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectUse {
    /// e.g. `spec.clients[1].credentials.secret`.
    pub field: String,
    pub kind: ObjectKind,
    pub name: String,
}

/// Every Secret and ConfigMap of its namespace a HostRole names (item 4's rule covers each):
/// `servers.web.site.configMap`, `servers.{file,mail,chat}.users.secret`,
/// `servers.radio.sourcePassword.secret`, `servers.radio.mounts[].playlist.configMap`,
/// `servers.*.tls` and
/// `peer.tls` (its Secret, or the one cert-manager fills for `issuerRef`),
/// `servers.mail.outbound.relay.{credentials.secret,caSecret}`,
/// `clients[].credentials.secret`, `clients[].to.credentials.secret`. (A peer network's Secret has its own label, not this one.)
pub fn object_uses(hr: &HostRole) -> Vec<ObjectUse> {
    let mut uses = Vec::new();
    let mut add = |field: String, kind, name: &str| {
        uses.push(ObjectUse {
            field,
            kind,
            name: name.to_string(),
        })
    };
    let servers = &hr.spec.servers;
    if let Some(name) = servers
        .web
        .as_ref()
        .and_then(|w| w.site.as_ref())
        .and_then(|s| s.config_map.as_deref())
    {
        add(
            "spec.servers.web.site.configMap".into(),
            ObjectKind::ConfigMap,
            name,
        );
    }
    let users = [
        ("file", servers.file.as_ref().and_then(|f| f.users.as_ref())),
        ("mail", servers.mail.as_ref().and_then(|m| m.users.as_ref())),
        ("chat", servers.chat.as_ref().and_then(|c| c.users.as_ref())),
        (
            "print",
            servers.print.as_ref().and_then(|p| p.users.as_ref()),
        ),
    ];
    for (role, users) in users {
        if let Some(name) = users.and_then(|u| u.secret.as_deref()) {
            add(
                format!("spec.servers.{role}.users.secret"),
                ObjectKind::Secret,
                name,
            );
        }
    }
    if let Some(radio) = &servers.radio {
        if let Some(name) = radio
            .source_password
            .as_ref()
            .and_then(|p| p.secret.as_deref())
        {
            add(
                "spec.servers.radio.sourcePassword.secret".into(),
                ObjectKind::Secret,
                name,
            );
        }
        for (i, mount) in radio.mounts.iter().enumerate() {
            if let Some(name) = mount
                .playlist
                .as_ref()
                .and_then(|p| p.config_map.as_deref())
            {
                add(
                    format!("spec.servers.radio.mounts[{i}].playlist.configMap"),
                    ObjectKind::ConfigMap,
                    name,
                );
            }
        }
    }
    let hostrole = hr.metadata.name.as_deref().unwrap_or_default();
    let tls = [
        ("web", servers.web.as_ref().and_then(|w| w.tls.as_ref())),
        ("file", servers.file.as_ref().and_then(|f| f.tls.as_ref())),
        ("mail", servers.mail.as_ref().and_then(|m| m.tls.as_ref())),
        ("index", servers.index.as_ref().and_then(|i| i.tls.as_ref())),
        ("chat", servers.chat.as_ref().and_then(|c| c.tls.as_ref())),
        ("radio", servers.radio.as_ref().and_then(|r| r.tls.as_ref())),
        ("print", servers.print.as_ref().and_then(|p| p.tls.as_ref())),
        ("peer", hr.spec.peer.as_ref().and_then(|p| p.tls.as_ref())),
    ];
    for (role, tls) in tls {
        if let Some(tls) = tls {
            // A Secret cert-manager fills is labelled by its Certificate's secretTemplate.
            let field = if tls.secret.is_some() {
                "secret"
            } else {
                "issuerRef"
            };
            let spec = if role == "peer" {
                "spec.peer".to_string()
            } else {
                format!("spec.servers.{role}")
            };
            add(
                format!("{spec}.tls.{field}"),
                ObjectKind::Secret,
                &tls.secret_name(hostrole, role),
            );
        }
    }
    if let Some(relay) = servers
        .mail
        .as_ref()
        .and_then(|m| m.outbound.as_ref())
        .and_then(|o| o.relay.as_ref())
    {
        if let Some(credentials) = &relay.credentials {
            add(
                "spec.servers.mail.outbound.relay.credentials.secret".into(),
                ObjectKind::Secret,
                &credentials.secret,
            );
        }
        if let Some(ca) = &relay.ca_secret {
            add(
                "spec.servers.mail.outbound.relay.caSecret".into(),
                ObjectKind::Secret,
                ca,
            );
        }
    }
    for (i, client) in hr.spec.clients.iter().enumerate() {
        if let Some(credentials) = &client.credentials {
            add(
                format!("spec.clients[{i}].credentials.secret"),
                ObjectKind::Secret,
                &credentials.secret,
            );
        }
        if let Some(to) = &client.to {
            add(
                format!("spec.clients[{i}].to.credentials.secret"),
                ObjectKind::Secret,
                &to.credentials.secret,
            );
        }
    }
    uses
}

/// Whether an object with these labels is labelled for use by HostRoles.
pub fn labelled_for_use(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels
        .and_then(|l| l.get(USE_LABEL))
        .is_some_and(|v| v == USE_LABEL_VALUE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostrole::{AllowClientsFrom, NamespaceRequirement};

    fn server(allow: Option<AllowClientsFrom>) -> HostRole {
        let mut hr = HostRole::new("office", Default::default());
        hr.spec.allow_clients_from = allow;
        hr
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_same_namespace_always_may_another_only_by_consent() {
        let none = server(None);
        assert!(allows_client("lan", &none, "lan", None));
        assert!(!allows_client("lan", &none, "guests", Some(&labels(&[]))));
        let named = server(Some(AllowClientsFrom {
            namespaces: vec!["guests".into()],
            namespace_selector: None,
        }));
        assert!(allows_client("lan", &named, "guests", None));
        assert!(!allows_client("lan", &named, "guests-2", None));
    }

    #[test]
    fn a_namespace_selector_matches_labels_as_kubernetes_does_and_never_unknown_ones() {
        let selector = |match_labels: &[(&str, &str)], expressions: Vec<NamespaceRequirement>| {
            server(Some(AllowClientsFrom {
                namespaces: Vec::new(),
                namespace_selector: Some(NamespaceSelector {
                    match_labels: labels(match_labels),
                    match_expressions: expressions,
                }),
            }))
        };
        let team = selector(&[("team", "web")], Vec::new());
        assert!(allows_client(
            "lan",
            &team,
            "a",
            Some(&labels(&[("team", "web")]))
        ));
        assert!(!allows_client(
            "lan",
            &team,
            "a",
            Some(&labels(&[("team", "db")]))
        ));
        assert!(!allows_client("lan", &team, "a", None), "unknown labels");
        let everyone = selector(&[], Vec::new());
        assert!(allows_client("lan", &everyone, "a", Some(&labels(&[]))));
        assert!(
            !allows_client("lan", &everyone, "a", None),
            "even {{}} needs the namespace to be known"
        );
        // NotIn admits a namespace without the label, as in Kubernetes: so an unknown
        // namespace must not be read as one without labels.
        let not_evil = selector(
            &[],
            vec![NamespaceRequirement {
                key: "tier".into(),
                operator: SelectorOperator::NotIn,
                values: vec!["untrusted".into()],
            }],
        );
        assert!(allows_client("lan", &not_evil, "a", Some(&labels(&[]))));
        assert!(!allows_client(
            "lan",
            &not_evil,
            "a",
            Some(&labels(&[("tier", "untrusted")]))
        ));
        assert!(!allows_client("lan", &not_evil, "a", None));
        let exists = selector(
            &[("team", "web")],
            vec![NamespaceRequirement {
                key: "prod".into(),
                operator: SelectorOperator::Exists,
                values: Vec::new(),
            }],
        );
        assert!(!allows_client(
            "lan",
            &exists,
            "a",
            Some(&labels(&[("team", "web")]))
        ));
        assert!(allows_client(
            "lan",
            &exists,
            "a",
            Some(&labels(&[("team", "web"), ("prod", "")]))
        ));
    }

    #[test]
    fn only_the_exact_label_value_allows_use() {
        assert!(labelled_for_use(Some(&labels(&[(USE_LABEL, "true")]))));
        assert!(!labelled_for_use(Some(&labels(&[(USE_LABEL, "True")]))));
        assert!(!labelled_for_use(Some(&labels(&[(
            "hostrole.dev/network",
            "x"
        )]))));
        assert!(!labelled_for_use(None));
    }
}
