//! Prometheus metrics of the operator, served on `/metrics`.
//!
//! Every operator metric is named `hostrole_operator_…` (the agent's are `hostrole_agent_…`,
//! `hostrole_client_…`, `hostrole_peer_…`, `hostrole_index_…`), plus the standard `process_…`
//! metrics read from `/proc/self` on each scrape. Label values are fixed sets (kinds, verbs,
//! error reasons, `True`/`False`/`Unknown`) or the namespace and name of a HostRole, which the
//! API server has validated as DNS names; nothing a client of a host sends becomes a label.
//! The list, with types and labels, is [`NAMES`]; docs/observability.md explains them.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hostrole_api::HostRole;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The operator's metric prefix.
pub const PREFIX: &str = "hostrole_operator";

/// Every series name the operator exports (as scraped: counters end in `_total`, histograms
/// add `_bucket`, `_sum`, `_count`), with its type and labels. Dashboards and alerts may name
/// only these (or the agent's); `operator/tests/observability.rs` holds them to it.
pub const NAMES: &[(&str, &str, &[&str])] = &[
    (
        "hostrole_operator_build_info",
        "gauge",
        &["version", "revision"],
    ),
    ("hostrole_operator_reconciles_total", "counter", &[]),
    (
        "hostrole_operator_reconcile_errors_total",
        "counter",
        &["reason"],
    ),
    (
        "hostrole_operator_reconcile_duration_seconds",
        "histogram",
        &[],
    ),
    ("hostrole_operator_reconciles_in_flight", "gauge", &[]),
    (
        "hostrole_operator_api_writes_total",
        "counter",
        &["kind", "verb"],
    ),
    (
        "hostrole_operator_reads_total",
        "counter",
        &["kind", "source"],
    ),
    ("hostrole_operator_leader", "gauge", &[]),
    ("hostrole_operator_watch_errors_total", "counter", &[]),
    ("hostrole_operator_watches_ready", "gauge", &[]),
    (
        "hostrole_operator_hostrole_ready_status",
        "gauge",
        &["namespace", "name", "condition"],
    ),
    ("process_cpu_seconds_total", "counter", &[]),
    ("process_resident_memory_bytes", "gauge", &[]),
    ("process_virtual_memory_bytes", "gauge", &[]),
    ("process_open_fds", "gauge", &[]),
    ("process_max_fds", "gauge", &[]),
    ("process_threads", "gauge", &[]),
    ("process_start_time_seconds", "gauge", &[]),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: String,
    pub verb: String,
}

/// Where a reconcile read an object from.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReadSource {
    /// The operator's watch cache.
    Cache,
    /// The API server (a GET or LIST).
    Api,
}

impl prometheus_client::encoding::EncodeLabelValue for ReadSource {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            ReadSource::Cache => "cache",
            ReadSource::Api => "api",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadLabels {
    pub kind: &'static str,
    pub source: ReadSource,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    namespace: String,
    name: String,
    condition: &'static str,
}

/// The operator's version, and the source revision when the build was told it
/// (`HOSTROLE_REVISION` at compile time; `unknown` otherwise).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = match option_env!("HOSTROLE_REVISION") {
    Some(r) => r,
    None => "unknown",
};

/// The operator's metrics. Cheap to clone (each metric is reference-counted).
#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Counter,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub in_flight: Gauge,
    pub writes: Family<WriteLabels, Counter>,
    pub reads: Family<ReadLabels, Counter>,
    pub leader: Gauge,
    pub watch_errors: Counter,
    pub watches_ready: Gauge,
    build_info: Family<BuildLabels, Gauge>,
    ready_status: ReadyStatus,
}

impl Default for Metrics {
    fn default() -> Self {
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: VERSION,
                revision: REVISION,
            })
            .set(1);
        Self {
            reconciles: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            in_flight: Gauge::default(),
            writes: Family::default(),
            reads: Family::default(),
            leader: Gauge::default(),
            watch_errors: Counter::default(),
            watches_ready: Gauge::default(),
            build_info,
            ready_status: ReadyStatus::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric: the operator's under the `hostrole_operator` prefix, the
    /// process's under `process`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix(PREFIX);
        r.register(
            "build_info",
            "1, labelled with the operator's version and source revision",
            self.build_info.clone(),
        );
        r.register("reconciles", "Reconciliations run", self.reconciles.clone());
        r.register(
            "reconcile_errors",
            "Reconciliations that failed, by reason",
            self.failures.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time one reconciliation took",
            self.duration.clone(),
        );
        r.register(
            "reconciles_in_flight",
            "Reconciliations running now (at most --concurrency)",
            self.in_flight.clone(),
        );
        r.register(
            "api_writes",
            "Writes the operator sent to the API server, by kind and verb",
            self.writes.clone(),
        );
        r.register(
            "reads",
            "Objects reconciles read, by kind and by source: the watch cache, or the API server \
             (a name the cache cannot vouch for, or a cache not yet filled)",
            self.reads.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader lease",
            self.leader.clone(),
        );
        r.register(
            "watch_errors",
            "Errors of the controller's watches (API server unreachable, forbidden, expired)",
            self.watch_errors.clone(),
        );
        r.register(
            "watches_ready",
            "1 while the controller's watches are established and not failing (as /readyz)",
            self.watches_ready.clone(),
        );
        r.register_collector(Box::new(self.ready_status.clone()));
        registry.register_collector(Box::new(ProcessCollector));
    }

    /// Starts reporting the Ready condition of every HostRole in the controller's cache.
    pub fn watch_hostroles(&self, store: Store<HostRole>) {
        *self
            .ready_status
            .store
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(store);
    }

    pub fn reconciled(&self, took: Duration) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub fn failed(&self, reason: &str) {
        self.failures
            .get_or_create(&ErrorLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn read(&self, kind: &'static str, source: ReadSource) {
        self.reads.get_or_create(&ReadLabels { kind, source }).inc();
    }

    pub fn wrote(&self, kind: &str, verb: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.to_string(),
                verb: verb.to_string(),
            })
            .inc();
    }
}

/// `hostrole_operator_hostrole_ready_status{namespace, name, condition}`, as cert-manager's
/// `certmanager_certificate_ready_status`: for each HostRole, three series, the one whose
/// `condition` is the Ready condition's status (`True`, `False`, or `Unknown` when there is
/// none yet) at 1 and the other two at 0. Computed on each scrape from the controller's watch
/// cache, so a deleted HostRole's series go with it and there are never more than three per
/// HostRole the operator watches.
#[derive(Clone, Debug, Default)]
struct ReadyStatus {
    store: Arc<RwLock<Option<Store<HostRole>>>>,
}

const CONDITIONS: [&str; 3] = ["True", "False", "Unknown"];

/// The status of a HostRole's Ready condition: `True`, `False` or `Unknown`.
pub fn ready_condition(hr: &HostRole) -> &'static str {
    let status = hr
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    match status {
        Some("True") => "True",
        Some("False") => "False",
        _ => "Unknown",
    }
}

impl Collector for ReadyStatus {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family = Family::<ReadyLabels, Gauge>::default();
        let store = self
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for hr in store.map(|s| s.state()).unwrap_or_default() {
            let current = ready_condition(&hr);
            for condition in CONDITIONS {
                family
                    .get_or_create(&ReadyLabels {
                        namespace: hr.namespace().unwrap_or_default(),
                        name: hr.name_any(),
                        condition,
                    })
                    .set(i64::from(condition == current));
            }
        }
        let metric = encoder.encode_descriptor(
            "hostrole_ready_status",
            "The Ready condition of each HostRole: 1 on the series of its status (True, False, Unknown)",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}

/// The standard `process_…` metrics (as the Go and Python clients name them), read from
/// `/proc/self` on each scrape. prometheus-client has no process collector; on a system without
/// `/proc` the metrics are simply absent.
#[derive(Debug, Clone, Copy)]
struct ProcessCollector;

/// What `/proc/self` says of this process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<i64>,
    pub virtual_bytes: Option<i64>,
    pub open_fds: Option<i64>,
    pub max_fds: Option<i64>,
    pub threads: Option<i64>,
    pub start_time_seconds: Option<f64>,
}

/// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ): 100 on every Linux architecture's
/// user-space ABI.
const USER_HZ: f64 = 100.0;

impl ProcessStats {
    /// Reads `/proc/self/{stat,status,fd,limits}` and `/proc/stat`.
    pub fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as i64);
        Self {
            open_fds,
            ..Self::parse(&stat, &status, &limits, &boot)
        }
    }

    /// The pure part of [`Self::read`].
    pub fn parse(stat: &str, status: &str, limits: &str, proc_stat: &str) -> Self {
        // After the command (in parentheses, which may contain spaces): field 3 onwards.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let cpu_seconds = match (field(14), field(15)) {
            (Some(utime), Some(stime)) => Some((utime + stime) / USER_HZ),
            _ => None,
        };
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<i64>().ok())
        };
        let boot_time = proc_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        let start_time_seconds = match (boot_time, field(22)) {
            (Some(boot), Some(ticks)) => Some(boot + ticks / USER_HZ),
            _ => None,
        };
        let max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<i64>().ok());
        Self {
            cpu_seconds,
            resident_bytes: kib("VmRSS:").map(|k| k * 1024),
            virtual_bytes: kib("VmSize:").map(|k| k * 1024),
            open_fds: None,
            max_fds,
            threads: kib("Threads:"),
            start_time_seconds,
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = ProcessStats::read();
        if let Some(cpu) = stats.cpu_seconds {
            let counter = ConstCounter::new(cpu);
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(m)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                stats.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stats.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                stats.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                stats.max_fds,
            ),
            ("process_threads", "Number of OS threads", stats.threads),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let gauge = ConstGauge::new(v);
                let m = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(m)?;
            }
        }
        if let Some(start) = stats.start_time_seconds {
            let gauge = ConstGauge::new(start);
            let m = encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(m)?;
        }
        Ok(())
    }
}
