//! Downloads: every chunk fetched in parallel from every peer that holds the resource, verified
//! on arrival (BLAKE3 per chunk), written into `.hostrole/partial/<hash>.part` and logged in
//! `<hash>.have` so a restart resumes; a peer that sends a bad chunk is skipped for that
//! resource and the chunk is fetched from another. When every chunk is in, the file is fsynced,
//! its whole hash checked, and it is renamed into the share (as `name (2)` when a different
//! file already has the name) and served onward at once. Verified chunks of a download in
//! progress are served too, and peers holding some chunks are sources for those (swarming).

use hostrole_agent_core::metrics::{Direction, Reason};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use super::catalog::{self, free_name, safe_name};
use super::swarm::{ChunkMap, Partial, partial_sources, shuffled};
use super::{Shared, discovery};
use crate::wire::{Holder, Resource};

/// Folder of partial downloads inside the state folder.
pub const PARTIAL: &str = "partial";
/// Chunk requests in flight to one peer at once.
const PER_PEER: usize = 4;
/// Failed requests in a row after which a worker stops using its peer (until the next refresh).
const PEER_FAILURES: u32 = 3;
/// How long a worker waits after its peer answered "busy" (every upload slot taken): the
/// server's `Retry-After`.
const BUSY_WAIT: Duration = Duration::from_secs(1);
/// A download with nothing to fetch from for this long fails.
const GIVE_UP: Duration = Duration::from_secs(120);
/// An unattended download that failed is tried again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// A download's state, as `/api/downloads` shows it.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Complete,
    Failed,
}

/// One download, as `/api/downloads` shows it.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub hash: String,
    pub name: String,
    pub size: u64,
    pub bytes_done: u64,
    pub chunks_done: u64,
    pub chunks_total: u64,
    pub state: State,
    /// Verified chunks by the peer that supplied them.
    pub sources: BTreeMap<String, u64>,
    /// Chunks that failed verification, by the peer that sent them.
    pub rejected: BTreeMap<String, u64>,
    /// Where the file landed in the share (differs from `name` when the name was taken).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_as: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    ended: Option<Instant>,
}

/// Why a download cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("quota exceeded: {name} needs {size} bytes, the share holds {used} of {quota} bytes")]
    QuotaExceeded {
        name: String,
        size: u64,
        used: u64,
        quota: u64,
    },
    #[error("no peer of the network offers a resource with hash {0}")]
    NotFound(String),
    #[error("the resource's name {0:?} is not a plain relative path")]
    BadName(String),
    #[error("the resource's chunk list does not match its size")]
    Inconsistent,
}

/// What [`start`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Started {
    New,
    AlreadyRunning,
    AlreadyLocal,
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
enum DownloadError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no peer could supply the missing chunks for {0:?}")]
    NoSources(Duration),
    #[error("the assembled file's hash {got} is not the announced {want}")]
    HashMismatch { got: String, want: String },
    #[error("the agent is stopping (the download resumes at the next start)")]
    Stopped,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DownloadError {
    let what = what.into();
    move |source| DownloadError::Io { what, source }
}

/// Starts downloading `resource` unless it is here or on its way.
pub fn start(shared: &Arc<Shared>, resource: Resource) -> Result<Started, StartError> {
    start_inner(shared, resource, true)
}

fn start_inner(
    shared: &Arc<Shared>,
    resource: Resource,
    check_quota: bool,
) -> Result<Started, StartError> {
    if !resource.consistent() {
        return Err(StartError::Inconsistent);
    }
    if safe_name(&resource.name).is_none() {
        return Err(StartError::BadName(resource.name));
    }
    if shared.catalog.by_hash(&resource.hash).is_some() {
        return Ok(Started::AlreadyLocal);
    }
    let Ok(mut downloads) = shared.downloads.records.lock() else {
        return Ok(Started::AlreadyRunning);
    };
    if downloads
        .get(&resource.hash)
        .is_some_and(|r| r.state == State::Running)
    {
        return Ok(Started::AlreadyRunning);
    }
    if check_quota && let Some(quota) = shared.settings.quota {
        let used = shared.used_bytes();
        if used.saturating_add(resource.size) > quota {
            shared.agent.error(super::ROLE, Reason::QuotaExceeded);
            return Err(StartError::QuotaExceeded {
                name: resource.name,
                size: resource.size,
                used,
                quota,
            });
        }
    }
    downloads.insert(
        resource.hash.clone(),
        Record {
            hash: resource.hash.clone(),
            name: resource.name.clone(),
            size: resource.size,
            bytes_done: 0,
            chunks_done: 0,
            chunks_total: resource.chunks.len() as u64,
            state: State::Running,
            sources: BTreeMap::new(),
            rejected: BTreeMap::new(),
            saved_as: None,
            error: None,
            ended: None,
        },
    );
    drop(downloads);
    shared.metrics.downloads_active.inc();
    tracing::info!(name = %resource.name, hash = %resource.hash, size = resource.size, "download started");
    tokio::spawn(run(shared.clone(), resource));
    Ok(Started::New)
}

/// `fetch`/`mirror`: starts a download unless one ran recently; errors are logged.
pub fn start_unattended(shared: &Arc<Shared>, resource: Resource) {
    let recent_failure = shared.downloads.records.lock().ok().is_some_and(|d| {
        d.get(&resource.hash).is_some_and(|r| {
            r.state == State::Complete || r.ended.is_some_and(|t| t.elapsed() < RETRY_AFTER)
        })
    });
    if recent_failure {
        return;
    }
    let (hash, name, size, total) = (
        resource.hash.clone(),
        resource.name.clone(),
        resource.size,
        resource.chunks.len() as u64,
    );
    if let Err(e) = start(shared, resource) {
        tracing::warn!(error = %e, "cannot start an unattended download");
        // Kept as a failed download: the UI shows why, and it is tried again only later.
        if let Ok(mut d) = shared.downloads.records.lock() {
            d.insert(
                hash.clone(),
                Record {
                    hash,
                    name,
                    size,
                    bytes_done: 0,
                    chunks_done: 0,
                    chunks_total: total,
                    state: State::Failed,
                    sources: BTreeMap::new(),
                    rejected: BTreeMap::new(),
                    saved_as: None,
                    error: Some(e.to_string()),
                    ended: Some(Instant::now()),
                },
            );
        }
    }
}

/// Starts again the downloads a previous run left in `.hostrole/partial/`.
pub fn resume(shared: &Arc<Shared>) {
    let dir = shared.state_dir().join(PARTIAL);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let resource: Option<Resource> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match resource {
            Some(r) => {
                tracing::info!(name = %r.name, "resuming a partial download");
                if let Err(e) = start_inner(shared, r, false) {
                    tracing::warn!(error = %e, "cannot resume a partial download");
                }
            }
            None => tracing::warn!(file = %path.display(), "unreadable partial download record"),
        }
    }
}

/// A snapshot of every download, newest state first by name.
pub fn records(shared: &Shared) -> Vec<Record> {
    shared
        .downloads
        .records
        .lock()
        .map(|d| d.values().cloned().collect())
        .unwrap_or_default()
}

fn update(shared: &Shared, hash: &str, f: impl FnOnce(&mut Record)) {
    if let Ok(mut d) = shared.downloads.records.lock()
        && let Some(r) = d.get_mut(hash)
    {
        f(r);
    }
}

async fn run(shared: Arc<Shared>, resource: Resource) {
    let result = transfer(&shared, &resource).await;
    if let Ok(mut p) = shared.downloads.partials.lock() {
        p.remove(&resource.hash);
    }
    shared.metrics.downloads_active.dec();
    match result {
        Ok(saved_as) => {
            tracing::info!(name = %resource.name, saved_as, "download complete");
            update(&shared, &resource.hash, |r| {
                r.state = State::Complete;
                r.saved_as = Some(saved_as);
                r.ended = Some(Instant::now());
            });
            shared.changed.notify_one();
        }
        Err(e) => {
            tracing::warn!(name = %resource.name, error = %e, "download failed");
            shared.agent.error(super::ROLE, Reason::DownloadFailed);
            update(&shared, &resource.hash, |r| {
                r.state = State::Failed;
                r.error = Some(e.to_string());
                r.ended = Some(Instant::now());
            });
        }
    }
}

/// One download's working state, shared by its workers.
struct Job {
    shared: Arc<Shared>,
    resource: Resource,
    part: Arc<std::fs::File>,
    have: Arc<Mutex<std::fs::File>>,
    pending: Mutex<VecDeque<u64>>,
    done: Arc<Mutex<Vec<bool>>>,
    banned: Mutex<HashSet<String>>,
}

impl Job {
    fn all_done(&self) -> bool {
        self.done
            .lock()
            .map(|d| d.iter().all(|x| *x))
            .unwrap_or(false)
    }

    fn pending_empty(&self) -> bool {
        self.pending.lock().map(|p| p.is_empty()).unwrap_or(true)
    }

    fn banned(&self, peer: &str) -> bool {
        self.banned.lock().map(|b| b.contains(peer)).unwrap_or(true)
    }

    fn give_back(&self, index: u64) {
        if let Ok(mut p) = self.pending.lock() {
            p.push_back(index);
        }
    }
}

fn partial_paths(shared: &Shared, hash: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = shared.state_dir().join(PARTIAL);
    (
        dir.join(format!("{hash}.part")),
        dir.join(format!("{hash}.json")),
        dir.join(format!("{hash}.have")),
    )
}

async fn transfer(shared: &Arc<Shared>, resource: &Resource) -> Result<String, DownloadError> {
    let (part_path, meta_path, have_path) = partial_paths(shared, &resource.hash);
    let prepared = {
        let resource = resource.clone();
        let (part_path, meta_path, have_path) =
            (part_path.clone(), meta_path.clone(), have_path.clone());
        tokio::task::spawn_blocking(move || prepare(&resource, &part_path, &meta_path, &have_path))
            .await
            .map_err(|e| io("preparing the partial file")(std::io::Error::other(e)))??
    };
    let (part, have, done) = prepared;
    let total = resource.chunks.len() as u64;
    let already: Vec<u64> = (0..total).filter(|i| done[*i as usize]).collect();
    update(shared, &resource.hash, |r| {
        r.chunks_done = already.len() as u64;
        r.bytes_done = already.iter().map(|i| resource.chunk_len(*i)).sum();
    });
    let job = Arc::new(Job {
        shared: shared.clone(),
        resource: resource.clone(),
        part: Arc::new(part),
        have: Arc::new(Mutex::new(have)),
        pending: Mutex::new(shuffled(
            (0..total).filter(|i| !done[*i as usize]).collect(),
        )),
        done: Arc::new(Mutex::new(done)),
        banned: Mutex::new(HashSet::new()),
    });
    if let Ok(mut p) = shared.downloads.partials.lock() {
        p.insert(
            resource.hash.clone(),
            Partial {
                path: part_path.clone(),
                resource: resource.clone(),
                done: job.done.clone(),
            },
        );
    }

    let mut workers: JoinSet<String> = JoinSet::new();
    let mut running: HashMap<String, usize> = HashMap::new();
    let mut sources: Vec<Holder> = Vec::new();
    // Peers with part of the resource, and which chunks they had at the last refresh.
    let mut partial: HashMap<String, (Holder, ChunkMap)> = HashMap::new();
    let mut refreshed: Option<Instant> = None;
    // Which known peers were asked for their chunk map at which refresh.
    let mut asked: HashMap<String, u64> = HashMap::new();
    let mut round = 0u64;
    let mut progress = Instant::now();
    let mut last_done = 0usize;
    while !job.all_done() {
        if shared.stop.is_cancelled() {
            workers.abort_all();
            return Err(DownloadError::Stopped);
        }
        let stale = refreshed.is_none_or(|t| {
            t.elapsed() >= shared.settings.heartbeat
                || (workers.is_empty() && t.elapsed() >= Duration::from_millis(500))
        });
        if stale {
            sources = discovery::sources(shared, &resource.hash)
                .await
                .map(|f| f.peers)
                .unwrap_or_default();
            round += 1;
            for (holder, have) in
                partial_sources(shared, resource, &sources, &mut asked, round).await
            {
                match partial.get(&holder.id) {
                    Some((_, map)) => {
                        if let Ok(mut m) = map.lock() {
                            *m = have;
                        }
                    }
                    None => {
                        partial.insert(holder.id.clone(), (holder, Arc::new(Mutex::new(have))));
                    }
                }
            }
            refreshed = Some(Instant::now());
        }
        let all = sources.iter().map(|s| (s.clone(), None)).chain(
            partial
                .values()
                .filter(|(h, _)| !sources.iter().any(|s| s.id == h.id))
                .map(|(h, m)| (h.clone(), Some(m.clone()))),
        );
        for (source, have) in all {
            if job.banned(&source.id) {
                continue;
            }
            let n = running.entry(source.id.clone()).or_default();
            while *n < PER_PEER && !job.pending_empty() {
                *n += 1;
                workers.spawn(worker(job.clone(), source.clone(), have.clone()));
            }
        }
        let done_now = job
            .done
            .lock()
            .map(|d| d.iter().filter(|x| **x).count())
            .unwrap_or(0);
        if done_now != last_done {
            last_done = done_now;
            progress = Instant::now();
        } else if workers.is_empty() && progress.elapsed() > GIVE_UP {
            return Err(DownloadError::NoSources(GIVE_UP));
        }
        tokio::select! {
            ended = workers.join_next(), if !workers.is_empty() => {
                if let Some(Ok(peer)) = ended
                    && let Some(n) = running.get_mut(&peer)
                {
                    *n = n.saturating_sub(1);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shared.stop.cancelled() => {}
        }
    }
    workers.abort_all();
    finish(shared, resource, &job, &part_path, &meta_path, &have_path).await
}

type Prepared = (std::fs::File, std::fs::File, Vec<bool>);

/// Opens (or creates) the partial file and its log, and re-verifies the chunks the log names.
fn prepare(
    resource: &Resource,
    part_path: &Path,
    meta_path: &Path,
    have_path: &Path,
) -> Result<Prepared, DownloadError> {
    if !meta_path.exists() {
        let meta = serde_json::to_vec(resource).map_err(|e| io("encoding")(e.into()))?;
        std::fs::write(meta_path, meta).map_err(io(format!("writing {}", meta_path.display())))?;
    }
    let part = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part_path)
        .map_err(io(format!("opening {}", part_path.display())))?;
    part.set_len(resource.size)
        .map_err(io(format!("sizing {}", part_path.display())))?;
    let mut done = vec![false; resource.chunks.len()];
    if let Ok(log) = std::fs::read_to_string(have_path) {
        for index in log.lines().filter_map(|l| l.trim().parse::<u64>().ok()) {
            let Some(want) = resource.chunks.get(index as usize) else {
                continue;
            };
            let len = resource.chunk_len(index) as usize;
            let mut buf = vec![0u8; len];
            if part
                .read_exact_at(&mut buf, index * resource.chunk_size)
                .is_ok()
                && blake3::hash(&buf).to_hex().as_str() == want
            {
                done[index as usize] = true;
            }
        }
    }
    let have = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(have_path)
        .map_err(io(format!("opening {}", have_path.display())))?;
    Ok((part, have, done))
}

/// The next chunk to ask a source for: the first pending one, or for a partial source the
/// first pending one it has (`have`).
fn next_chunk(pending: &mut VecDeque<u64>, have: Option<&[bool]>) -> Option<u64> {
    match have {
        None => pending.pop_front(),
        Some(map) => {
            let at = pending
                .iter()
                .position(|i| map.get(*i as usize).copied().unwrap_or(false))?;
            pending.remove(at)
        }
    }
}

/// Whether an answer is chunk `index` of `resource`: its length, its BLAKE3 (the catalog's),
/// and what its sender signed (the same hash).
fn chunk_ok(resource: &Resource, index: u64, answer: &super::client::Answer) -> bool {
    let Some(want) = resource.chunks.get(index as usize) else {
        return false;
    };
    answer.bytes.len() as u64 == resource.chunk_len(index)
        && hostrole_proto::envelope::hex(&answer.digest) == *want
        && answer.signed == answer.digest
}

/// Fetches chunks from one peer until there is nothing left, the peer sent a bad chunk, or it
/// failed too often. Returns the peer's id.
async fn worker(job: Arc<Job>, source: Holder, have: Option<ChunkMap>) -> String {
    let shared = &job.shared;
    let mut failures = 0;
    let mut idle = 0;
    loop {
        let Ok(permit) = shared.slots.clone().acquire_owned().await else {
            break;
        };
        if job.banned(&source.id) || shared.stop.is_cancelled() {
            break;
        }
        let next = job.pending.lock().ok().and_then(|mut p| match &have {
            None => next_chunk(&mut p, None),
            Some(map) => next_chunk(&mut p, Some(&map.lock().ok()?)),
        });
        let Some(index) = next else {
            if have.is_none() || job.pending_empty() || idle >= 8 {
                break;
            }
            // Nothing this partial source has yet: wait for its map to be refreshed.
            idle += 1;
            drop(permit);
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        idle = 0;
        let url = match shared.client.peer_url(
            &source.address,
            &format!("/v1/chunks/{}/{index}", job.resource.hash),
        ) {
            Ok(u) => u,
            Err(e) => {
                job.give_back(index);
                tracing::debug!(peer = %source.id, error = %e, "not a peer address");
                break;
            }
        };
        let len = job.resource.chunk_len(index);
        shared.limits.download.take(len).await;
        let answer = match shared.client.get_chunk(&url, len, &source.id).await {
            Ok(a) => a,
            Err(e) if e.busy() => {
                // Its upload slots are taken: not a failure; other workers fetch the chunk from
                // other peers meanwhile, and this one asks again after the Retry-After. Nothing
                // came, so the download rate gets the bytes back.
                shared.limits.download.refund(len);
                job.give_back(index);
                drop(permit);
                tracing::debug!(peer = %source.id, "peer busy");
                tokio::time::sleep(BUSY_WAIT).await;
                continue;
            }
            Err(e) => {
                shared.limits.download.refund(len);
                job.give_back(index);
                failures += 1;
                tracing::debug!(peer = %source.id, error = %e, "chunk request failed");
                if failures >= PEER_FAILURES {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        shared
            .metrics
            .bytes_fetched
            .inc_by(answer.bytes.len() as u64);
        shared
            .agent
            .moved(super::ROLE, Direction::In, answer.bytes.len() as u64);
        // One BLAKE3 of the bytes serves both checks: the chunk is the catalog's, and it is what
        // the sender signed.
        let good = chunk_ok(&job.resource, index, &answer);
        let bytes = answer.bytes;
        if !good {
            shared.metrics.chunks_rejected.inc();
            shared.agent.error(super::ROLE, Reason::ChunkRejected);
            tracing::warn!(peer = %source.id, index, name = %job.resource.name, "chunk failed verification; skipping this peer for the resource");
            if let Ok(mut b) = job.banned.lock() {
                b.insert(source.id.clone());
            }
            update(shared, &job.resource.hash, |r| {
                *r.rejected.entry(source.id.clone()).or_default() += 1;
            });
            job.give_back(index);
            break;
        }
        failures = 0;
        let (part, have) = (job.part.clone(), job.have.clone());
        let offset = index * job.resource.chunk_size;
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            part.write_all_at(&bytes, offset)?;
            let mut log = have
                .lock()
                .map_err(|_| std::io::Error::other("log poisoned"))?;
            writeln!(log, "{index}")
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::warn!(index, "cannot write a chunk to the partial file");
            job.give_back(index);
            break;
        }
        shared.metrics.chunks_verified.inc();
        if let Ok(mut d) = job.done.lock() {
            d[index as usize] = true;
        }
        update(shared, &job.resource.hash, |r| {
            r.chunks_done += 1;
            r.bytes_done += len;
            *r.sources.entry(source.id.clone()).or_default() += 1;
        });
    }
    source.id
}

/// fsync, check the whole hash, and move the file into the share.
async fn finish(
    shared: &Arc<Shared>,
    resource: &Resource,
    job: &Job,
    part_path: &Path,
    meta_path: &Path,
    have_path: &Path,
) -> Result<String, DownloadError> {
    let part = job.part.clone();
    let (part_path, meta_path, have_path) = (
        part_path.to_path_buf(),
        meta_path.to_path_buf(),
        have_path.to_path_buf(),
    );
    let root = shared.settings.root.clone();
    let resource = resource.clone();
    let existing = shared
        .catalog
        .files()
        .into_iter()
        .find(|f| f.resource.name == resource.name)
        .map(|f| f.resource.hash);
    let saved = tokio::task::spawn_blocking(move || -> Result<String, DownloadError> {
        part.sync_all().map_err(io("fsync of the partial file"))?;
        let got = catalog::hash_whole(&part_path).map_err(io("hashing the partial file"))?;
        let cleanup = || {
            let _ = std::fs::remove_file(&meta_path);
            let _ = std::fs::remove_file(&have_path);
        };
        if got != resource.hash {
            let _ = std::fs::remove_file(&part_path);
            cleanup();
            return Err(DownloadError::HashMismatch {
                got,
                want: resource.hash.clone(),
            });
        }
        let rel = safe_name(&resource.name)
            .ok_or_else(|| io("naming")(std::io::Error::other("not a plain relative path")))?;
        if existing.as_deref() == Some(resource.hash.as_str()) {
            let _ = std::fs::remove_file(&part_path);
            cleanup();
            return Ok(resource.name.clone());
        }
        let target = free_name(&root, &rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating the target folder"))?;
        }
        std::fs::rename(&part_path, &target)
            .map_err(io(format!("moving the download to {}", target.display())))?;
        if let Some(parent) = target.parent()
            && let Ok(dir) = std::fs::File::open(parent)
        {
            let _ = dir.sync_all();
        }
        cleanup();
        Ok(target
            .strip_prefix(&root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default())
    })
    .await
    .map_err(|e| io("finishing")(std::io::Error::other(e)))??;
    if let Err(e) = shared.catalog.rescan().await {
        tracing::warn!(error = %e, "cannot rescan the share after a download");
    }
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::digest;
    use crate::peer::client::Answer;

    #[test]
    fn a_partial_source_is_asked_only_for_chunks_it_has() {
        let mut pending: VecDeque<u64> = [3, 1, 2].into_iter().collect();
        assert_eq!(
            next_chunk(&mut pending, Some(&[false, false, true, false])),
            Some(2)
        );
        assert_eq!(
            next_chunk(&mut pending, Some(&[true, false, false, false])),
            None
        );
        assert_eq!(next_chunk(&mut pending, None), Some(3));
        assert_eq!(pending, [1]);
    }

    #[test]
    fn a_chunk_must_match_the_catalog_and_the_signature() {
        let data = b"hello chunk".to_vec();
        let resource = Resource {
            name: "a".into(),
            size: data.len() as u64,
            hash: blake3::hash(&data).to_hex().to_string(),
            chunk_size: crate::wire::CHUNK_SIZE,
            chunks: vec![blake3::hash(&data).to_hex().to_string()],
        };
        let answer = |bytes: &[u8], signed: [u8; 32]| Answer {
            bytes: bytes::Bytes::copy_from_slice(bytes),
            digest: digest(bytes),
            signed,
            peer: None,
            not_modified: false,
        };
        assert!(chunk_ok(&resource, 0, &answer(&data, digest(&data))));
        assert!(!chunk_ok(
            &resource,
            0,
            &answer(b"hello chunK", digest(b"hello chunK"))
        ));
        assert!(
            !chunk_ok(&resource, 0, &answer(&data, [0; 32])),
            "signed for other bytes"
        );
        assert!(!chunk_ok(&resource, 1, &answer(&data, digest(&data))));
    }
}
