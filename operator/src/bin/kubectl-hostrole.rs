//! `kubectl-hostrole`: the kubectl plugin (`kubectl hostrole status|matrix|logs HOST` once it
//! is on PATH, or installed by krew from plugins/hostrole.yaml). The work is in
//! `hostrole_operator::plugin`; this file only parses arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use hostrole_operator::plugin::{self, LogOptions, PluginError, Target};

#[derive(Parser)]
#[command(
    name = "kubectl-hostrole",
    bin_name = "kubectl hostrole",
    version,
    about = "HostRoles from the terminal: status, who reaches whom, a host's log"
)]
struct Cli {
    #[command(flatten)]
    target: TargetArgs,
    #[command(subcommand)]
    command: Command,
}

/// kubectl's own flags are not passed to plugins: these are the ones that matter here.
#[derive(Args)]
struct TargetArgs {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, global = true)]
    all_namespaces: bool,
    /// Path of the kubeconfig (default: KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long, global = true)]
    context: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// HostRoles with their conditions, hosts (role states, clients) and endpoints.
    Status {
        /// Only this HostRole.
        name: Option<String>,
    },
    /// Who reaches whom: every client host → server, with state and latency.
    Matrix {
        /// `table`, `json` (the whole topology), `svg` (the picture) or `dot` (Graphviz).
        #[arg(short, long, value_enum, default_value_t)]
        format: hostrole_operator::matrix::Format,
        /// Only HostRoles playing this role; repeat for several.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// The live topology view on this machine (http://127.0.0.1:8088/), with what your
    /// kubeconfig may read; -A for every namespace.
    View {
        /// Where to listen (loopback only: the view has no login).
        #[arg(long, default_value = "127.0.0.1:8088")]
        addr: std::net::SocketAddr,
        /// Open it in the browser ($BROWSER, else xdg-open).
        #[arg(long)]
        open: bool,
    },
    /// The agent's log of one host, by its name (`web-0`; `web` for a one-host HostRole).
    Logs {
        /// The host (its pod's name).
        host: String,
        /// Keep streaming new lines.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<i64>,
        /// The previous container's log (after a restart).
        #[arg(short, long)]
        previous: bool,
        /// Only lines newer than this many seconds.
        #[arg(long)]
        since_seconds: Option<i64>,
        /// Prefix each line with its timestamp.
        #[arg(long)]
        timestamps: bool,
    },
}

async fn run(cli: Cli) -> Result<(), PluginError> {
    let target = Target {
        kubeconfig: cli.target.kubeconfig,
        context: cli.target.context,
        namespace: cli.target.namespace,
        all_namespaces: cli.target.all_namespaces,
    };
    match cli.command {
        Command::Status { name } => {
            print!("{}", plugin::status(&target, name.as_deref()).await?);
        }
        Command::Matrix { format, roles } => {
            let options = hostrole_operator::matrix::Options { format, roles };
            print!("{}", plugin::matrix(&target, &options).await?)
        }
        Command::View { addr, open } => {
            if !addr.ip().is_loopback() {
                return Err(PluginError::Usage(format!(
                    "--addr {addr}: the view has no login; listen on loopback (127.0.0.1)"
                )));
            }
            plugin::view(&target, addr, open).await?
        }
        Command::Logs {
            host,
            follow,
            tail,
            previous,
            since_seconds,
            timestamps,
        } => {
            let options = LogOptions {
                follow,
                tail,
                previous,
                since_seconds,
                timestamps,
            };
            plugin::logs(&target, &host, &options, &mut std::io::stdout().lock()).await?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
