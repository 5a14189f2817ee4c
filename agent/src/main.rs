//! `hostrole-agent`: serve a host's roles from the operator's configuration (`run`), from a
//! HostRole manifest on any machine (`up`), or check manifests without serving (`check`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hostrole_agent::standalone::{self, Host, UpOptions, url};
use hostrole_agent::supervisor::Started;
use hostrole_agent::{config, hosts, supervisor};
use hostrole_agent_core::telemetry::{LogFormat, init_logs};
use hostrole_api::manifest;
use hostrole_api::rules::ADMIN_PORT;
use hostrole_config::AgentConfig;
use tokio_util::sync::CancellationToken;

/// Where `up` with several hosts serves the topology view (as `hostrole-operator view` does).
const VIEW_PORT: u16 = 8088;

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
        /// Which HostRole to serve (repeat for several); all of the manifest's when absent.
        #[arg(long = "name")]
        names: Vec<String>,
        /// Address to listen on; 0.0.0.0 serves the whole network.
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// Port of /healthz, /readyz and /metrics (several hosts: the first's; the next hosts
        /// take the next ports).
        #[arg(long, default_value_t = ADMIN_PORT as u16)]
        admin_port: u16,
        /// Several hosts: port of the live topology view on 127.0.0.1 (0: no view).
        #[arg(long, default_value_t = VIEW_PORT)]
        view_port: u16,
        /// Several hosts: open the view in the browser ($BROWSER, else xdg-open).
        #[arg(long)]
        open: bool,
        /// Where inline site files are written (default: ~/.local/state/hostrole/NAME).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Added to the index, peer, peer UI and printer ports: run a second peer of the same
        /// manifest (or a second peer network's printer) on this machine with
        /// `--port-offset 10 --admin-port 9911 --data-dir DIR`. Several hosts in one process:
        /// added to the peers' only, each next peer 10 further.
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
            names,
            bind,
            admin_port,
            view_port,
            open,
            data_dir,
            port_offset,
            seeds,
        } => {
            let options = UpOptions {
                manifest,
                names,
                bind,
                admin_port,
                data_dir,
                port_offset,
                seeds,
                view_port,
            };
            match standalone::prepare(&options) {
                Ok(mut hosts) if hosts.len() == 1 => match hosts.pop() {
                    Some(host) => serve(host.config, true),
                    None => fail(&"no host to serve"),
                },
                Ok(hosts) => {
                    let view = (view_port != 0)
                        .then(|| SocketAddr::new(Ipv4Addr::LOCALHOST.into(), view_port));
                    serve_hosts(hosts, view, open)
                }
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
                print_started(&name, has_clients, started);
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

/// Where a host that is up is reached.
fn print_started(name: &str, has_clients: bool, started: &Started) {
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
}

/// Several hosts in this process, and the view over them.
fn serve_hosts(hosts: Vec<Host>, view: Option<SocketAddr>, open: bool) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let names: Vec<String> = hosts
        .iter()
        .filter_map(|h| h.hostrole.metadata.name.clone())
        .collect();
    println!(
        "hostrole-agent: starting {} hosts: {}",
        names.len(),
        names.join(", ")
    );
    let result = runtime.block_on(hosts::run(
        hosts,
        view,
        |host, started| {
            print_started(
                &host.config.host_role,
                !host.config.clients.is_empty(),
                started,
            );
        },
        |addr| {
            let url = format!("http://{addr}/");
            println!("  view   {url} (the hosts live; Stop with Ctrl-C)");
            if open && let Err(e) = hostrole_view::open_browser(&url) {
                eprintln!("cannot open a browser ({e}): open {url} yourself");
            }
        },
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}
