//! `kubectl hostrole` (the `kubectl-hostrole` binary): what a person asks of HostRoles from a
//! terminal. `status` renders HostRoles with their conditions, hosts and endpoints, `matrix` is
//! [`crate::matrix`], `logs HOST` finds a host's pod and prints its agent's log.
//!
//! The rendering and the host lookup are pure functions of the listed HostRoles (tested in
//! `operator/tests/plugin.rs`); the thin async layer below lists and streams.

use hostrole_api::{HostRole, RoleState};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, LogParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};

/// The container that runs the agent in every host pod (operator/src/desired.rs).
pub const AGENT_CONTAINER: &str = "agent";

/// Why a `kubectl hostrole` command failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot read the kubeconfig: {0}")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    #[error("cannot reach the Kubernetes API (kubeconfig or in-cluster config): {0}")]
    Client(#[source] kube::Error),
    #[error("cannot list HostRoles: {0}")]
    List(#[source] kube::Error),
    #[error(transparent)]
    Matrix(#[from] crate::matrix::MatrixError),
    #[error(transparent)]
    View(#[from] crate::view::ViewError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("cannot read pod {namespace}/{pod}: {source}")]
    Pod {
        namespace: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "cannot read the log of {namespace}/{pod} ({container}): {}",
        api_message(source)
    )]
    Logs {
        namespace: String,
        pod: String,
        container: String,
        #[source]
        source: kube::Error,
    },
    #[error("the log stream of {pod} broke: {source}")]
    Stream {
        pod: String,
        #[source]
        source: std::io::Error,
    },
}

/// The API server's own message when it gave one (kube's Display adds the whole Status).
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!("{} ({})", status.message, status.code)
        }
        other => other.to_string(),
    }
}

/// Why a host name names no single host.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    #[error("no host {host} {scope}; hosts: {}", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    NotFound {
        host: String,
        scope: String,
        known: Vec<String>,
    },
    #[error("host {host} exists in several namespaces ({}): say which with -n", namespaces.join(", "))]
    Ambiguous {
        host: String,
        namespaces: Vec<String>,
    },
}

/// A host: its namespace and its pod's name (a host *is* its pod, `<hostrole>-<ordinal>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRef {
    pub namespace: String,
    pub pod: String,
    pub hostrole: String,
}

/// The host `host` names among `hostroles`: a host of a HostRole's status
/// (`web-0`), an ordinal below `spec.replicas` of a HostRole (`web-1` while its status lags),
/// or a HostRole with exactly one host (`web` for `web-0`). `scope` says where the list came
/// from, for the error ("in namespace lan").
pub fn resolve_host(hostroles: &[HostRole], host: &str, scope: &str) -> Result<HostRef, HostError> {
    let mut found: Vec<HostRef> = Vec::new();
    for hr in hostroles {
        let name = hr.name_any();
        let namespace = hr.namespace().unwrap_or_default();
        let listed = hr
            .status
            .iter()
            .flat_map(|s| &s.hosts)
            .any(|h| h.name == host);
        let ordinal = host
            .strip_prefix(&name)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|n| n.parse::<i32>().ok())
            .is_some_and(|n| (0..hr.spec.replicas).contains(&n));
        let pod = if listed || ordinal {
            Some(host.to_string())
        } else if name == host && hr.spec.replicas == 1 {
            Some(format!("{name}-0"))
        } else {
            None
        };
        if let Some(pod) = pod {
            let candidate = HostRef {
                namespace,
                pod,
                hostrole: name,
            };
            if !found.contains(&candidate) {
                found.push(candidate);
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => {
            let mut known: Vec<String> = hostroles.iter().flat_map(host_names).collect();
            known.sort();
            known.dedup();
            Err(HostError::NotFound {
                host: host.to_string(),
                scope: scope.to_string(),
                known,
            })
        }
        _ => {
            let mut namespaces: Vec<String> = found.into_iter().map(|h| h.namespace).collect();
            namespaces.sort();
            namespaces.dedup();
            Err(HostError::Ambiguous {
                host: host.to_string(),
                namespaces,
            })
        }
    }
}

/// The hosts of a HostRole: those its status lists, else `<name>-0` … `<name>-(replicas-1)`.
fn host_names(hr: &HostRole) -> Vec<String> {
    let listed: Vec<String> = hr
        .status
        .iter()
        .flat_map(|s| &s.hosts)
        .map(|h| h.name.clone())
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    let name = hr.name_any();
    (0..hr.spec.replicas.max(0))
        .map(|i| format!("{name}-{i}"))
        .collect()
}

/// The container whose log `logs` prints: the agent's, else a pod's only container.
pub fn log_container(pod: &Pod) -> Option<String> {
    let containers = pod.spec.as_ref().map(|s| &s.containers)?;
    if containers.iter().any(|c| c.name == AGENT_CONTAINER) {
        return Some(AGENT_CONTAINER.to_string());
    }
    match containers.as_slice() {
        [only] => Some(only.name.clone()),
        _ => None,
    }
}

/// A duration as kubectl prints ages: `45s`, `12m`, `5h`, `3d`.
pub fn age(since: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second().saturating_sub(since.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 120 * 60 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == row.len() {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(indent);
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn role_state(state: RoleState) -> &'static str {
    match state {
        RoleState::Pending => "Pending",
        RoleState::Starting => "Starting",
        RoleState::Serving => "Serving",
        RoleState::Failed => "Failed",
    }
}

/// One HostRole as `status` prints it: a summary line, then its conditions, hosts and
/// endpoints as indented tables.
pub fn render_hostrole(hr: &HostRole, now: Timestamp) -> String {
    let namespace = hr.namespace().unwrap_or_default();
    let name = hr.name_any();
    let mut out = String::new();
    let roles = hr.spec.all_roles().join(",");
    let Some(status) = hr.status.as_ref() else {
        out.push_str(&format!(
            "{namespace}/{name}  roles {roles}  hosts ?/{}  no status yet (is the operator running and watching {namespace}?)\n",
            hr.spec.replicas
        ));
        return out;
    };
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map_or("-".to_string(), |c| {
            if c.reason.is_empty() {
                format!("Ready={}", c.status)
            } else {
                format!("Ready={} ({})", c.status, c.reason)
            }
        });
    let mut summary = vec![
        format!("{namespace}/{name}"),
        format!("roles {roles}"),
        format!("hosts {}/{} ready", status.ready_hosts, hr.spec.replicas),
    ];
    if !status.clients.is_empty() {
        summary.push(format!("clients {} ok", status.clients));
    }
    summary.push(ready);
    if let Some(created) = &hr.metadata.creation_timestamp {
        summary.push(format!("age {}", age(created.0, now)));
    }
    out.push_str(&summary.join("  "));
    out.push('\n');
    if let (Some(observed), Some(generation)) = (status.observed_generation, hr.metadata.generation)
        && observed < generation
    {
        out.push_str(&format!(
            "  (status describes generation {observed}; the spec is at {generation}: the operator has not caught up)\n"
        ));
    }

    if !status.conditions.is_empty() {
        let mut rows = vec![vec![
            "CONDITION".to_string(),
            "STATUS".into(),
            "REASON".into(),
            "SINCE".into(),
            "MESSAGE".into(),
        ]];
        for c in &status.conditions {
            rows.push(vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                age(c.last_transition_time.0, now),
                c.message.clone(),
            ]);
        }
        out.push_str(&table(&rows, "  "));
    }

    if !status.hosts.is_empty() {
        let mut rows = vec![vec![
            "HOST".to_string(),
            "READY".into(),
            "ROLES".into(),
            "CLIENTS".into(),
            "FAILING".into(),
        ]];
        for host in &status.hosts {
            let roles = if host.roles.is_empty() {
                "-".to_string()
            } else {
                host.roles
                    .iter()
                    .map(|(role, state)| format!("{role}={}", role_state(*state)))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let ok = host.clients.iter().filter(|c| c.ok).count();
            let clients = if host.clients.is_empty() {
                "-".to_string()
            } else {
                format!("{ok}/{}", host.clients.len())
            };
            let failing = host
                .clients
                .iter()
                .filter(|c| !c.ok)
                .map(|c| {
                    let why = if c.reason.is_empty() {
                        "failing"
                    } else {
                        &c.reason
                    };
                    format!("{} {}: {why}", c.service, c.server)
                })
                .collect::<Vec<_>>()
                .join("; ");
            rows.push(vec![
                host.name.clone(),
                if host.ready { "yes" } else { "no" }.into(),
                roles,
                clients,
                failing,
            ]);
        }
        out.push_str(&table(&rows, "  "));
    }

    if let Some(network) = &status.network {
        let up = network.peers.iter().filter(|p| p.ready).count();
        out.push_str(&format!(
            "  network {} ({}): {up}/{} peers ready\n",
            network.name,
            network.mode,
            network.peers.len()
        ));
    }

    if !status.endpoints.is_empty() {
        let mut rows = vec![vec!["ENDPOINT".to_string(), "SCOPE".into(), "URL".into()]];
        for e in &status.endpoints {
            rows.push(vec![e.role.clone(), e.scope.clone(), e.url.clone()]);
        }
        out.push_str(&table(&rows, "  "));
    }
    out
}

/// `status`: every HostRole (by namespace, then name), a blank line between them; `scope` is
/// what was listed, for the empty case ("in namespace lan", "in any namespace").
pub fn render_status(hostroles: &[HostRole], now: Timestamp, scope: &str) -> String {
    if hostroles.is_empty() {
        return format!("No HostRoles {scope}.\n");
    }
    let mut sorted: Vec<&HostRole> = hostroles.iter().collect();
    sorted.sort_by_key(|hr| (hr.namespace(), hr.name_any()));
    sorted
        .into_iter()
        .map(|hr| render_hostrole(hr, now))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where to connect and what to list: the kubectl-like flags every subcommand takes.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub kubeconfig: Option<std::path::PathBuf>,
    pub context: Option<String>,
    pub namespace: Option<String>,
    pub all_namespaces: bool,
}

impl Target {
    /// A client from `--kubeconfig`/`--context`, else as kubectl finds one (KUBECONFIG,
    /// ~/.kube/config, in-cluster).
    pub async fn client(&self) -> Result<Client, PluginError> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(PluginError::Kubeconfig)?;
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(PluginError::Kubeconfig)?
            }
            None if self.context.is_some() => Config::from_kubeconfig(&options)
                .await
                .map_err(PluginError::Kubeconfig)?,
            None => return Client::try_default().await.map_err(PluginError::Client),
        };
        Client::try_from(config).map_err(PluginError::Client)
    }

    /// The HostRole API for this target and the words for where it looks.
    fn hostroles(&self, client: &Client) -> (Api<HostRole>, String) {
        if self.all_namespaces {
            return (Api::all(client.clone()), "in any namespace".into());
        }
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        (
            Api::namespaced(client.clone(), &namespace),
            format!("in namespace {namespace}"),
        )
    }
}

/// `kubectl hostrole status [NAME]`.
pub async fn status(target: &Target, name: Option<&str>) -> Result<String, PluginError> {
    let client = target.client().await?;
    let (api, scope) = target.hostroles(&client);
    let mut list = api
        .list(&ListParams::default())
        .await
        .map_err(PluginError::List)?
        .items;
    let scope = match name {
        Some(name) => {
            list.retain(|hr| hr.name_any() == name);
            format!("named {name} {scope}")
        }
        None => scope,
    };
    Ok(render_status(&list, Timestamp::now(), &scope))
}

/// `kubectl hostrole matrix`: [`crate::matrix`] with this target's client.
pub async fn matrix(
    target: &Target,
    options: &crate::matrix::Options,
) -> Result<String, PluginError> {
    let client = target.client().await?;
    let namespace = if target.all_namespaces {
        None
    } else {
        target.namespace.clone()
    };
    Ok(crate::matrix::fetch_with(client, namespace, target.all_namespaces, options).await?)
}

/// `kubectl hostrole view`: [`crate::view`] on this machine with this target's client (what
/// the kubeconfig's user may read), until interrupted.
pub async fn view(
    target: &Target,
    addr: std::net::SocketAddr,
    open: bool,
) -> Result<(), PluginError> {
    let client = target.client().await?;
    let namespace = if target.all_namespaces {
        None
    } else {
        target.namespace.clone()
    };
    tokio::select! {
        served = crate::view::serve(client, namespace, addr, open) => Ok(served?),
        _ = hostrole_agent_core::telemetry::shutdown_signal() => Ok(()),
    }
}

/// What `logs` passes on to the API server.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub tail: Option<i64>,
    pub previous: bool,
    pub since_seconds: Option<i64>,
    pub timestamps: bool,
}

/// `kubectl hostrole logs HOST`: writes the agent's log of the host's pod to `out` (a terminal:
/// a blocking write per line is what kubectl does too).
pub async fn logs(
    target: &Target,
    host: &str,
    options: &LogOptions,
    out: &mut impl std::io::Write,
) -> Result<(), PluginError> {
    use futures::{AsyncBufReadExt, TryStreamExt};

    let client = target.client().await?;
    let (api, scope) = target.hostroles(&client);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(PluginError::List)?
        .items;
    let found = resolve_host(&list, host, &scope)?;
    let pods: Api<Pod> = Api::namespaced(client, &found.namespace);
    let pod = pods
        .get(&found.pod)
        .await
        .map_err(|source| PluginError::Pod {
            namespace: found.namespace.clone(),
            pod: found.pod.clone(),
            source,
        })?;
    let container = log_container(&pod).unwrap_or_else(|| AGENT_CONTAINER.to_string());
    let params = LogParams {
        container: Some(container.clone()),
        follow: options.follow,
        tail_lines: options.tail,
        previous: options.previous,
        since_seconds: options.since_seconds,
        timestamps: options.timestamps,
        ..Default::default()
    };
    let logs_error = |source| PluginError::Logs {
        namespace: found.namespace.clone(),
        pod: found.pod.clone(),
        container: container.clone(),
        source,
    };
    let stream_error = |source| PluginError::Stream {
        pod: found.pod.clone(),
        source,
    };
    let mut lines = pods
        .log_stream(&found.pod, &params)
        .await
        .map_err(logs_error)?
        .lines();
    while let Some(line) = lines.try_next().await.map_err(stream_error)? {
        writeln!(out, "{line}").map_err(stream_error)?;
        if options.follow {
            out.flush().map_err(stream_error)?;
        }
    }
    out.flush().map_err(stream_error)?;
    Ok(())
}
