//! `hostrole-operator matrix`: the connectivity matrix a person reads, client → server with
//! state and latency, rendered from the HostRoles' status (what the agents reported).

use hostrole_api::HostRole;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

/// Why the matrix cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("cannot reach the Kubernetes API (kubeconfig or in-cluster config): {0}")]
    Client(#[source] kube::Error),
    #[error("cannot list HostRoles: {0}")]
    List(#[source] kube::Error),
}

/// How the matrix is printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per client → server, for people.
    #[default]
    Table,
    /// The whole topology (regions, hosts, role badges, edges, peer networks) as JSON, in the
    /// shape of docs/topology.schema.json.
    Json,
    /// The same as a Graphviz digraph (`dot -Tsvg`).
    Dot,
    /// The same as an SVG picture, laid out as the live view lays it out.
    Svg,
}

/// What to print and of which HostRoles.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub format: Format,
    /// Only HostRoles that play one of these roles (`web`, …, `peer`, `clients`); all when
    /// empty.
    pub roles: Vec<String>,
}

/// Lists the HostRoles of a namespace (or all) and renders their matrix.
pub async fn fetch(
    namespace: Option<String>,
    all: bool,
    options: &Options,
) -> Result<String, MatrixError> {
    let client = Client::try_default().await.map_err(MatrixError::Client)?;
    fetch_with(client, namespace, all, options).await
}

/// [`fetch`] with a given client (kubectl-hostrole's, from `--kubeconfig`/`--context`).
pub async fn fetch_with(
    client: Client,
    namespace: Option<String>,
    all: bool,
    options: &Options,
) -> Result<String, MatrixError> {
    let api: Api<HostRole> = match (all, namespace) {
        (true, _) => Api::all(client),
        (false, Some(ns)) => Api::namespaced(client, &ns),
        (false, None) => Api::default_namespaced(client),
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(MatrixError::List)?;
    Ok(render_as(&list.items, options))
}

/// The HostRoles in the format `options` asks for.
pub fn render_as(hostroles: &[HostRole], options: &Options) -> String {
    let filter = crate::topology::Filter {
        roles: options.roles.iter().cloned().collect(),
        ..Default::default()
    };
    match options.format {
        Format::Table => {
            let kept: Vec<HostRole> = if filter.roles.is_empty() {
                hostroles.to_vec()
            } else {
                let ids: std::collections::BTreeSet<String> =
                    crate::topology::build(hostroles, &filter)
                        .regions
                        .iter()
                        .flat_map(|r| r.groups.iter().map(|g| g.id.clone()))
                        .collect();
                hostroles
                    .iter()
                    .filter(|hr| {
                        ids.contains(&format!(
                            "{}/{}",
                            hr.namespace().unwrap_or_default(),
                            hr.name_any()
                        ))
                    })
                    .cloned()
                    .collect()
            };
            render(&kept)
        }
        Format::Json => crate::topology::to_json(&crate::topology::build(hostroles, &filter)),
        Format::Dot => crate::topology::to_dot(&crate::topology::build(hostroles, &filter)),
        Format::Svg => crate::topology::to_svg(&crate::topology::build(hostroles, &filter), 1600.0),
    }
}

/// One line per (host, client): `HOST  SERVICE  SERVER  STATE  LATENCY  LAST SUCCESS  DETAIL`.
pub fn render(hostroles: &[HostRole]) -> String {
    let mut rows: Vec<[String; 7]> = vec![[
        "CLIENT HOST".into(),
        "SERVICE".into(),
        "SERVER".into(),
        "STATE".into(),
        "LATENCY".into(),
        "LAST SUCCESS".into(),
        "DETAIL".into(),
    ]];
    let mut sorted: Vec<&HostRole> = hostroles.iter().collect();
    sorted.sort_by_key(|hr| (hr.namespace(), hr.name_any()));
    for hr in sorted {
        let ns = hr.namespace().unwrap_or_default();
        for host in hr.status.iter().flat_map(|s| &s.hosts) {
            for c in &host.clients {
                let server = if c.server.contains('/') || c.server.contains("://") {
                    c.server.clone()
                } else {
                    format!("{ns}/{}", c.server)
                };
                let state = if c.ok {
                    "ok".to_string()
                } else if c.reason.is_empty() {
                    "failing".to_string()
                } else {
                    c.reason.clone()
                };
                rows.push([
                    format!("{ns}/{}", host.name),
                    c.service.clone(),
                    server,
                    state,
                    c.latency_ms.map_or("-".into(), |l| format!("{l}ms")),
                    c.last_success.clone().unwrap_or_else(|| "-".into()),
                    c.last_error.clone(),
                ]);
            }
        }
    }
    if rows.len() == 1 {
        return "No clients declared: no HostRole here has spec.clients.\n".into();
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i == 6 {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
