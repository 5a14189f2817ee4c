//! `hostrole-agent`: serve a host's roles from the operator's configuration (`run`), from a
//! HostRole manifest on any machine (`up`), or check manifests without serving (`check`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hostrole_agent::standalone::{self, UpOptions};
use hostrole_agent::{config, supervisor};
use hostrole_agent_core::telemetry::{LogFormat, init_logs};
use hostrole_api::manifest;
use hostrole_api::rules::ADMIN_PORT;
use hostrole_config::AgentConfig;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "hostrole-agent", version, about = "Serves the roles of a host")]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "HOSTROLE_LOG_FORMAT",
        value_enum,
        default_value = "plain"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the roles of an agent configuration (what the operator renders for a pod).
    Run {
        /// The configuration file.
        #[arg(long, env = "HOSTROLE_CONFIG")]
        config: PathBuf,
    },
    /// Serve the roles of a HostRole manifest on this machine, without a cluster.
    Up {
        /// The manifest (YAML; other kinds of documents in it are skipped).
        manifest: PathBuf,
        /// Which HostRole to serve, when the manifest holds several.
        #[arg(long)]
        name: Option<String>,
        /// Address to listen on; 0.0.0.0 serves the whole network.
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// Port of /healthz, /readyz and /metrics.
        #[arg(long, default_value_t = ADMIN_PORT as u16)]
        admin_port: u16,
        /// Where inline site files are written (default: ~/.local/state/hostrole/NAME).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Added to the index, peer, peer UI and printer ports: run a second peer of the same
        /// manifest (or a second peer network's printer) on this machine with
        /// `--port-offset 10 --admin-port 9911 --data-dir DIR`.
        #[arg(long, default_value_t = 0)]
        port_offset: u16,
        /// A peer (`host:port`) a decentralized peer starts from; repeat for several.
        #[arg(long = "seed")]
        seeds: Vec<String>,
    },
    /// Print an Argon2 hash of a password (read from standard input) for a users file.
    HashPassword,
    /// Check manifests against the HostRole schema and rules, as the API server would.
    Check {
        /// Manifest files.
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format, "info");
    match cli.command {
        Command::Check { manifests } => check(&manifests),
        Command::HashPassword => hash_password(),
        Command::Run { config } => match config::load(&config) {
            Ok(cfg) => serve(cfg, false),
            Err(e) => fail(&e),
        },
        Command::Up {
            manifest,
            name,
            bind,
            admin_port,
            data_dir,
            port_offset,
            seeds,
        } => {
            let options = UpOptions {
                manifest,
                name,
                bind,
                admin_port,
                data_dir,
                port_offset,
                seeds,
            };
            match standalone::prepare(&options) {
                Ok(cfg) => serve(cfg, true),
                Err(e) => fail(&e),
            }
        }
    }
}

fn hash_password() -> ExitCode {
    let mut password = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut password) {
        return fail(&e);
    }
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return fail(&"no password on standard input");
    }
    match hostrole_agent_core::users::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn check(manifests: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for path in manifests {
        match manifest::load(path) {
            Ok(hostroles) => {
                for hr in hostroles {
                    println!(
                        "{}: HostRole {} is valid",
                        path.display(),
                        hr.metadata.name.unwrap_or_default()
                    );
                }
            }
            Err(e) => {
                ok = false;
                eprintln!("{e}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn serve(config: AgentConfig, print_urls: bool) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let name = config.host_role.clone();
    let has_clients = !config.clients.is_empty();
    let result = runtime.block_on(supervisor::run(
        config,
        CancellationToken::new(),
        |started| {
            if print_urls {
                println!("hostrole-agent: {name} is up");
                for (label, addr) in &started.roles {
                    println!(
                        "  {:<6} {}",
                        label.trim_end_matches("+tls"),
                        url(label, addr)
                    );
                }
                println!("  admin  http://{}/readyz", started.admin);
                if has_clients {
                    println!("  client results: http://{}/clients", started.admin);
                }
                println!("Stop with Ctrl-C.");
            }
        },
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The last line names the role, for the operator (status.hosts[].roles) and for people.
        Err(e) => match e.role() {
            Some(role) => {
                eprintln!(
                    "{}",
                    hostrole_config::role_failure_line(role, &e.to_string())
                );
                ExitCode::FAILURE
            }
            None => fail(&e),
        },
    }
}

/// How a person reaches a listener: a URL for HTTP roles, `scheme://host:port` otherwise.
fn url(label: &str, addr: &std::net::SocketAddr) -> String {
    match label {
        "web" | "web-redirect" | "file" | "index" | "peer" | "peer-ui" => format!("http://{addr}/"),
        "web+tls" | "file+tls" | "index+tls" | "peer+tls" => format!("https://{addr}/"),
        // The status page lists the mounts and their URLs.
        "radio" => format!("http://{addr}/status-json.xsl"),
        "radio+tls" => format!("https://{addr}/status-json.xsl"),
        // The printer URI to add it with (`lpadmin -v`, a system's "add printer" dialog).
        "ipp" | "ipps" => format!("{label}://{addr}/ipp/print"),
        other => format!("{other}://{addr}"),
    }
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn a_listener_with_tls_is_printed_as_an_https_url() {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 7001));
        for label in ["web+tls", "file+tls", "index+tls", "peer+tls"] {
            assert_eq!(url(label, &addr), "https://127.0.0.1:7001/", "{label}");
        }
        for label in ["web", "index", "peer", "peer-ui"] {
            assert_eq!(url(label, &addr), "http://127.0.0.1:7001/", "{label}");
        }
        assert_eq!(
            url("radio+tls", &addr),
            "https://127.0.0.1:7001/status-json.xsl"
        );
        assert_eq!(url("imaps", &addr), "imaps://127.0.0.1:7001");
        assert_eq!(url("ipps", &addr), "ipps://127.0.0.1:7001/ipp/print");
    }
}
