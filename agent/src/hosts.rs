//! `hostrole-agent up` with several hosts: each host's agent runs in this process (as it would
//! in its own), and the topology view ([`hostrole_view::server`]) draws them live from their
//! agents' state ([`crate::overview`]). When one host stops with an error, the others stop too:
//! the process exits with that error, naming the host.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hostrole_agent_core::net::{self, HttpLimits};
use hostrole_api::HostRole;
use hostrole_view::server::{self, EventRow, Shared, Source};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::overview::{self, HostNow};
use crate::standalone::Host;
use crate::supervisor::{self, AgentError, Started};

/// How often the view looks at the agents' state for changes (it sends pages only changes).
pub const VIEW_REFRESH: Duration = Duration::from_secs(1);

/// One host and, once it listens, its agent's live handles.
struct Slot {
    hostrole: HostRole,
    started: Mutex<Option<Started>>,
}

/// The running hosts, as the view reads them.
#[derive(Clone)]
pub struct LocalSource {
    slots: Arc<Vec<Slot>>,
}

impl LocalSource {
    fn new(hosts: &[Host]) -> Self {
        LocalSource {
            slots: Arc::new(
                hosts
                    .iter()
                    .map(|h| Slot {
                        hostrole: h.hostrole.clone(),
                        started: Mutex::new(None),
                    })
                    .collect(),
            ),
        }
    }

    fn set_started(&self, i: usize, started: &Started) {
        if let Some(slot) = self.slots.get(i)
            && let Ok(mut s) = slot.started.lock()
        {
            *s = Some(started.clone());
        }
    }
}

impl Source for LocalSource {
    fn hostroles(&self) -> Vec<Arc<HostRole>> {
        let now: Vec<Option<HostNow>> = self
            .slots
            .iter()
            .map(|slot| {
                let started = slot.started.lock().ok()?.clone()?;
                Some(HostNow {
                    roles: started.live.readiness.roles(),
                    stopping: started.live.readiness.is_stopping(),
                    clients: started.live.clients.snapshot(),
                    listeners: started.roles.clone(),
                })
            })
            .collect();
        let pairs: Vec<(&HostRole, Option<&HostNow>)> = self
            .slots
            .iter()
            .zip(&now)
            .map(|(slot, n)| (&slot.hostrole, n.as_ref()))
            .collect();
        overview::hostroles(&pairs)
            .into_iter()
            .map(Arc::new)
            .collect()
    }

    async fn events(&self, _namespace: &str, _name: &str) -> Result<Vec<EventRow>, String> {
        Err("a machine keeps no events: the agent's log (its terminal) says what happened".into())
    }
}

/// Why `up` with several hosts stopped.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("{host}: {source}")]
    Host {
        host: String,
        #[source]
        source: AgentError,
    },
    #[error(
        "cannot serve the view on {addr}: {source} (choose another --view-port, or 0 for none)"
    )]
    View {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs every host until SIGTERM/SIGINT or until one stops, serving the view on `view` when
/// given. `on_started(host, started)` is called as each host listens; `on_view(addr)` once
/// the view listens.
pub async fn run(
    hosts: Vec<Host>,
    view: Option<SocketAddr>,
    on_started: impl Fn(&Host, &Started) + Send + Sync + 'static,
    on_view: impl FnOnce(SocketAddr),
) -> Result<(), HostsError> {
    let source = LocalSource::new(&hosts);
    // The listeners' limits are the process's: the strictest of the hosts' apply to all (each
    // agent's own setting comes too late, the first one set wins).
    let limits = hosts
        .iter()
        .map(|h| HttpLimits::from_config(h.config.http.as_ref()))
        .reduce(HttpLimits::strictest)
        .unwrap_or_default();
    net::limits::configure(limits);
    let stop = CancellationToken::new();
    let view_task = match view {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| HostsError::View { addr, source })?;
            on_view(listener.local_addr().unwrap_or(addr));
            let (tx, changes) = watch::channel(0u64);
            let ticks = stop.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(VIEW_REFRESH);
                loop {
                    tokio::select! {
                        _ = ticks.cancelled() => break,
                        _ = every.tick() => tx.send_modify(|n| *n += 1),
                    }
                }
            });
            let app = server::router(Shared::new(source.clone(), changes));
            let view_stop = stop.clone();
            Some(tokio::spawn(server::serve(listener, app, view_stop)))
        }
        None => None,
    };
    let on_started = Arc::new(on_started);
    let mut agents = JoinSet::new();
    for (i, host) in hosts.into_iter().enumerate() {
        let stop = stop.clone();
        let source = source.clone();
        let on_started = on_started.clone();
        agents.spawn(async move {
            let name = host.hostrole.metadata.name.clone().unwrap_or_default();
            let result = supervisor::run(host.config.clone(), stop, |started| {
                source.set_started(i, started);
                on_started(&host, started);
            })
            .await;
            (name, result)
        });
    }
    let mut first_error = None;
    while let Some(ended) = agents.join_next().await {
        // One host ending (a signal, or a failure) ends them all.
        stop.cancel();
        if let Ok((host, Err(source))) = ended
            && first_error.is_none()
        {
            first_error = Some(HostsError::Host { host, source });
        }
    }
    stop.cancel();
    if let Some(task) = view_task {
        let _ = task.await;
    }
    first_error.map_or(Ok(()), Err)
}
