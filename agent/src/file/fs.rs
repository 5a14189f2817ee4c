//! The share's filesystem: dav-server's `LocalFs`, except that writes go to a staging file that is
//! fsynced and renamed over the target only when the upload is complete. A reader never sees a
//! partial file, and an upload cut short (client gone, crash) leaves nothing in the share.
//! Writes also enforce the share's quota (507) and the largest upload (413).

use hostrole_agent_core::metrics::{Direction, Reason};
use std::io::SeekFrom;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes};
use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, DavProp, FsError, FsFuture, FsResult,
    FsStream, OpenOptions, ReadDirMeta,
};
use dav_server::localfs::LocalFs;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::props::{self, PROPS};
use hostrole_agent_core::fsutil::TreeUsage;
use hostrole_agent_core::metrics::AgentMetrics;

/// Top-level directory of the share where uploads are staged; hidden from clients.
pub const STAGING: &str = ".hostrole-uploads";

/// Limits on writes.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub quota_bytes: Option<u64>,
    pub max_upload_bytes: u64,
}

/// How long a walk of the share stands for its usage (uploads and copies through the role are
/// added meanwhile). Walking a share is linear in its files: once per write made a share of many
/// small files quadratic to fill.
const USAGE_FRESH: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct ShareFs {
    inner: Box<LocalFs>,
    root: Arc<PathBuf>,
    limits: Limits,
    metrics: AgentMetrics,
    usage: Arc<TreeUsage>,
    props: props::Store,
}

impl ShareFs {
    /// A share over `root` (which must exist). Clears upload leftovers of a previous run.
    pub fn new(root: PathBuf, limits: Limits, metrics: AgentMetrics) -> std::io::Result<Self> {
        let staging = root.join(STAGING);
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        std::fs::create_dir_all(&staging)?;
        Ok(Self {
            inner: LocalFs::new(&root, false, false, false),
            usage: hostrole_agent_core::fsutil::tree_usage(&root),
            root: Arc::new(root),
            limits,
            metrics,
            props: props::Store::new(staging),
        })
    }

    fn real(&self, path: &DavPath) -> PathBuf {
        self.root.join(path.as_rel_ospath())
    }

    /// Where the dead properties of `path` are kept (see `props`), judged by what it is now.
    async fn props_location(&self, path: &DavPath) -> FsResult<PathBuf> {
        let meta = tokio::fs::metadata(self.real(path)).await?;
        props::location(&self.root, path.as_rel_ospath(), meta.is_dir()).ok_or(FsError::Forbidden)
    }

    /// Bytes the share holds now (the staging area excluded).
    fn used_bytes(&self) -> u64 {
        hostrole_agent_core::fsutil::tree_bytes(&self.root, Some(&self.root.join(STAGING)))
    }

    /// Bytes the share holds: the last walk plus what the role wrote since, while the walk is
    /// younger than [`USAGE_FRESH`]; else a new walk, off the async threads. A write that the
    /// remembered figure would refuse (`need` more bytes over the quota) walks again first, so a
    /// client that just deleted files to make room is not refused on a stale count.
    async fn used(&self, need: u64) -> FsResult<u64> {
        let fits = |used: u64| {
            self.limits
                .quota_bytes
                .is_none_or(|quota| used.saturating_add(need) <= quota)
        };
        if let Some(used) = self.usage.fresh(USAGE_FRESH)
            && fits(used)
        {
            return Ok(used);
        }
        let share = self.clone();
        let walked = tokio::task::spawn_blocking(move || share.used_bytes())
            .await
            .map_err(|_| FsError::GeneralFailure)?;
        self.usage.walked(walked);
        Ok(walked)
    }

    async fn open_for_write(
        &self,
        path: &DavPath,
        options: OpenOptions,
    ) -> FsResult<Box<dyn DavFile>> {
        let target = self.real(path);
        let existing = tokio::fs::metadata(&target).await.ok();
        match &existing {
            Some(m) if m.is_dir() => return Err(FsError::Forbidden),
            Some(_) if options.create_new => return Err(FsError::Exists),
            None if !options.create && !options.create_new => return Err(FsError::NotFound),
            _ => {}
        }
        if !target.parent().is_some_and(Path::is_dir) {
            return Err(FsError::NotFound);
        }
        // The new content replaces the old: what the old file holds does not count against it.
        let replaced = existing.as_ref().map_or(0, std::fs::Metadata::len);
        let room = match self.limits.quota_bytes {
            Some(quota) => {
                let need = options.size.unwrap_or(0).saturating_sub(replaced);
                let used = self.used(need).await?;
                quota.saturating_sub(used.saturating_sub(replaced))
            }
            None => u64::MAX,
        };
        if let Some(size) = options.size {
            if size > self.limits.max_upload_bytes {
                self.metrics.error(super::ROLE, Reason::UploadTooLarge);
                return Err(FsError::TooLarge);
            }
            if size > room {
                self.metrics.error(super::ROLE, Reason::QuotaExceeded);
                return Err(FsError::InsufficientStorage);
            }
        }
        let staging = self.root.join(STAGING).join(random_name());
        let mut file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&staging)
            .await?;
        let mut written = 0;
        if existing.is_some() && !options.truncate {
            // A partial update (Content-Range) starts from the current content.
            let mut old = tokio::fs::File::open(&target).await?;
            written = tokio::io::copy(&mut old, &mut file).await?;
            if options.append {
                file.seek(SeekFrom::End(0)).await?;
            } else {
                file.seek(SeekFrom::Start(0)).await?;
            }
        }
        // A new file starts without properties, even if a file of that name once had some.
        let stale_props = existing
            .is_none()
            .then(|| props::location(&self.root, path.as_rel_ospath(), false))
            .flatten();
        Ok(Box::new(StagedFile {
            file,
            staging: Some(staging),
            stale_props,
            target,
            written,
            replaced,
            room,
            max_upload: self.limits.max_upload_bytes,
            metrics: self.metrics.clone(),
            usage: self.usage.clone(),
        }))
    }
}

/// A random name for a file in the staging area.
pub fn random_name() -> String {
    format!("{:016x}{:016x}", fastrand_u64(), fastrand_u64())
}

fn fastrand_u64() -> u64 {
    let mut b = [0u8; 8];
    // Randomness only names a staging file; a failure falls back to the clock.
    if getrandom::fill(&mut b).is_err() {
        return SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    u64::from_le_bytes(b)
}

impl DavFileSystem for ShareFs {
    fn open<'a>(
        &'a self,
        path: &'a DavPath,
        options: OpenOptions,
    ) -> FsFuture<'a, Box<dyn DavFile>> {
        if options.write || options.append || options.create || options.create_new {
            Box::pin(self.open_for_write(path, options))
        } else {
            self.inner.open(path, options)
        }
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        meta: ReadDirMeta,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        let at_root = path.as_rel_ospath().as_os_str().is_empty();
        Box::pin(async move {
            let entries = self.inner.read_dir(path, meta).await?;
            // The role's own names are no client's entries (nor copied or deleted as theirs).
            let visible = entries.filter(move |e| {
                let hidden = e.as_ref().is_ok_and(|e| {
                    let name = e.name();
                    name == PROPS.as_bytes() || (at_root && name == STAGING.as_bytes())
                });
                std::future::ready(!hidden)
            });
            Ok(Box::pin(visible) as FsStream<Box<dyn DavDirEntry>>)
        })
    }

    fn metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        self.inner.metadata(path)
    }

    fn symlink_metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        self.inner.symlink_metadata(path)
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        self.inner.create_dir(path)
    }

    /// A collection goes with its properties (those of its own and of its entries, which are
    /// gone by now: dav-server removes the entries first).
    fn remove_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        Box::pin(async move {
            let dir = self.real(path);
            let mut entries = tokio::fs::read_dir(&dir).await?;
            let mut only_props = true;
            while let Some(entry) = entries.next_entry().await? {
                only_props &= entry.file_name() == PROPS;
            }
            if only_props {
                let _guard = self.props.writer().await;
                match tokio::fs::remove_dir_all(dir.join(PROPS)).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
            self.inner.remove_dir(path).await
        })
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        Box::pin(async move {
            let location = props::location(&self.root, path.as_rel_ospath(), false);
            self.inner.remove_file(path).await?;
            if let Some(location) = location {
                let _guard = self.props.writer().await;
                self.props.remove(&location).await?;
            }
            Ok(())
        })
    }

    /// A file's properties are moved with it; a collection's travel inside it.
    fn rename<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        Box::pin(async move {
            let is_dir = tokio::fs::symlink_metadata(self.real(from))
                .await
                .is_ok_and(|m| m.is_dir());
            self.inner.rename(from, to).await?;
            if !is_dir
                && let (Some(old), Some(new)) = (
                    props::location(&self.root, from.as_rel_ospath(), false),
                    props::location(&self.root, to.as_rel_ospath(), false),
                )
            {
                let _guard = self.props.writer().await;
                self.props.rename(&old, &new).await?;
            }
            Ok(())
        })
    }

    /// dav-server calls this for files only (it creates collections itself): the file and its
    /// properties.
    fn copy<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        // A copy grows the share like an upload does.
        Box::pin(async move {
            if let Some(quota) = self.limits.quota_bytes {
                let size = tokio::fs::metadata(self.real(from))
                    .await
                    .map(|m| m.len())
                    .unwrap_or(0);
                let used = self.used(size).await?;
                if used.saturating_add(size) > quota {
                    self.metrics.error(super::ROLE, Reason::QuotaExceeded);
                    return Err(FsError::InsufficientStorage);
                }
                self.inner.copy(from, to).await?;
                self.usage.grew(size, 0);
            } else {
                self.inner.copy(from, to).await?;
            }
            if let (Some(src), Some(dst)) = (
                props::location(&self.root, from.as_rel_ospath(), false),
                props::location(&self.root, to.as_rel_ospath(), false),
            ) {
                let _guard = self.props.writer().await;
                self.props.copy(&src, &dst).await?;
            }
            Ok(())
        })
    }

    fn have_props<'a>(
        &'a self,
        _path: &'a DavPath,
    ) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(std::future::ready(true))
    }

    /// Dead properties, kept beside the files (`props`). All or nothing: a patch that would not
    /// fit ([`props::MAX_BYTES`] per resource, or the quota) changes nothing (507 for each).
    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
    ) -> FsFuture<'a, Vec<(http::StatusCode, DavProp)>> {
        Box::pin(async move {
            let location = self.props_location(path).await?;
            let _guard = self.props.writer().await;
            let before = self.props.read(&location).await?;
            let old_len = props::encode(&before).len();
            let (after, statuses) = props::apply(before, &patch);
            let new_len = props::encode(&after).len();
            let failed = statuses.iter().any(|s| !s.is_success());
            let grows = new_len.saturating_sub(old_len) as u64;
            let too_big = new_len > props::MAX_BYTES
                || match self.limits.quota_bytes {
                    Some(quota) if grows > 0 => {
                        self.used(grows).await?.saturating_add(grows) > quota
                    }
                    _ => false,
                };
            let answer = |fail: http::StatusCode| {
                patch
                    .iter()
                    .zip(&statuses)
                    .map(|((_, p), s)| {
                        let status = if s.is_success() { fail } else { *s };
                        (
                            status,
                            DavProp {
                                xml: None,
                                ..p.clone()
                            },
                        )
                    })
                    .collect::<Vec<_>>()
            };
            if too_big {
                self.metrics.error(super::ROLE, Reason::QuotaExceeded);
                return Ok(answer(http::StatusCode::INSUFFICIENT_STORAGE));
            }
            if failed {
                // RFC 4918 9.2: all instructions succeed, or none.
                return Ok(answer(http::StatusCode::FAILED_DEPENDENCY));
            }
            self.props.write(&location, &after).await?;
            self.usage.grew(grows, 0);
            Ok(answer(http::StatusCode::OK))
        })
    }

    fn get_props<'a>(&'a self, path: &'a DavPath, do_content: bool) -> FsFuture<'a, Vec<DavProp>> {
        Box::pin(async move {
            let location = self.props_location(path).await?;
            let stored = self.props.read(&location).await?;
            Ok(stored.iter().map(|p| p.to_prop(do_content)).collect())
        })
    }

    fn get_prop<'a>(&'a self, path: &'a DavPath, prop: DavProp) -> FsFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let location = self.props_location(path).await?;
            let stored = self.props.read(&location).await?;
            stored
                .into_iter()
                .find(|p| p.name == prop.name && p.namespace == prop.namespace)
                .map(|p| p.xml.into_bytes())
                .ok_or(FsError::NotFound)
        })
    }

    fn get_quota(&self) -> FsFuture<'_, (u64, Option<u64>)> {
        Box::pin(async move {
            let used = self.used(0).await?;
            Ok((used, self.limits.quota_bytes))
        })
    }
}

/// An upload in progress: a staging file renamed over the target by `flush`.
#[derive(Debug)]
struct StagedFile {
    file: tokio::fs::File,
    /// `None` once committed.
    staging: Option<PathBuf>,
    /// Properties a former file of this name may have left (removed when a new file lands).
    stale_props: Option<PathBuf>,
    target: PathBuf,
    written: u64,
    /// Size of the file this upload replaces (0 for a new one).
    replaced: u64,
    room: u64,
    max_upload: u64,
    metrics: AgentMetrics,
    usage: Arc<TreeUsage>,
}

impl StagedFile {
    async fn write(&mut self, bytes: Bytes) -> FsResult<()> {
        let after = self.written.saturating_add(bytes.len() as u64);
        if after > self.max_upload {
            self.metrics.error(super::ROLE, Reason::UploadTooLarge);
            return Err(FsError::TooLarge);
        }
        if after > self.room {
            self.metrics.error(super::ROLE, Reason::QuotaExceeded);
            return Err(FsError::InsufficientStorage);
        }
        self.file.write_all(&bytes).await?;
        self.written = after;
        self.metrics
            .moved(super::ROLE, Direction::In, bytes.len() as u64);
        Ok(())
    }
}

impl DavFile for StagedFile {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        Box::pin(async move {
            let meta = self.file.metadata().await?;
            Ok(Box::new(Meta::from(&meta)) as Box<dyn DavMetaData>)
        })
    }

    fn write_buf(&mut self, mut buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        Box::pin(self.write(bytes))
    }

    fn write_bytes(&mut self, buf: Bytes) -> FsFuture<'_, ()> {
        Box::pin(self.write(buf))
    }

    fn read_bytes(&mut self, count: usize) -> FsFuture<'_, Bytes> {
        Box::pin(async move {
            let mut buf = vec![0; count];
            let n = self.file.read(&mut buf).await?;
            buf.truncate(n);
            Ok(Bytes::from(buf))
        })
    }

    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        Box::pin(async move { Ok(self.file.seek(pos).await?) })
    }

    /// The upload is complete: make it durable, then visible in one step. The whole commit
    /// (fsync, rename, removing stale properties, fsync of the directory) is one trip to the
    /// blocking pool instead of five.
    fn flush(&mut self) -> FsFuture<'_, ()> {
        Box::pin(async move {
            let Some(staging) = self.staging.clone() else {
                return Ok(());
            };
            self.file.flush().await?;
            let file = std::fs::File::from(self.file.as_fd().try_clone_to_owned()?);
            let target = self.target.clone();
            let stale = self.stale_props.take();
            let (renamed, outcome) =
                tokio::task::spawn_blocking(move || commit(file, &staging, &target, stale))
                    .await
                    .map_err(std::io::Error::other)?;
            if renamed {
                self.staging = None;
                self.usage.grew(self.written, self.replaced);
            }
            Ok(outcome?)
        })
    }
}

/// Makes a staged upload durable and visible: fsync, rename over the target, remove the
/// properties a former file left, fsync the directory (the rename is durable once it is).
/// Returns whether the rename happened, and how the rest went.
fn commit(
    file: std::fs::File,
    staging: &Path,
    target: &Path,
    stale: Option<PathBuf>,
) -> (bool, std::io::Result<()>) {
    if let Err(e) = file
        .sync_all()
        .and_then(|()| std::fs::rename(staging, target))
    {
        return (false, Err(e));
    }
    let rest = (|| {
        if let Some(stale) = stale {
            match std::fs::remove_file(&stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        match target.parent() {
            Some(parent) => hostrole_agent_core::fsutil::sync_dir(parent),
            None => Ok(()),
        }
    })();
    (true, rest)
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if let Some(staging) = self.staging.take() {
            // An upload that never completed leaves nothing behind.
            let _ = std::fs::remove_file(staging);
        }
    }
}

/// Metadata of a staged file.
#[derive(Debug, Clone)]
struct Meta {
    len: u64,
    modified: Option<SystemTime>,
    is_dir: bool,
}

impl From<&std::fs::Metadata> for Meta {
    fn from(m: &std::fs::Metadata) -> Self {
        Self {
            len: m.len(),
            modified: m.modified().ok(),
            is_dir: m.is_dir(),
        }
    }
}

impl DavMetaData for Meta {
    fn len(&self) -> u64 {
        self.len
    }

    fn modified(&self) -> FsResult<SystemTime> {
        self.modified.ok_or(FsError::GeneralFailure)
    }

    fn is_dir(&self) -> bool {
        self.is_dir
    }
}
