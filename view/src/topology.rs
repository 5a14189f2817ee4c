//! The network as a graph, from the HostRoles' own state (their spec and what their agents
//! reported in status): namespaces as regions, each HostRole a group of hosts (its replicas),
//! each host's roles as badges with their state, client → server edges with health and
//! latency, peer networks with their index and peers. Pure: [`build`] turns HostRoles into a
//! [`Topology`]; [`to_json`] and [`to_dot`] export it (`matrix --format json|dot`). The JSON's
//! schema is `docs/topology.schema.json` ([`schema`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use hostrole_api::{HostRole, RoleState};
use kube::ResourceExt;
use schemars::JsonSchema;
use serde::Serialize;

/// Version of the export's shape; a consumer checks it.
pub const VERSION: &str = "hostrole.dev/topology/v1";

/// Everything a view draws.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Topology {
    /// [`VERSION`].
    pub version: String,
    /// Namespaces, by name, each with its HostRoles.
    pub regions: Vec<Region>,
    /// Client → server, one per client of each host.
    pub edges: Vec<Edge>,
    /// Peer-to-peer networks, by namespace and name.
    pub networks: Vec<Network>,
}

/// A namespace.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Region {
    pub namespace: String,
    /// By name.
    pub groups: Vec<Group>,
}

/// One HostRole: a group of identical hosts.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Group {
    /// `namespace/name`.
    pub id: String,
    pub name: String,
    pub replicas: i32,
    pub ready_hosts: i32,
    /// The roles its spec declares (`web`, `file`, …, `peer`, `clients`).
    pub roles: Vec<String>,
    /// Where its roles are reached (the status's endpoints), main first.
    pub urls: Vec<String>,
    /// Its hosts, as the status lists them (none before the operator has seen it).
    pub hosts: Vec<Host>,
}

/// One host (a pod).
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Host {
    /// `namespace/host`.
    pub id: String,
    pub name: String,
    pub ready: bool,
    /// Each role it plays, by role.
    pub badges: Vec<Badge>,
    /// Why it is not ready, when the status says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One role on one host.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Badge {
    pub role: String,
    pub state: State,
}

/// A role's state, as the status says it.
#[derive(Serialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Starting,
    Serving,
    Failed,
}

impl From<RoleState> for State {
    fn from(s: RoleState) -> State {
        match s {
            RoleState::Pending => State::Pending,
            RoleState::Starting => State::Starting,
            RoleState::Serving => State::Serving,
            RoleState::Failed => State::Failed,
        }
    }
}

/// A client of one host and the server it uses.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Edge {
    /// The client's host ([`Host::id`]).
    pub from: String,
    /// The server: a [`Group::id`] when it is a HostRole (`to_group`), else its URL.
    pub to: String,
    /// Whether `to` names a group of this topology.
    pub to_group: bool,
    /// `web`, `file`, `mail`, `chat`, `radio` or `print`.
    pub service: String,
    pub health: Health,
    /// Why it fails (the client's reason), when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
}

/// A client's last result.
#[derive(Serialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ok,
    Failing,
}

/// A peer-to-peer network.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Network {
    /// `namespace/name`.
    pub id: String,
    pub name: String,
    pub namespace: String,
    /// `Hybrid` (peers around an index) or `Decentralized` (a mesh).
    pub mode: String,
    /// Hybrid: the index's group ([`Group::id`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Its peers' hosts ([`Host::id`]), by name.
    pub peers: Vec<NetworkPeer>,
}

/// One peer of a network.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPeer {
    /// [`Host::id`].
    pub host: String,
    /// Its group ([`Group::id`]).
    pub group: String,
    pub ready: bool,
}

/// What to keep of the HostRoles: namespaces, roles and HostRoles (`namespace/name`) to
/// show; an empty set keeps all.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub namespaces: BTreeSet<String>,
    pub roles: BTreeSet<String>,
    pub groups: BTreeSet<String>,
}

impl Filter {
    fn keeps(&self, hr: &HostRole) -> bool {
        let ns = hr.namespace().unwrap_or_default();
        (self.namespaces.is_empty() || self.namespaces.contains(&ns))
            && (self.roles.is_empty() || roles_of(hr).iter().any(|r| self.roles.contains(r)))
            && (self.groups.is_empty() || self.groups.contains(&group_id(hr)))
    }
}

/// The roles a HostRole's spec declares.
fn roles_of(hr: &HostRole) -> Vec<String> {
    let mut roles: Vec<String> = hr
        .spec
        .server_roles()
        .into_iter()
        .map(str::to_string)
        .collect();
    if hr.spec.peer.is_some() {
        roles.push("peer".into());
    }
    if !hr.spec.clients.is_empty() {
        roles.push("clients".into());
    }
    roles
}

/// The graph of `hostroles` that `filter` keeps, in a stable order (namespaces, HostRoles and
/// hosts by name), so a view's layout does not move between updates that change no host.
pub fn build<'a>(hostroles: impl IntoIterator<Item = &'a HostRole>, filter: &Filter) -> Topology {
    let mut kept: Vec<&HostRole> = hostroles
        .into_iter()
        .filter(|hr| filter.keeps(hr))
        .collect();
    kept.sort_by_key(|hr| (hr.namespace().unwrap_or_default(), hr.name_any()));
    let groups: BTreeSet<String> = kept.iter().map(|hr| group_id(hr)).collect();

    let mut regions: BTreeMap<String, Vec<Group>> = BTreeMap::new();
    let mut edges = Vec::new();
    let mut networks: BTreeMap<String, Network> = BTreeMap::new();
    for hr in &kept {
        let ns = hr.namespace().unwrap_or_default();
        let status = hr.status.clone().unwrap_or_default();
        let mut hosts: Vec<Host> = status
            .hosts
            .iter()
            .map(|h| Host {
                id: format!("{ns}/{}", h.name),
                name: h.name.clone(),
                ready: h.ready,
                badges: badges(hr, h),
                message: h.message.clone().filter(|m| !m.is_empty()),
            })
            .collect();
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        for h in &status.hosts {
            for c in &h.clients {
                let (to, to_group) = server_of(&ns, &c.server, &groups);
                edges.push(Edge {
                    from: format!("{ns}/{}", h.name),
                    to,
                    to_group,
                    service: c.service.clone(),
                    health: if c.ok { Health::Ok } else { Health::Failing },
                    reason: (!c.ok && !c.reason.is_empty()).then(|| c.reason.clone()),
                    latency_ms: c.latency_ms,
                    last_error: (!c.last_error.is_empty()).then(|| c.last_error.clone()),
                    last_success: c.last_success.clone(),
                });
            }
        }
        if let Some(net) = &status.network {
            let id = format!("{ns}/{}", net.name);
            let entry = networks.entry(id.clone()).or_insert_with(|| Network {
                id,
                name: net.name.clone(),
                namespace: ns.clone(),
                mode: net.mode.clone(),
                index: net.index.as_ref().map(|i| format!("{ns}/{i}")),
                peers: Vec::new(),
            });
            for p in &net.peers {
                let host = format!("{ns}/{}", p.name);
                if !entry.peers.iter().any(|e| e.host == host) {
                    entry.peers.push(NetworkPeer {
                        host,
                        group: format!("{ns}/{}", p.host_role),
                        ready: p.ready,
                    });
                }
            }
        }
        regions.entry(ns.clone()).or_default().push(Group {
            id: group_id(hr),
            name: hr.name_any(),
            replicas: hr.spec.replicas,
            ready_hosts: status.ready_hosts,
            roles: roles_of(hr),
            urls: status.endpoints.iter().map(|e| e.url.clone()).collect(),
            hosts,
        });
    }
    edges.sort_by(|a, b| (&a.from, &a.to, &a.service).cmp(&(&b.from, &b.to, &b.service)));
    let mut networks: Vec<Network> = networks.into_values().collect();
    for n in &mut networks {
        n.peers.sort_by(|a, b| a.host.cmp(&b.host));
    }
    Topology {
        version: VERSION.into(),
        regions: regions
            .into_iter()
            .map(|(namespace, groups)| Region { namespace, groups })
            .collect(),
        edges,
        networks,
    }
}

/// A host's roles with their state: the server roles as the status reports them, and `peer`
/// for a peer's host (the status does not list it: a peer serves when its host is ready).
fn badges(hr: &HostRole, h: &hostrole_api::HostStatus) -> Vec<Badge> {
    let mut badges: Vec<Badge> = h
        .roles
        .iter()
        .map(|(role, state)| Badge {
            role: role.clone(),
            state: (*state).into(),
        })
        .collect();
    if hr.spec.peer.is_some() && !h.roles.contains_key("peer") {
        badges.push(Badge {
            role: "peer".into(),
            state: if h.ready {
                State::Serving
            } else {
                State::Starting
            },
        });
    }
    badges
}

fn group_id(hr: &HostRole) -> String {
    format!("{}/{}", hr.namespace().unwrap_or_default(), hr.name_any())
}

/// A client's `server` as a group id when it names a HostRole of the topology (`name` in the
/// client's namespace, or `namespace/name`), else as given (a URL, or a HostRole filtered out).
fn server_of(ns: &str, server: &str, groups: &BTreeSet<String>) -> (String, bool) {
    if server.contains("://") {
        return (server.to_string(), false);
    }
    let id = if server.contains('/') {
        server.to_string()
    } else {
        format!("{ns}/{server}")
    };
    let known = groups.contains(&id);
    (id, known)
}

/// The topology as pretty JSON (schema: [`schema`]).
pub fn to_json(t: &Topology) -> String {
    // Plain data (strings, numbers, enums): serialization cannot fail.
    serde_json::to_string_pretty(t).unwrap_or_default() + "\n"
}

/// The JSON schema of [`to_json`]'s output (`docs/topology.schema.json`).
pub fn schema() -> String {
    let schema = schemars::schema_for!(Topology);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

/// A DOT string literal: `"`, `\` and line ends escaped, control characters dropped (names
/// and client errors come from the cluster; none may end the literal or the graph).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn state_colour(state: State) -> &'static str {
    match state {
        State::Serving => "#1a7f37",
        State::Starting | State::Pending => "#9a6700",
        State::Failed => "#cf222e",
    }
}

/// The topology as a Graphviz digraph: a cluster per namespace, inside it one per HostRole with
/// a node per host (label: the host and its roles with their state), edges client → server
/// coloured by health (green ok, red failing) with latency, and per peer network a dashed
/// undirected edge from each peer to its index (hybrid) or a ring through its peers
/// (decentralized). `dot -Tsvg` renders it.
pub fn to_dot(t: &Topology) -> String {
    let mut out = String::new();
    out.push_str("digraph hostrole {\n  graph [compound=true, rankdir=LR, fontname=\"sans-serif\"];\n  node [shape=box, style=rounded, fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n");
    // The node that stands for a group (edges to a group end at its first host, clipped to its
    // cluster), or for a group with no hosts yet, a node of its own.
    let mut anchor: BTreeMap<&str, String> = BTreeMap::new();
    let mut cluster = 0usize;
    for region in &t.regions {
        cluster += 1;
        let _ = writeln!(
            out,
            "  subgraph cluster_{cluster} {{\n    label={};\n    style=dashed;",
            quote(&format!("namespace {}", region.namespace))
        );
        for group in &region.groups {
            cluster += 1;
            let _ = writeln!(
                out,
                "    subgraph cluster_{cluster} {{\n      label={};\n      style=rounded;\n      tooltip={};",
                quote(&format!(
                    "{} ({}/{} ready)",
                    group.name, group.ready_hosts, group.replicas
                )),
                quote(&group.urls.join("\n"))
            );
            if group.hosts.is_empty() {
                let _ = writeln!(
                    out,
                    "      {} [label={}, color=\"#9a6700\"];",
                    quote(&group.id),
                    quote(&format!(
                        "{}\n{}\nno hosts yet",
                        group.name,
                        group.roles.join(" ")
                    ))
                );
            }
            for host in &group.hosts {
                let mut label = host.name.clone();
                for b in &host.badges {
                    let _ = write!(label, "\n{} {:?}", b.role, b.state);
                }
                let worst = host
                    .badges
                    .iter()
                    .map(|b| b.state)
                    .find(|s| *s == State::Failed)
                    .or_else(|| {
                        host.badges
                            .iter()
                            .map(|b| b.state)
                            .find(|s| *s != State::Serving)
                    })
                    .unwrap_or(State::Serving);
                let _ = writeln!(
                    out,
                    "      {} [label={}, color={}, tooltip={}];",
                    quote(&host.id),
                    quote(&label),
                    quote(state_colour(worst)),
                    quote(host.message.as_deref().unwrap_or(if host.ready {
                        "ready"
                    } else {
                        "not ready"
                    }))
                );
            }
            let first = group
                .hosts
                .first()
                .map_or(group.id.clone(), |h| h.id.clone());
            anchor.insert(group.id.as_str(), first);
            let _ = writeln!(out, "    }}");
        }
        let _ = writeln!(out, "  }}");
    }
    let mut clusters: BTreeMap<&str, usize> = BTreeMap::new();
    {
        let mut n = 0usize;
        for region in &t.regions {
            n += 1;
            for group in &region.groups {
                n += 1;
                clusters.insert(group.id.as_str(), n);
            }
        }
    }
    for e in &t.edges {
        let (to, lhead) = match anchor.get(e.to.as_str()) {
            Some(node) if e.to_group => (node.clone(), clusters.get(e.to.as_str()).copied()),
            _ => {
                // A server outside the topology: a plain node of its own.
                let _ = writeln!(out, "  {} [shape=ellipse];", quote(&e.to));
                (e.to.clone(), None)
            }
        };
        let colour = match e.health {
            Health::Ok => "#1a7f37",
            Health::Failing => "#cf222e",
        };
        let mut label = e.service.clone();
        if let Some(ms) = e.latency_ms {
            let _ = write!(label, " {ms}ms");
        }
        if let Some(reason) = &e.reason {
            let _ = write!(label, " {reason}");
        }
        let tooltip = e.last_error.clone().unwrap_or_else(|| match e.health {
            Health::Ok => "ok".into(),
            Health::Failing => "failing".into(),
        });
        let _ = write!(
            out,
            "  {} -> {} [color={}, fontcolor={}, label={}, tooltip={}",
            quote(&e.from),
            quote(&to),
            quote(colour),
            quote(colour),
            quote(&label),
            quote(&tooltip)
        );
        if let Some(c) = lhead {
            let _ = write!(out, ", lhead=cluster_{c}");
        }
        out.push_str("];\n");
    }
    for n in &t.networks {
        let label = quote(&format!("{} ({})", n.name, n.mode));
        match n.index.as_ref().and_then(|i| anchor.get(i.as_str())) {
            Some(index) => {
                for p in &n.peers {
                    let _ = writeln!(
                        out,
                        "  {} -> {} [dir=none, style=dashed, color=\"#0969da\", label={label}];",
                        quote(&p.host),
                        quote(index)
                    );
                }
            }
            None if n.peers.len() > 1 => {
                for (i, p) in n.peers.iter().enumerate() {
                    let next = &n.peers[(i + 1) % n.peers.len()];
                    if n.peers.len() == 2 && i == 1 {
                        break;
                    }
                    let _ = writeln!(
                        out,
                        "  {} -> {} [dir=none, style=dashed, color=\"#0969da\", label={label}];",
                        quote(&p.host),
                        quote(&next.host)
                    );
                }
            }
            None => {}
        }
    }
    out.push_str("}\n");
    out
}

/// XML text: `&`, `<`, `>`, `"` and `'` escaped, control characters dropped.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' => out.push(ch),
            // Not characters XML allows (its Char production): controls and U+FFFE, U+FFFF.
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// A box of the SVG layout.
#[derive(Debug, Clone, Copy)]
struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

const CARD_W: f64 = 150.0;
const LINE: f64 = 14.0;
const PAD: f64 = 10.0;
const GROUP_HEAD: f64 = 24.0;
const REGION_HEAD: f64 = 28.0;
const HOST_COLS: usize = 4;

/// The topology as a standalone SVG picture, laid out as the live view lays it out (namespaces
/// stacked, HostRoles wrapping at `width`, hosts in up to four columns listing their roles and
/// clients, each client's edge from its own line): for docs and CI, no Graphviz needed.
pub fn to_svg(t: &Topology, width: f64) -> String {
    let mut clients: BTreeMap<&str, Vec<&Edge>> = BTreeMap::new();
    for e in &t.edges {
        clients.entry(e.from.as_str()).or_default().push(e);
    }
    let lines = |h: &Host| (h.badges.len() + clients.get(h.id.as_str()).map_or(0, Vec::len)).max(1);
    let badge_lines: BTreeMap<&str, usize> = t
        .regions
        .iter()
        .flat_map(|r| &r.groups)
        .flat_map(|g| &g.hosts)
        .map(|h| (h.id.as_str(), h.badges.len()))
        .collect();
    let mut boxes: BTreeMap<&str, Rect> = BTreeMap::new();
    let mut body = String::new();
    let mut hosts_svg = String::new();
    let mut y = PAD;
    let mut right: f64 = 0.0;
    for region in &t.regions {
        let top = y;
        let (mut gx, mut gy, mut row_h, mut region_w) =
            (PAD * 2.0, y + REGION_HEAD, 0.0f64, 0.0f64);
        let mut groups_svg = String::new();
        for group in &region.groups {
            let cols = group.hosts.len().clamp(1, HOST_COLS);
            let rows = group.hosts.len().div_ceil(cols).max(1);
            let card_h = group
                .hosts
                .iter()
                .map(|h| 24.0 + LINE * lines(h) as f64)
                .fold(38.0, f64::max);
            let w = (CARD_W + 2.0 * PAD).max(cols as f64 * (CARD_W + PAD) + PAD);
            let h = GROUP_HEAD + rows as f64 * (card_h + PAD) + PAD;
            if gx + w > width - PAD && gx > PAD * 2.0 {
                gx = PAD * 2.0;
                gy += row_h + PAD * 2.0;
                row_h = 0.0;
            }
            let _ = writeln!(
                groups_svg,
                "<g class=\"group\"><title>{}</title><rect x=\"{gx}\" y=\"{gy}\" width=\"{w}\" height=\"{h}\" rx=\"8\" fill=\"#f6f8fa\" stroke=\"#8c959f\"/><text x=\"{}\" y=\"{}\" font-weight=\"600\">{} {}/{}</text></g>",
                xml(&group.urls.join("\n")),
                gx + PAD,
                gy + 17.0,
                xml(&group.name),
                group.ready_hosts,
                group.replicas
            );
            boxes.insert(group.id.as_str(), Rect { x: gx, y: gy, w, h });
            for (i, host) in group.hosts.iter().enumerate() {
                let r = Rect {
                    x: gx + PAD + (i % cols) as f64 * (CARD_W + PAD),
                    y: gy + GROUP_HEAD + (i / cols) as f64 * (card_h + PAD),
                    w: CARD_W,
                    h: 24.0 + LINE * lines(host) as f64,
                };
                boxes.insert(host.id.as_str(), r);
                let colour = if host.badges.iter().any(|b| b.state == State::Failed) {
                    state_colour(State::Failed)
                } else if !host.ready {
                    state_colour(State::Pending)
                } else {
                    state_colour(State::Serving)
                };
                let _ = write!(
                    hosts_svg,
                    "<g class=\"host\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"5\" fill=\"#fff\" stroke=\"{colour}\" stroke-width=\"1.5\"/><text x=\"{}\" y=\"{}\">{}</text>",
                    r.x,
                    r.y,
                    r.w,
                    r.h,
                    r.x + 8.0,
                    r.y + 16.0,
                    xml(&host.name)
                );
                for (j, b) in host.badges.iter().enumerate() {
                    let _ = write!(
                        hosts_svg,
                        "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"{}\">● {} {:?}</text>",
                        r.x + 8.0,
                        r.y + 32.0 + j as f64 * LINE,
                        state_colour(b.state),
                        xml(&b.role),
                        b.state
                    );
                }
                for (j, e) in clients
                    .get(host.id.as_str())
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let detail = match (e.health, e.latency_ms, &e.reason) {
                        (Health::Ok, Some(ms), _) => format!("{ms}ms"),
                        (Health::Ok, None, _) => "ok".to_string(),
                        (Health::Failing, _, Some(r)) => r.clone(),
                        (Health::Failing, _, None) => "failing".to_string(),
                    };
                    let target = e.to.rsplit('/').next().unwrap_or(&e.to);
                    let _ = write!(
                        hosts_svg,
                        "<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"{}\">→ {} {} {}</text>",
                        r.x + 8.0,
                        r.y + 32.0 + (host.badges.len() + j) as f64 * LINE,
                        health_colour(e.health),
                        xml(&e.service),
                        xml(&target.chars().take(18).collect::<String>()),
                        xml(&detail)
                    );
                }
                hosts_svg.push_str("</g>\n");
            }
            gx += w + PAD * 2.0;
            row_h = row_h.max(h);
            region_w = region_w.max(gx);
        }
        let h = if region.groups.is_empty() {
            REGION_HEAD + PAD
        } else {
            gy + row_h + PAD * 2.0 - top
        };
        let _ = writeln!(
            body,
            "<g class=\"region\"><rect x=\"{PAD}\" y=\"{top}\" width=\"{}\" height=\"{h}\" rx=\"10\" fill=\"#fff\" stroke=\"#d0d7de\" stroke-dasharray=\"6 3\"/><text x=\"{}\" y=\"{}\" fill=\"#57606a\" font-weight=\"600\">namespace {}</text></g>",
            region_w.max(200.0),
            PAD * 2.0,
            top + 18.0,
            xml(&region.namespace)
        );
        body.push_str(&groups_svg);
        right = right.max(PAD + region_w);
        y += h + PAD * 2.0;
    }
    // Servers outside the graph: a column on the right.
    let mut outside: Vec<&str> = t
        .edges
        .iter()
        .map(|e| e.to.as_str())
        .filter(|to| !boxes.contains_key(to))
        .collect();
    outside.sort_unstable();
    outside.dedup();
    let column = right.max(width - 260.0) + 40.0;
    for (i, id) in outside.iter().enumerate() {
        let r = Rect {
            x: column,
            y: PAD + i as f64 * 44.0,
            w: 220.0,
            h: 30.0,
        };
        boxes.insert(id, r);
        let _ = writeln!(
            hosts_svg,
            "<g class=\"outside\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"14\" fill=\"#fff\" stroke=\"#8c959f\"/><text x=\"{}\" y=\"{}\">{}</text></g>",
            r.x,
            r.y,
            r.w,
            r.h,
            r.x + 10.0,
            r.y + 19.0,
            xml(&id.chars().take(32).collect::<String>())
        );
    }
    let mut nets = String::new();
    for n in &t.networks {
        let peers: Vec<Rect> = n
            .peers
            .iter()
            .filter_map(|p| boxes.get(p.host.as_str()).copied())
            .collect();
        let mut pairs = Vec::new();
        match n.index.as_deref().and_then(|i| boxes.get(i)) {
            Some(index) => pairs.extend(peers.iter().map(|p| (*p, *index))),
            None if peers.len() > 2 => {
                pairs.extend((0..peers.len()).map(|i| (peers[i], peers[(i + 1) % peers.len()])))
            }
            None if peers.len() == 2 => pairs.push((peers[0], peers[1])),
            None => {}
        }
        for (a, b) in pairs {
            let _ = writeln!(
                nets,
                "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#0969da\" stroke-width=\"1.2\" stroke-dasharray=\"2 3\"><title>{} ({})</title></line>",
                a.x + a.w / 2.0,
                a.y + a.h / 2.0,
                b.x + b.w / 2.0,
                b.y + b.h / 2.0,
                xml(&n.name),
                xml(&n.mode)
            );
        }
    }
    let mut incoming: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &t.edges {
        *incoming.entry(e.to.as_str()).or_default() += 1;
    }
    let mut arrived: BTreeMap<&str, usize> = BTreeMap::new();
    let mut edges = String::new();
    for e in &t.edges {
        let (Some(a), Some(b)) = (boxes.get(e.from.as_str()), boxes.get(e.to.as_str())) else {
            continue;
        };
        let line = clients
            .get(e.from.as_str())
            .and_then(|list| list.iter().position(|x| std::ptr::eq(*x, e)))
            .unwrap_or(0);
        let badges = badge_lines.get(e.from.as_str()).copied().unwrap_or(0);
        let (x1, y1) = (a.x + a.w, a.y + 28.0 + (badges + line) as f64 * LINE);
        let j = arrived.entry(e.to.as_str()).or_default();
        let span = b.h.min(160.0) - 12.0;
        let y2 = b.y + 12.0 + ((*j + 1) as f64 * span) / (incoming[e.to.as_str()] + 1) as f64;
        *j += 1;
        let to_left = b.x > x1;
        let x2 = if to_left { b.x } else { b.x + b.w };
        let bend = ((x2 - x1).abs() / 2.0).max(40.0);
        let c2 = if to_left { x2 - bend } else { x2 + bend };
        let dash = match e.health {
            Health::Ok => "",
            Health::Failing => " stroke-dasharray=\"5 3\"",
        };
        let _ = writeln!(
            edges,
            "<path d=\"M{x1},{y1} C{},{y1} {c2},{y2} {x2},{y2}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash}><title>{}: {} → {}{}</title></path>",
            x1 + bend,
            health_colour(e.health),
            xml(&e.service),
            xml(&e.from),
            xml(&e.to),
            xml(&e
                .last_error
                .as_deref()
                .map(|err| format!("\nlast error: {err}"))
                .unwrap_or_default())
        );
    }
    let total_w = if outside.is_empty() {
        right.max(width).max(200.0) + PAD
    } else {
        column + 240.0
    };
    let total_h = y.max(PAD * 2.0 + outside.len() as f64 * 44.0);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{total_w}\" height=\"{total_h}\" viewBox=\"0 0 {total_w} {total_h}\" font-family=\"sans-serif\" font-size=\"14\">\n<title>hostrole topology</title>\n{body}{nets}{hosts_svg}{edges}</svg>\n"
    )
}

fn health_colour(h: Health) -> &'static str {
    match h {
        Health::Ok => "#1a7f37",
        Health::Failing => "#cf222e",
    }
}

#[cfg(test)]
mod tests {
    use super::xml;

    #[test]
    fn text_for_the_svg_is_escaped_and_keeps_only_what_xml_allows() {
        assert_eq!(
            xml("a<b>&\"c'\u{0}\u{1b}\u{FFFE}\u{FFFF}\td\u{e9}\u{1F5A8}"),
            "a&lt;b&gt;&amp;&quot;c&apos;\td\u{e9}\u{1F5A8}"
        );
    }
}
