//! `hostrole-operator`: run the controller, or print the CRD.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hostrole_agent_core::telemetry::{LogFormat, init_logs};
use hostrole_api::HostRole;
use hostrole_operator::desired::{PodIds, Settings};
use hostrole_operator::run::{LeaderElection, Options, run};
use kube::CustomResourceExt;

#[derive(Parser)]
#[command(
    name = "hostrole-operator",
    version,
    about = "Turns HostRole resources into hosts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the HostRole CustomResourceDefinition as YAML.
    Crd,
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Print who reaches whom: every client → server of a namespace (or all), with state and
    /// latency, from the HostRoles' status.
    Matrix {
        /// Namespace (default: the kubeconfig's).
        #[arg(short, long)]
        namespace: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// `table` (for people), `json` (the whole topology: docs/topology.schema.json), `svg`
        /// (the picture, laid out as the live view) or `dot` (Graphviz: `| dot -Tsvg`).
        #[arg(short, long, value_enum, default_value_t)]
        format: hostrole_operator::matrix::Format,
        /// Only HostRoles playing this role (web, file, mail, chat, radio, print, index,
        /// peer, clients); repeat for several.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Print the JSON schema of `matrix --format json` (docs/topology.schema.json).
    TopologySchema,
    /// Serve the live topology view on this machine with your kubeconfig (you see what you may
    /// read): hosts, roles, clients and peer networks, updated as the cluster changes.
    View {
        /// Namespace (default: every namespace).
        #[arg(short, long)]
        namespace: Option<String>,
        /// Where to listen (loopback only: the view has no login).
        #[arg(long, default_value = "127.0.0.1:8088")]
        addr: SocketAddr,
        /// Open it in the browser ($BROWSER, else xdg-open).
        #[arg(long)]
        open: bool,
    },
    /// What `helm test` runs: the operator's Deployment has a ready replica, and a HostRole in a
    /// namespace it watches becomes Ready (then it is deleted).
    SelfTest {
        /// Namespace of the operator's release (its Deployment).
        #[arg(long, env = "POD_NAMESPACE")]
        release_namespace: String,
        /// The operator's Deployment.
        #[arg(long)]
        deployment: String,
        /// Namespace of the test HostRole: one the operator watches.
        #[arg(long)]
        namespace: String,
        /// Name of the test HostRole.
        #[arg(long, default_value = "helm-test")]
        name: String,
        /// Seconds the HostRole may take to become Ready.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Container image of the agent that runs in every host pod.
    #[arg(long, env = "HOSTROLE_AGENT_IMAGE")]
    agent_image: String,
    /// imagePullPolicy of the agent container (Always, IfNotPresent, Never).
    #[arg(long, env = "HOSTROLE_AGENT_IMAGE_PULL_POLICY")]
    agent_image_pull_policy: Option<String>,
    /// Pull secrets of host pods (comma-separated Secret names, in each HostRole's namespace),
    /// for HostRoles that name none in spec.template.imagePullSecrets.
    #[arg(long, env = "HOSTROLE_AGENT_IMAGE_PULL_SECRETS", value_delimiter = ',')]
    agent_image_pull_secrets: Vec<String>,
    /// runAsUser of host pods: a UID, or `platform` (the default) to leave it to the image's
    /// USER (65532) or to the platform's policy (OpenShift assigns one per namespace).
    #[arg(long, env = "HOSTROLE_AGENT_RUN_AS_USER", default_value = "platform", value_parser = parse_pod_id)]
    agent_run_as_user: PodId,
    /// runAsGroup of host pods: a GID, or `platform` (the default).
    #[arg(long, env = "HOSTROLE_AGENT_RUN_AS_GROUP", default_value = "platform", value_parser = parse_pod_id)]
    agent_run_as_group: PodId,
    /// fsGroup of host pods (volumes are made writable for it): a GID (default 65532, the
    /// image's group), or `platform` on clusters whose policy assigns one.
    #[arg(long, env = "HOSTROLE_AGENT_FS_GROUP", default_value = "65532", value_parser = parse_pod_id)]
    agent_fs_group: PodId,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "HOSTROLE_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "HOSTROLE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Elect a leader through a Lease so that several replicas can run.
    #[arg(long, env = "HOSTROLE_LEADER_ELECT", default_value_t = false)]
    leader_elect: bool,
    /// Namespace of the leader Lease (default: POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "hostrole-operator")]
    lease_name: String,
    /// This replica's identity in the Lease (default: POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// ClusterRole bound (per namespace) to hosts with clients, so that their agent may report
    /// client results on its own pod.
    #[arg(
        long,
        env = "HOSTROLE_AGENT_CLUSTER_ROLE",
        default_value = "hostrole-agent"
    )]
    agent_cluster_role: String,
    /// A NetworkPolicy for every HostRole: only declared clients (and peers) reach a server.
    #[arg(long, env = "HOSTROLE_NETWORK_POLICIES", default_value_t = false)]
    network_policies: bool,
    /// Egress rules for every HostRole: hosts reach only DNS and what they declare.
    #[arg(long, env = "HOSTROLE_EGRESS_POLICIES", default_value_t = false)]
    egress_policies: bool,
    /// The API server's addresses (CIDRs, comma-separated) that hosts with clients may reach
    /// under an egress policy; absent: ports 443 and 6443 at any address.
    #[arg(long, env = "HOSTROLE_API_SERVER_CIDRS", value_delimiter = ',')]
    api_server_cidrs: Vec<String>,
    /// HostRoles reconciled in parallel.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Serve the live topology view here (keep it on loopback: `kubectl port-forward` reaches
    /// it, nothing else in the cluster does). Off when absent.
    #[arg(long, env = "HOSTROLE_VIEW_ADDR")]
    view_addr: Option<SocketAddr>,
    /// Log format.
    #[arg(long, env = "HOSTROLE_LOG_FORMAT", value_enum, default_value = "plain")]
    log_format: LogFormat,
}

/// A user or group id of host pods; `None` leaves it to the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PodId(Option<i64>);

/// `platform`, or a positive id (0 is root, which host pods never run as).
fn parse_pod_id(value: &str) -> Result<PodId, String> {
    if value == "platform" {
        return Ok(PodId(None));
    }
    match value.parse::<i64>() {
        Ok(id) if id > 0 && id <= i64::from(u32::MAX) => Ok(PodId(Some(id))),
        Ok(0) => Err("0 is root; host pods run as non-root: give another id, or `platform`".into()),
        _ => Err(format!(
            "`{value}` is neither an id (1..4294967295) nor `platform` (leave it to the image and the platform)"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match serde_yaml::to_string(&HostRole::crd()) {
            // A closed pipe (`crd | head`) ends the output quietly; print! would panic.
            Ok(yaml) => match std::io::Write::write_all(&mut std::io::stdout(), yaml.as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write the CRD: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("error: cannot render the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Command::View {
            namespace,
            addr,
            open,
        } => {
            init_logs(LogFormat::Plain, "warn,hostrole_operator=info");
            if !addr.ip().is_loopback() {
                eprintln!(
                    "error: --addr {addr}: the view has no login; listen on loopback (127.0.0.1) and reach it with an SSH tunnel or port-forward"
                );
                return ExitCode::FAILURE;
            }
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let served = runtime.block_on(async {
                let client = kube::Client::try_default()
                    .await
                    .map_err(hostrole_operator::view::ViewError::Client)?;
                tokio::select! {
                    served = hostrole_operator::view::serve(client, namespace, addr, open) => served,
                    _ = hostrole_agent_core::telemetry::shutdown_signal() => Ok(()),
                }
            });
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::TopologySchema => {
            print!("{}", hostrole_operator::topology::schema());
            ExitCode::SUCCESS
        }
        Command::Matrix {
            namespace,
            all_namespaces,
            format,
            roles,
        } => {
            let options = hostrole_operator::matrix::Options { format, roles };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(hostrole_operator::matrix::fetch(
                namespace,
                all_namespaces,
                &options,
            )) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::SelfTest {
            release_namespace,
            deployment,
            namespace,
            name,
            timeout,
        } => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let test = hostrole_operator::selftest::SelfTest {
                release_namespace,
                deployment,
                namespace,
                name,
                timeout: std::time::Duration::from_secs(timeout),
            };
            match runtime.block_on(hostrole_operator::selftest::run(&test)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            init_logs(args.log_format, "info,kube=warn");
            if let Some(addr) = args.view_addr.filter(|a| !a.ip().is_loopback()) {
                eprintln!(
                    "error: --view-addr {addr}: the view has no login and shows every watched namespace; listen on loopback (127.0.0.1) and reach it with kubectl port-forward"
                );
                return ExitCode::FAILURE;
            }
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let identity = args
                .identity
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| format!("hostrole-operator-{}", std::process::id()));
            let options = Options {
                settings: Settings {
                    agent_image: args.agent_image,
                    image_pull_policy: args.agent_image_pull_policy,
                    agent_cluster_role: args.agent_cluster_role,
                    network_policies: args.network_policies,
                    egress_policies: args.egress_policies,
                    api_server_cidrs: args.api_server_cidrs.clone(),
                    image_pull_secrets: args
                        .agent_image_pull_secrets
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect(),
                    pod_ids: PodIds {
                        run_as_user: args.agent_run_as_user.0,
                        run_as_group: args.agent_run_as_group.0,
                        fs_group: args.agent_fs_group.0,
                    },
                },
                namespace: args.watch_namespace,
                metrics_addr: args.metrics_addr,
                leader_election: args.leader_elect.then_some(LeaderElection {
                    namespace: args.lease_namespace,
                    lease: args.lease_name,
                    identity,
                }),
                concurrency: args.concurrency.max(1),
                view_addr: args.view_addr,
            };
            match runtime.block_on(run(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PodId, parse_pod_id};

    #[test]
    fn pod_ids_are_positive_numbers_or_left_to_the_platform() {
        assert_eq!(parse_pod_id("platform"), Ok(PodId(None)));
        assert_eq!(parse_pod_id("1000680000"), Ok(PodId(Some(1000680000))));
        assert!(parse_pod_id("0").is_err_and(|e| e.contains("root")));
        for bad in ["-1", "nobody", "", "4294967296"] {
            assert!(parse_pod_id(bad).is_err(), "{bad}");
        }
    }
}
