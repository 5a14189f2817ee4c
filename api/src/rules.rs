//! CEL rules (`x-kubernetes-validations`) of the HostRole schema.
//!
//! The API server evaluates them at `kubectl apply`; the standalone agent evaluates the same
//! rules client-side (`HostRole::validate_cel`), so a manifest is judged the same way with or
//! without a cluster. Each message says which field is wrong and how to fix it.
//!
//! Every rule has a `reason` (the API server's error type: `Invalid value`, `Required value`,
//! `Forbidden`), and a rule that sits on an object but judges one of its fields names that
//! field in `fieldPath` (relative to the object), so the error points at the field to change.
//! Rules that judge several fields at once (exactly one of…, unique ports) keep the object's
//! path. `FieldValueDuplicate` is never used: the API server prints only the value with it,
//! not the message.

use kube::core::{Message, Reason, Rule};

/// Port the agent's admin endpoint (`/healthz`, `/readyz`, `/metrics`) listens on.
pub const ADMIN_PORT: i32 = 9901;

/// Longest HostRole name: `<name>-<ordinal>` pods carry a `controller-revision-hash` label of
/// `<name>-<10 chars>`, which must fit in a 63-character label value.
pub const MAX_NAME_LEN: usize = 52;

/// metadata.name: a DNS-1035 label (Services are named after it) short enough for host names.
pub fn name_length() -> Rule {
    Rule::new(format!(
        "!has(self.metadata.name) || (self.metadata.name.size() <= {MAX_NAME_LEN} && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$'))"
    ))
    .message(Message::Message(format!(
        "metadata.name must start with a letter, hold only a-z, 0-9 and '-', and be at most {MAX_NAME_LEN} characters: it names the hosts' pods and Services"
    )))
    .reason(Reason::FieldValueInvalid)
}

/// `has(self.servers.<role>)`, safe when `servers` itself is absent.
fn has_server(role: &str) -> String {
    format!("(has(self.servers) && has(self.servers.{role}))")
}

/// A CEL list of every port a server role of the spec listens on.
fn port_list() -> String {
    let web = has_server("web");
    let file = has_server("file");
    let mail = has_server("mail");
    let index = has_server("index");
    let chat = has_server("chat");
    let radio = has_server("radio");
    let print = has_server("print");
    format!(
        "(({web} ? [self.servers.web.port] : []) \
         + ({web} && has(self.servers.web.httpRedirectPort) ? [self.servers.web.httpRedirectPort] : []) \
         + ({file} ? [self.servers.file.port] : []) \
         + ({mail} ? [self.servers.mail.smtpPort, self.servers.mail.submissionPort, self.servers.mail.imapPort, self.servers.mail.pop3Port] : []) \
         + ({mail} && has(self.servers.mail.tls) ? [self.servers.mail.imapsPort, self.servers.mail.pop3sPort, self.servers.mail.submissionsPort] : []) \
         + ({index} ? [self.servers.index.port] : []) \
         + ({chat} ? [self.servers.chat.port] : []) \
         + ({chat} && has(self.servers.chat.tls) ? [self.servers.chat.tlsPort] : []) \
         + ({radio} ? [self.servers.radio.port] : []) \
         + ({print} ? [self.servers.print.port] : []) \
         + (has(self.peer) ? [self.peer.port, self.peer.ui.port] : []))"
    )
}

/// spec: a host plays at least one role.
pub fn at_least_one_role() -> Rule {
    let servers = ["web", "file", "mail", "index", "chat", "radio", "print"]
        .iter()
        .map(|r| has_server(r))
        .collect::<Vec<_>>()
        .join(" || ");
    Rule::new(format!(
        "{servers} || (has(self.clients) && size(self.clients) > 0) || has(self.peer)"
    ))
    .message(
        "a host needs at least one role: set spec.servers.web (or file, mail, index, chat, radio, print), spec.clients or spec.peer",
    )
    .reason(Reason::FieldValueRequired)
}

/// spec: no two server roles on one port. (A messageExpression naming the port was tried: the
/// API server's cost estimate for it is over budget, so the message names the fields instead.
/// `FieldValueInvalid`, not `FieldValueDuplicate`: with FieldValueDuplicate the API server
/// prints the value (`"object"`) and drops the message. No `fieldPath`: the ports are spread
/// over `servers` and `peer`.)
pub fn unique_ports() -> Rule {
    let ports = port_list();
    Rule::new(format!("{ports}.all(p, {ports}.filter(q, q == p).size() == 1)"))
        .message(
            "two server roles use the same port: give each its own (spec.servers.web.port, spec.servers.web.httpRedirectPort, spec.servers.file.port, spec.servers.mail.*Port, spec.servers.index.port, spec.servers.chat.port, spec.servers.chat.tlsPort, spec.servers.radio.port, spec.servers.print.port, spec.peer.port, spec.peer.ui.port)",
        )
        .reason(Reason::FieldValueInvalid)
}

/// spec: the admin port belongs to the agent.
pub fn admin_port_reserved() -> Rule {
    let ports = port_list();
    Rule::new(format!("{ports}.all(p, p != {ADMIN_PORT})")).message(Message::Message(format!(
        "port {ADMIN_PORT} is reserved for the agent's admin endpoint (/healthz, /readyz, /metrics): choose another port for the role"
    )))
    .reason(Reason::FieldValueForbidden)
}

/// servers.web: a redirect to HTTPS needs HTTPS.
pub fn redirect_needs_tls() -> Rule {
    Rule::new("!has(self.httpRedirectPort) || has(self.tls)")
        .message("redirects to HTTPS: set tls too, or remove httpRedirectPort")
        .reason(Reason::FieldValueForbidden)
        .field_path(".httpRedirectPort")
}

/// servers.web.site: one source of content.
pub fn site_exactly_one() -> Rule {
    Rule::new("[has(self.configMap), has(self.files), has(self.path)].filter(x, x).size() == 1")
        .message("set exactly one of configMap, files or path")
        .reason(Reason::FieldValueInvalid)
}

/// servers.web.site.files[].path: a plain relative path that cannot leave the site.
pub fn relative_file_path() -> Rule {
    Rule::new("self.matches('^[A-Za-z0-9_~-][A-Za-z0-9._~-]*(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*$')")
        .message("must be a relative path of plain segments such as index.html or css/site.css: no leading '/', no empty, '.' or '..' segments, no hidden files")
        .reason(Reason::FieldValueInvalid)
}

/// servers.chat: requiring a login needs accounts to log in with.
pub fn login_needs_users() -> Rule {
    Rule::new("!has(self.requireLogin) || !self.requireLogin || has(self.users)")
        .message(
            "requireLogin needs accounts: set users (a Secret or a file), or remove requireLogin",
        )
        .reason(Reason::FieldValueRequired)
        .field_path(".requireLogin")
}

/// Exactly one of two fields.
pub fn exactly_one(a: &str, b: &str) -> Rule {
    Rule::new(format!("has(self.{a}) != has(self.{b})"))
        .message(Message::Message(format!("set exactly one of {a} or {b}")))
        .reason(Reason::FieldValueInvalid)
}

/// Exactly one of several fields.
pub fn exactly_one_of(fields: &[&str]) -> Rule {
    let has = fields
        .iter()
        .map(|f| format!("has(self.{f})"))
        .collect::<Vec<_>>()
        .join(", ");
    Rule::new(format!("[{has}].filter(x, x).size() == 1"))
        .message(Message::Message(format!(
            "set exactly one of {}",
            fields.join(", ")
        )))
        .reason(Reason::FieldValueInvalid)
}

/// servers: a radio playlist from the file share needs the host's file share.
pub fn file_share_playlist_needs_the_file_role() -> Rule {
    Rule::new(
        "!has(self.radio) || has(self.file) || !self.radio.mounts.exists(m, has(m.playlist) && has(m.playlist.fileShare))",
    )
    .message("a playlist from fileShare needs this host's file share: set servers.file, or use playlist.configMap")
    .reason(Reason::FieldValueRequired)
    .field_path(".radio.mounts")
}

/// servers: printouts to the file share need the host's file share.
pub fn file_share_output_needs_the_file_role() -> Rule {
    Rule::new(
        "!has(self.print) || has(self.file) || !has(self.print.output) || !has(self.print.output.fileShare)",
    )
    .message("printouts to output.fileShare need this host's file share: set servers.file, or remove output to keep them in the print volume")
    .reason(Reason::FieldValueRequired)
    .field_path(".print.output.fileShare")
}

/// servers.radio: live mounts need the password their sources send.
pub fn live_needs_source_password() -> Rule {
    Rule::new("!self.mounts.exists(m, has(m.live) && m.live) || has(self.sourcePassword)")
        .message(
            "a live mount needs sourcePassword (a Secret with the key password, or a file): set it, or remove live",
        )
        .reason(Reason::FieldValueRequired)
        .field_path(".sourcePassword")
}

/// servers.radio.mounts: a mount plays something: a playlist, or what a live source sends.
pub fn mount_has_audio() -> Rule {
    Rule::new("has(self.playlist) || (has(self.live) && self.live)")
        .message("a mount needs a playlist or live: true, else it never goes on the air")
        .reason(Reason::FieldValueRequired)
        .field_path(".playlist")
}

/// servers.radio.mounts.path: the status page's path is the role's own.
pub fn mount_path_free() -> Rule {
    Rule::new("self != '/status-json.xsl' && self != '/admin'")
        .message(
            "/status-json.xsl and /admin are the radio role's own paths: pick another mount path",
        )
        .reason(Reason::FieldValueInvalid)
}

/// users: one source of accounts.
pub fn users_exactly_one() -> Rule {
    Rule::new("has(self.secret) != has(self.file)")
        .message("set exactly one of secret or file")
        .reason(Reason::FieldValueInvalid)
}

/// Names the operator keeps for the objects of peer networks (`peers-<network>`).
pub fn name_not_reserved() -> Rule {
    Rule::new("!has(self.metadata.name) || !self.metadata.name.startsWith('peers-')")
        .message("metadata.name must not start with 'peers-': the operator names each peer network's Secret and Service peers-<network>")
        .reason(Reason::FieldValueInvalid)
}

/// peer.seeds: `host:port` each.
pub fn host_port_list() -> Rule {
    Rule::new(r"self.all(s, s.matches('^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?:[0-9]{1,5}$') || s.matches('^\\[[0-9A-Fa-f:.]+\\]:[0-9]{1,5}$'))")
        .message("each seed must be host:port, such as 192.168.1.20:7001, laptop.lan:7001 or [fd00::2]:7001")
        .reason(Reason::FieldValueInvalid)
}

/// clients[]: one target.
pub fn client_target_exactly_one() -> Rule {
    Rule::new("has(self.server) != has(self.url)")
        .message("set exactly one of server (a HostRole: name or namespace/name) or url")
        .reason(Reason::FieldValueInvalid)
}

/// clients[].to: a mail client that sends from a HostRole it logs in to.
pub fn client_to_needs_a_mail_sender() -> Rule {
    Rule::new("!has(self.to) || (self.service == 'mail' && has(self.server) && has(self.credentials))")
        .message("only for mail clients with server and credentials: the probe logs in to the server's submission port as that user and sends to the other host")
        .reason(Reason::FieldValueForbidden)
        .field_path(".to")
}

/// clients[]: `listen` is for radio clients, and shorter than one run may take.
pub fn client_listen_within_timeout() -> Rule {
    let d = "'^([0-9]+(ms|s|m|h))+$'";
    Rule::new(format!(
        "!has(self.listen) || (self.service == 'radio' && (!self.listen.matches({d}) || \
         duration(self.listen) < (has(self.timeout) && self.timeout.matches({d}) ? duration(self.timeout) : duration('10s'))))"
    ))
    .message("listen is for radio clients and must be shorter than timeout (default 10s): shorten listen or raise timeout")
    .reason(Reason::FieldValueInvalid)
    .field_path(".listen")
}

/// clients[].url: an absolute URL.
pub fn client_url() -> Rule {
    Rule::new(r"self.matches('^[a-z][a-z0-9+.-]*://[^/\\s]+')")
        .message(
            "must be an absolute URL such as http://example.lan/ or smtp://mail.example.lan:25",
        )
        .reason(Reason::FieldValueInvalid)
}

/// A Go-style duration within bounds.
pub fn duration(min: &str, max: &str) -> Rule {
    Rule::new(format!(
        "self.matches('^([0-9]+(ms|s|m|h))+$') && duration(self) >= duration('{min}') && duration(self) <= duration('{max}')"
    ))
    .message(Message::Message(format!(
        "must be a duration from {min} to {max}, written like 500ms, 30s, 5m or 1h30m"
    )))
    .reason(Reason::FieldValueInvalid)
}

/// A number (0 or more) or a percentage from 0% to 100%, as PodDisruptionBudgets take them.
pub fn count_or_percentage() -> Rule {
    // `string(self)`: the field is int-or-string (`type()` is not in kube-cel's library).
    Rule::new("string(self).matches('^([0-9]+|(100|[1-9]?[0-9])%)$')")
        .message(
            "must be a number of hosts (0 or more) or a percentage from 0% to 100%, e.g. 1 or 25%",
        )
        .reason(Reason::FieldValueInvalid)
}

/// allowClientsFrom: allows something (an empty one would read as "everyone" to some and
/// "no one" to others).
pub fn allow_clients_from_not_empty() -> Rule {
    Rule::new(
        "(has(self.namespaces) && size(self.namespaces) > 0) || has(self.namespaceSelector)",
    )
    .message(
        "set namespaces (names), namespaceSelector (labels; {} allows every namespace) or both; remove allowClientsFrom to allow no other namespace",
    )
    .reason(Reason::FieldValueRequired)
}

/// A label selector's matchLabels: keys no longer than Kubernetes allows. (Their characters
/// are not checked here: a regular expression on every key is over the API server's cost
/// budget for CEL, and a key no namespace can carry matches none. Values are checked by the
/// schema.)
pub fn label_keys() -> Rule {
    Rule::new("self.all(k, size(k) >= 1 && size(k) <= 317)").message(
        "each key must be a label key such as team or example.com/tier (at most 317 characters)",
    )
    .reason(Reason::FieldValueInvalid)
}

/// A selector requirement: values for In and NotIn, none for Exists and DoesNotExist.
pub fn requirement_values() -> Rule {
    Rule::new(
        "self.operator == 'In' || self.operator == 'NotIn' ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
    )
    .message(
        "give at least one with In and NotIn, and none with Exists and DoesNotExist",
    )
    .reason(Reason::FieldValueInvalid)
    .field_path(".values")
}

/// A size in bytes (`storage`, `maxUploadSize`, `maxMessageSize`): a Kubernetes quantity that is
/// at least one byte, without the milli, micro or nano suffixes (`500m` is half a byte). The API
/// server's quantity library decides (`isQuantity`, `quantity()`), so `banana`, `-5`, `0` and
/// `500m` are refused at admission, not at reconcile. (Not `isInteger()`: the API server says
/// `1.5Gi` is not one, kube-cel says it is.) (`string(self)`: the field is int-or-string, and `5` is as good as `"5"`.)
pub fn byte_size() -> Rule {
    Rule::new(
        "isQuantity(string(self)) && !string(self).matches('[mun]$') && quantity(string(self)).compareTo(quantity('1')) >= 0",
    )
    .message(
        "must be a positive size in bytes, such as 10Gi, 1.5Gi, 500Mi or 1000000 (a number with an optional suffix Ki, Mi, Gi, Ti, Pi, Ei or k, M, G, T, P, E)",
    )
    .reason(Reason::FieldValueInvalid)
}
/// A rate in bytes per second (peer limits): a size of at least 1Ki.
pub fn byte_rate() -> Rule {
    Rule::new(
        "isQuantity(string(self)) && !string(self).matches('[mun]$') && quantity(string(self)).compareTo(quantity('1Ki')) >= 0",
    )
    .message(
        "must be bytes per second of at least 1Ki, such as 512Ki, 10Mi or 1000000 (a number with an optional suffix Ki, Mi, Gi or k, M, G)",
    )
    .reason(Reason::FieldValueInvalid)
}
/// servers.*.tls: one source of the certificate.
pub fn tls_exactly_one() -> Rule {
    Rule::new("has(self.secret) != has(self.issuerRef)").message(
        "set exactly one of secret (a kubernetes.io/tls Secret) or issuerRef (a cert-manager Issuer or ClusterIssuer that issues it)",
    )
    .reason(Reason::FieldValueInvalid)
}

/// servers.mail.outbound.relay: no password over a connection without TLS.
pub fn relay_credentials_need_tls() -> Rule {
    Rule::new("!(has(self.credentials) && has(self.tls) && self.tls == 'None')")
        .message("credentials would cross the network in the clear: remove tls: None (StartTLS is the default) or the credentials")
        .reason(Reason::FieldValueForbidden)
        .field_path(".credentials")
}

/// The port names `spec.expose.nodePorts` may use.
pub const EXPOSED_PORT_NAMES: [&str; 15] = [
    "web",
    "web-redirect",
    "webdav",
    "smtp",
    "submission",
    "imap",
    "pop3",
    "imaps",
    "pop3s",
    "submissions",
    "index",
    "irc",
    "ircs",
    "radio",
    "ipp",
];

/// spec: every role named in expose.roles is served by the host.
pub fn exposed_roles_served() -> Rule {
    let checks = ["web", "file", "mail", "index", "chat", "radio", "print"]
        .iter()
        .map(|r| format!("(r == '{r}' && {})", has_server(r)))
        .collect::<Vec<_>>()
        .join(" || ");
    Rule::new(format!(
        "!has(self.expose) || !has(self.expose.roles) || self.expose.roles.all(r, {checks})"
    ))
    .message(
        "names a role this host does not serve: add it under spec.servers or remove it from spec.expose.roles",
    )
    .reason(Reason::FieldValueInvalid)
    .field_path(".expose.roles")
}

/// expose.nodePorts: only a NodePort or LoadBalancer Service has node ports.
pub fn expose_node_ports_need_type() -> Rule {
    Rule::new("!has(self.nodePorts) || size(self.nodePorts) == 0 || (has(self.type) && self.type != 'ClusterIP')")
        .message("needs spec.expose.type NodePort or LoadBalancer: set the type, or remove nodePorts")
        .reason(Reason::FieldValueForbidden)
        .field_path(".nodePorts")
}

/// expose.loadBalancerClass: LoadBalancer only.
pub fn expose_lb_class_needs_lb() -> Rule {
    Rule::new("!has(self.loadBalancerClass) || (has(self.type) && self.type == 'LoadBalancer')")
        .message("needs spec.expose.type LoadBalancer: set the type, or remove loadBalancerClass")
        .reason(Reason::FieldValueForbidden)
        .field_path(".loadBalancerClass")
}

/// expose.externalTrafficPolicy: only for traffic from outside.
pub fn expose_traffic_policy_needs_type() -> Rule {
    Rule::new("!has(self.externalTrafficPolicy) || (has(self.type) && self.type != 'ClusterIP')")
        .message("needs spec.expose.type NodePort or LoadBalancer: set the type, or remove externalTrafficPolicy")
        .reason(Reason::FieldValueForbidden)
        .field_path(".externalTrafficPolicy")
}

/// expose.nodePorts: keys are port names of the roles.
pub fn expose_node_port_names() -> Rule {
    let names = EXPOSED_PORT_NAMES
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    Rule::new(format!(
        "!has(self.nodePorts) || self.nodePorts.all(k, k in [{names}])"
    ))
    .message(Message::Message(format!(
        "each key must be a port name ({}), e.g. {{web: 30443}}",
        EXPOSED_PORT_NAMES.join(", ")
    )))
    .reason(Reason::FieldValueInvalid)
    .field_path(".nodePorts")
}
