//! The web role's file cache: the [`Backend`] under tower-http's `ServeDir`.
//!
//! `ServeDir` keeps the HTTP semantics (content types, index.html, ETag and Last-Modified with
//! conditional requests, Range, HEAD); this backend decides where the bytes come from. The
//! default backend goes through tokio's blocking pool for every `stat`, `open` and `read`, a
//! thread hand-off each, which the web benchmark's profile showed dominating a small-file request
//! (bench/results.md). Here a site's files are kept in memory:
//!
//! - a file of at most [`MAX_FILE_BYTES`] is read once and served from memory while the cache's
//!   total stays within its budget ([`DEFAULT_BUDGET_BYTES`]); larger files, and files beyond the
//!   budget, are opened from disk as before (their metadata is cached all the same);
//! - an entry is trusted for [`REVALIDATE_AFTER`], then checked again in one blocking step
//!   (canonical path, device, inode, size, mtime): a file changed in place, replaced, or swapped
//!   in by a ConfigMap update (the `..data` symlink) is reloaded; a removed one is forgotten;
//! - the check that a path does not leave the site through a symlink is part of that step, so a
//!   cached answer never skips it and a hit needs no system call at all.
//!
//! The window is the one nginx's `open_file_cache_valid` has (there 60 s by default): a change
//! on disk may be served up to [`REVALIDATE_AFTER`] late.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tower_http::services::fs::{Backend, File, Metadata};

/// Largest file kept in memory: a ConfigMap value or an inline file is at most 1 MiB.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most bytes kept in memory per site. A cluster site (ConfigMap or inline) is at most ~1 MiB in
/// all, far below this; a large standalone directory serves the rest from disk.
pub const DEFAULT_BUDGET_BYTES: u64 = 32 << 20;
/// How long a cached answer is trusted before the file is checked again.
pub const REVALIDATE_AFTER: Duration = Duration::from_secs(1);

/// The cache of one site root. Cheap to clone (shared).
#[derive(Clone)]
pub struct SiteCache {
    inner: Arc<Inner>,
}

struct Inner {
    /// Canonical site root: every served file must resolve inside it.
    root: PathBuf,
    budget: u64,
    max_file: u64,
    valid_for: Duration,
    table: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    entries: HashMap<PathBuf, Arc<Entry>>,
    /// Bytes held by `Content::Memory` entries.
    bytes: u64,
}

/// What is known about one requested path.
struct Entry {
    checked: Instant,
    identity: Identity,
    content: Content,
}

/// What must stay the same for an entry to stay valid.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Identity {
    canonical: PathBuf,
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
    is_dir: bool,
}

#[derive(Clone)]
enum Content {
    /// A directory, or a file served from disk.
    OnDisk,
    /// The whole file.
    Memory(Bytes),
}

impl Content {
    fn memory_bytes(&self) -> u64 {
        match self {
            Content::OnDisk => 0,
            Content::Memory(b) => b.len() as u64,
        }
    }
}

impl SiteCache {
    /// A cache for `canonical_root` with the default limits.
    pub fn new(canonical_root: PathBuf) -> Self {
        Self::with_limits(
            canonical_root,
            DEFAULT_BUDGET_BYTES,
            MAX_FILE_BYTES,
            REVALIDATE_AFTER,
        )
    }

    fn with_limits(root: PathBuf, budget: u64, max_file: u64, valid_for: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                root,
                budget,
                max_file,
                valid_for,
                table: RwLock::new(Table::default()),
            }),
        }
    }

    /// Bytes held in memory now.
    #[cfg(test)]
    fn memory_bytes(&self) -> u64 {
        self.inner.table.read().map(|t| t.bytes).unwrap_or(0)
    }

    /// The entry for `path` (a path `ServeDir` built under the root): from the table while
    /// fresh, else checked (and read, when it changed) in one blocking step.
    async fn entry(&self, path: PathBuf) -> io::Result<Arc<Entry>> {
        let previous = {
            let table = self
                .inner
                .table
                .read()
                .map_err(|_| io::Error::other("web cache lock poisoned"))?;
            table.entries.get(&path).cloned()
        };
        if let Some(entry) = &previous
            && entry.checked.elapsed() < self.inner.valid_for
        {
            return Ok(entry.clone());
        }
        let inner = self.inner.clone();
        let key = path.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            load(&inner.root, &key, previous.as_deref(), inner.max_file)
                .map_err(not_found_if_unservable)
        })
        .await
        .map_err(|e| io::Error::other(format!("web cache task: {e}")))?;
        self.store(path, loaded)
    }

    /// A small file's bytes from memory (such as the site's `404.html`), if it exists inside the
    /// site and fits the memory cache.
    pub async fn small_file(&self, path: PathBuf) -> Option<Bytes> {
        let entry = self.entry(path).await.ok()?;
        match &entry.content {
            Content::Memory(bytes) if !entry.identity.is_dir => Some(bytes.clone()),
            _ => None,
        }
    }

    /// Records a load's outcome and returns the entry to answer with.
    fn store(&self, path: PathBuf, loaded: io::Result<Entry>) -> io::Result<Arc<Entry>> {
        let mut table = self
            .inner
            .table
            .write()
            .map_err(|_| io::Error::other("web cache lock poisoned"))?;
        let held = table
            .entries
            .get(&path)
            .map(|e| e.content.memory_bytes())
            .unwrap_or(0);
        let mut entry = match loaded {
            Ok(entry) => entry,
            Err(e) => {
                if table.entries.remove(&path).is_some() {
                    table.bytes -= held;
                }
                return Err(e);
            }
        };
        let wanted = entry.content.memory_bytes();
        if table.bytes - held + wanted > self.inner.budget {
            // Over budget: this file is served from disk; its metadata is still cached.
            entry.content = Content::OnDisk;
        }
        table.bytes = table.bytes - held + entry.content.memory_bytes();
        let entry = Arc::new(entry);
        table.entries.insert(path, entry.clone());
        Ok(entry)
    }
}

/// Names no file can have (a segment of 256 bytes or more: ENAMETOOLONG) and symlink loops
/// (ELOOP) are "not found", not server errors: `ServeDir` answers any other error with a 500
/// and an error log line, which a client could cause at will.
fn not_found_if_unservable(e: io::Error) -> io::Error {
    const ENAMETOOLONG: i32 = 36;
    const ELOOP: i32 = 40;
    if matches!(e.raw_os_error(), Some(ENAMETOOLONG | ELOOP))
        || e.kind() == io::ErrorKind::InvalidFilename
    {
        io::Error::new(io::ErrorKind::NotFound, e)
    } else {
        e
    }
}

/// The blocking step: resolves `path`, refuses it when it leaves `root`, and reads it when it is
/// small and new or changed since `previous`.
fn load(root: &Path, path: &Path, previous: Option<&Entry>, max_file: u64) -> io::Result<Entry> {
    let canonical = std::fs::canonicalize(path)?;
    if !canonical.starts_with(root) {
        tracing::warn!(path = %path.display(), "refused a path that leaves the site through a symlink");
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the path leaves the site",
        ));
    }
    let meta = std::fs::metadata(&canonical)?;
    let identity = identity(canonical, &meta);
    if let Some(previous) = previous
        && previous.identity == identity
    {
        return Ok(Entry {
            checked: Instant::now(),
            identity,
            content: previous.content.clone(),
        });
    }
    let content = if meta.is_file() && meta.len() <= max_file {
        let bytes = std::fs::read(&identity.canonical)?;
        let after = std::fs::metadata(&identity.canonical)?;
        if bytes.len() as u64 == identity.len
            && self::identity(identity.canonical.clone(), &after) == identity
        {
            Content::Memory(Bytes::from(bytes))
        } else {
            // Written to while we read it: serve from disk until it settles.
            Content::OnDisk
        }
    } else {
        Content::OnDisk
    };
    Ok(Entry {
        checked: Instant::now(),
        identity,
        content,
    })
}

fn identity(canonical: PathBuf, meta: &std::fs::Metadata) -> Identity {
    Identity {
        canonical,
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        modified: meta.modified().ok(),
        is_dir: meta.is_dir(),
    }
}

/// Metadata from an entry (the same for `Backend::metadata` and an opened file).
#[derive(Clone, Debug)]
pub struct EntryMetadata {
    is_dir: bool,
    len: u64,
    modified: Option<SystemTime>,
}

impl From<&Identity> for EntryMetadata {
    fn from(i: &Identity) -> Self {
        Self {
            is_dir: i.is_dir,
            len: i.len,
            modified: i.modified,
        }
    }
}

impl Metadata for EntryMetadata {
    fn is_dir(&self) -> bool {
        self.is_dir
    }

    fn modified(&self) -> io::Result<SystemTime> {
        self.modified
            .ok_or_else(|| io::Error::other("no modification time"))
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// An opened file: the cached bytes, or the file on disk.
pub enum SiteFile {
    Memory(std::io::Cursor<Bytes>, EntryMetadata),
    Disk(tokio::fs::File),
}

impl AsyncRead for SiteFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SiteFile::Memory(cursor, _) => Pin::new(cursor).poll_read(cx, buf),
            SiteFile::Disk(file) => Pin::new(file).poll_read(cx, buf),
        }
    }
}

impl AsyncSeek for SiteFile {
    fn start_seek(self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        match self.get_mut() {
            SiteFile::Memory(cursor, _) => Pin::new(cursor).start_seek(position),
            SiteFile::Disk(file) => Pin::new(file).start_seek(position),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.get_mut() {
            SiteFile::Memory(cursor, _) => Pin::new(cursor).poll_complete(cx),
            SiteFile::Disk(file) => Pin::new(file).poll_complete(cx),
        }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

impl File for SiteFile {
    type Metadata = EntryMetadata;
    type MetadataFuture<'a> = BoxFuture<'a, EntryMetadata>;

    fn metadata(&self) -> Self::MetadataFuture<'_> {
        match self {
            SiteFile::Memory(_, meta) => {
                let meta = meta.clone();
                Box::pin(async move { Ok(meta) })
            }
            // The file as opened (it may have changed since the entry was checked): ETag and
            // Last-Modified describe the bytes sent.
            SiteFile::Disk(file) => Box::pin(async move {
                let meta = file.metadata().await?;
                Ok(EntryMetadata {
                    is_dir: meta.is_dir(),
                    len: meta.len(),
                    modified: meta.modified().ok(),
                })
            }),
        }
    }
}

impl Backend for SiteCache {
    type File = SiteFile;
    type Metadata = EntryMetadata;
    type OpenFuture = BoxFuture<'static, SiteFile>;
    type MetadataFuture = BoxFuture<'static, EntryMetadata>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let cache = self.clone();
        Box::pin(async move {
            let entry = cache.entry(path).await?;
            match &entry.content {
                Content::Memory(bytes) => {
                    super::zero_copy::opened(bytes);
                    Ok(SiteFile::Memory(
                        std::io::Cursor::new(bytes.clone()),
                        EntryMetadata::from(&entry.identity),
                    ))
                }
                // The canonical path: what was checked to be inside the site.
                Content::OnDisk => Ok(SiteFile::Disk(
                    tokio::fs::File::open(&entry.identity.canonical).await?,
                )),
            }
        })
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        let cache = self.clone();
        Box::pin(async move {
            let entry = cache.entry(path).await?;
            Ok(EntryMetadata::from(&entry.identity))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn read_all(cache: &SiteCache, path: &Path) -> io::Result<(Vec<u8>, bool)> {
        let mut file = cache.open(path.to_path_buf()).await?;
        let in_memory = matches!(file, SiteFile::Memory(..));
        let mut out = Vec::new();
        file.read_to_end(&mut out).await?;
        Ok((out, in_memory))
    }

    fn site() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        (dir, root)
    }

    #[tokio::test]
    async fn small_files_come_from_memory_and_large_ones_from_disk() {
        let (_dir, root) = site();
        std::fs::write(root.join("small"), b"hello").expect("write");
        std::fs::write(root.join("large"), vec![7u8; 2048]).expect("write");
        let cache = SiteCache::with_limits(root.clone(), 1 << 20, 1024, Duration::from_secs(60));
        assert_eq!(
            read_all(&cache, &root.join("small")).await.expect("small"),
            (b"hello".to_vec(), true)
        );
        assert_eq!(
            read_all(&cache, &root.join("large")).await.expect("large"),
            (vec![7u8; 2048], false)
        );
        assert_eq!(cache.memory_bytes(), 5);
        let meta = cache.metadata(root.join("large")).await.expect("meta");
        assert_eq!((meta.len(), meta.is_dir()), (2048, false));
        assert!(cache.metadata(root.clone()).await.expect("root").is_dir());
    }

    #[tokio::test]
    async fn a_fresh_entry_is_served_without_looking_at_the_disk_and_a_stale_one_is_reloaded() {
        let (_dir, root) = site();
        let file = root.join("page.html");
        std::fs::write(&file, b"one").expect("write");
        let cache = SiteCache::with_limits(root.clone(), 1 << 20, 1024, Duration::from_secs(60));
        assert_eq!(read_all(&cache, &file).await.expect("first").0, b"one");
        // Removed on disk, still fresh in the cache: proves the hit needs no system call.
        std::fs::remove_file(&file).expect("remove");
        assert_eq!(read_all(&cache, &file).await.expect("hit").0, b"one");

        let cache = SiteCache::with_limits(root.clone(), 1 << 20, 1024, Duration::ZERO);
        std::fs::write(&file, b"one").expect("write");
        assert_eq!(read_all(&cache, &file).await.expect("first").0, b"one");
        // Replaced by a new file of the same size (new inode): reloaded.
        std::fs::write(root.join("next"), b"two").expect("write");
        std::fs::rename(root.join("next"), &file).expect("rename");
        assert_eq!(read_all(&cache, &file).await.expect("reloaded").0, b"two");
        std::fs::remove_file(&file).expect("remove");
        let gone = read_all(&cache, &file).await.expect_err("removed");
        assert_eq!(gone.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            cache.memory_bytes(),
            0,
            "a removed file's bytes are released"
        );
    }

    #[tokio::test]
    async fn a_configmap_style_symlink_swap_is_seen() {
        // A ConfigMap volume: page.html -> ..data/page.html, ..data -> ..<timestamp>.
        let (_dir, root) = site();
        for (version, body) in [("..v1", "first"), ("..v2", "second")] {
            std::fs::create_dir(root.join(version)).expect("mkdir");
            std::fs::write(root.join(version).join("page.html"), body).expect("write");
        }
        std::os::unix::fs::symlink("..v1", root.join("..data")).expect("symlink");
        std::os::unix::fs::symlink("..data/page.html", root.join("page.html")).expect("symlink");
        let cache = SiteCache::with_limits(root.clone(), 1 << 20, 1024, Duration::ZERO);
        let page = root.join("page.html");
        assert_eq!(read_all(&cache, &page).await.expect("v1").0, b"first");
        std::os::unix::fs::symlink("..v2", root.join("..tmp")).expect("symlink");
        std::fs::rename(root.join("..tmp"), root.join("..data")).expect("swap");
        assert_eq!(read_all(&cache, &page).await.expect("v2").0, b"second");
    }

    #[tokio::test]
    async fn symlinks_out_of_the_site_are_refused_on_every_check() {
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret"), "s").expect("write");
        let (_dir, root) = site();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("leak"))
            .expect("symlink");
        std::os::unix::fs::symlink(outside.path(), root.join("outdir")).expect("symlink");
        let cache = SiteCache::with_limits(root.clone(), 1 << 20, 1024, Duration::from_secs(60));
        for path in [
            root.join("leak"),
            root.join("outdir/secret"),
            root.join("outdir"),
        ] {
            let err = read_all(&cache, &path).await.expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{}", path.display());
            assert!(cache.metadata(path).await.is_err());
        }
        // A file first inside, then replaced by a symlink that leaves: refused once rechecked.
        let cache = SiteCache::with_limits(root.clone(), 1 << 20, 1024, Duration::ZERO);
        std::fs::write(root.join("page"), "inside").expect("write");
        assert_eq!(
            read_all(&cache, &root.join("page")).await.expect("in").0,
            b"inside"
        );
        std::fs::remove_file(root.join("page")).expect("remove");
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("page"))
            .expect("symlink");
        assert!(read_all(&cache, &root.join("page")).await.is_err());
    }

    #[tokio::test]
    async fn names_too_long_for_the_file_system_are_not_found() {
        let (_dir, root) = site();
        let cache = SiteCache::new(root.clone());
        let long = root.join("a".repeat(300)).join("b");
        let err = read_all(&cache, &long).await.expect_err("too long");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(cache.metadata(root.join("x".repeat(256))).await.is_err());
    }

    #[tokio::test]
    async fn the_budget_bounds_the_bytes_in_memory() {
        let (_dir, root) = site();
        for name in ["a", "b", "c"] {
            std::fs::write(root.join(name), vec![1u8; 400]).expect("write");
        }
        let cache = SiteCache::with_limits(root.clone(), 1000, 1024, Duration::from_secs(60));
        let mut from_memory = 0;
        for name in ["a", "b", "c"] {
            let (bytes, in_memory) = read_all(&cache, &root.join(name)).await.expect("read");
            assert_eq!(bytes.len(), 400);
            from_memory += usize::from(in_memory);
        }
        assert_eq!(from_memory, 2, "the third file does not fit");
        assert_eq!(cache.memory_bytes(), 800);
    }
}
