//! The local catalog: the files of the shared folder, cut into chunks and hashed with BLAKE3.
//! Hashing runs on the blocking pool; a file whose (size, mtime) did not change is not hashed
//! again, so the periodic rescan is a directory walk.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use crate::wire::{CHUNK_SIZE, Resource};

/// The hidden folder in the share that holds the peer's state (id, partial downloads, staging).
pub const STATE_DIR: &str = ".hostrole";

/// A file of the share.
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub resource: Resource,
    pub path: PathBuf,
}

#[derive(Clone)]
struct Cached {
    size: u64,
    mtime: SystemTime,
    resource: Resource,
}

/// The files found by the last scan and the catalog version they make.
#[derive(Default)]
struct Listing {
    files: Vec<LocalFile>,
    version: String,
}

/// The version of a catalog holding `resources`: 16 hex digits of BLAKE3 over the sorted
/// `(name, hash)` pairs, so the order a scan finds files in does not change it.
pub fn version_of(resources: &[&Resource]) -> String {
    let mut pairs: Vec<(&str, &str)> = resources
        .iter()
        .map(|r| (r.name.as_str(), r.hash.as_str()))
        .collect();
    pairs.sort_unstable();
    let mut h = blake3::Hasher::new();
    for (name, hash) in pairs {
        h.update(name.as_bytes());
        h.update(b"\0");
        h.update(hash.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex()[..16].to_string()
}

/// The version of a catalog with `version` (from [`version_of`]) offering `services`: the same
/// version when it offers none (as before services existed), else 16 hex digits of BLAKE3 over
/// both, so a peer that starts offering a printer is not answered `304` by those holding its
/// old catalog.
pub fn with_services(version: &str, services: &[crate::wire::Service]) -> String {
    if services.is_empty() || version.is_empty() {
        return version.to_string();
    }
    let mut h = blake3::Hasher::new();
    h.update(version.as_bytes());
    for s in services {
        h.update(b"\n");
        h.update(format!("{:?}\0{}\0{}\0", s.kind, s.port, s.tls).as_bytes());
        h.update(s.name.as_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

/// The share's files, by content hash.
#[derive(Clone)]
pub struct Catalog {
    root: PathBuf,
    cache: Arc<Mutex<HashMap<PathBuf, Cached>>>,
    files: Arc<RwLock<Listing>>,
    scanning: Arc<tokio::sync::Mutex<()>>,
}

impl Catalog {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            cache: Arc::default(),
            files: Arc::default(),
            scanning: Arc::default(),
        }
    }

    /// Walks the share and hashes new or changed files. One scan at a time.
    pub async fn rescan(&self) -> std::io::Result<()> {
        let _one = self.scanning.lock().await;
        let root = self.root.clone();
        let cache = self.cache.clone();
        let files = tokio::task::spawn_blocking(move || scan(&root, &cache))
            .await
            .map_err(std::io::Error::other)??;
        let version = version_of(&files.iter().map(|f| &f.resource).collect::<Vec<_>>());
        if let Ok(mut current) = self.files.write() {
            *current = Listing { files, version };
        }
        Ok(())
    }

    pub fn files(&self) -> Vec<LocalFile> {
        self.files
            .read()
            .map(|l| l.files.clone())
            .unwrap_or_default()
    }

    pub fn resources(&self) -> Vec<Resource> {
        self.files().into_iter().map(|f| f.resource).collect()
    }

    /// The catalog version of the last scan (empty before the first): a `304` needs no more.
    pub fn version(&self) -> String {
        self.files
            .read()
            .map(|l| l.version.clone())
            .unwrap_or_default()
    }

    /// The resources and the catalog version they make, read together.
    pub fn versioned(&self) -> (Vec<Resource>, String) {
        self.files
            .read()
            .map(|l| {
                (
                    l.files.iter().map(|f| f.resource.clone()).collect(),
                    l.version.clone(),
                )
            })
            .unwrap_or_default()
    }

    pub fn by_hash(&self, hash: &str) -> Option<LocalFile> {
        self.files
            .read()
            .ok()?
            .files
            .iter()
            .find(|f| f.resource.hash == hash)
            .cloned()
    }

    /// Bytes the complete files take.
    pub fn used_bytes(&self) -> u64 {
        self.files().iter().map(|f| f.resource.size).sum()
    }
}

fn scan(root: &Path, cache: &Mutex<HashMap<PathBuf, Cached>>) -> std::io::Result<Vec<LocalFile>> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if dir != root => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list a folder of the share");
                continue;
            }
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            // Hidden entries (the state folder, editors' temporary files) are not shared.
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                let path = entry.path();
                let Ok(rel) = path.strip_prefix(root) else {
                    continue;
                };
                let rel = rel.to_path_buf();
                let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                let known = cache.lock().ok().and_then(|c| c.get(&rel).cloned());
                let resource = match known {
                    Some(c) if c.size == meta.len() && c.mtime == mtime => c.resource,
                    _ => match hash_file(&path, &name_of(&rel)) {
                        Ok(r) => {
                            if let Ok(mut c) = cache.lock() {
                                c.insert(
                                    rel.clone(),
                                    Cached {
                                        size: r.size,
                                        mtime,
                                        resource: r.clone(),
                                    },
                                );
                            }
                            r
                        }
                        Err(e) => {
                            tracing::warn!(file = %path.display(), error = %e, "cannot hash a file of the share");
                            continue;
                        }
                    },
                };
                found.push(LocalFile { resource, path });
            }
        }
    }
    if let Ok(mut c) = cache.lock() {
        let live: std::collections::HashSet<PathBuf> = found
            .iter()
            .filter_map(|f| f.path.strip_prefix(root).ok().map(Path::to_path_buf))
            .collect();
        c.retain(|k, _| live.contains(k));
    }
    found.sort_by(|a, b| a.resource.name.cmp(&b.resource.name));
    Ok(found)
}

/// The `/`-separated name of a path relative to the share.
fn name_of(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Hashes a file: BLAKE3 of each chunk and of the whole content.
pub fn hash_file(path: &Path, name: &str) -> std::io::Result<Resource> {
    let mut file = std::fs::File::open(path)?;
    let mut whole = blake3::Hasher::new();
    let mut chunks = Vec::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = file.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        whole.update(&buf[..filled]);
        chunks.push(blake3::hash(&buf[..filled]).to_hex().to_string());
        size += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    Ok(Resource {
        name: name.to_string(),
        size,
        hash: whole.finalize().to_hex().to_string(),
        chunk_size: CHUNK_SIZE,
        chunks,
    })
}

/// BLAKE3 of a whole file.
pub fn hash_whole(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::open(path)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Reads `len` bytes at `offset` (blocking) as buffers of at most `piece` bytes each, so that
/// each can be freed once it is sent.
pub fn read_pieces(
    path: &Path,
    offset: u64,
    len: u64,
    piece: usize,
) -> std::io::Result<Vec<bytes::Bytes>> {
    let file = std::fs::File::open(path)?;
    let mut pieces = Vec::new();
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(piece as u64) as usize;
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, offset + at)?;
        pieces.push(bytes::Bytes::from(buf));
        at += n as u64;
    }
    Ok(pieces)
}

/// A name a peer may give a file: relative, plain components, nothing hidden.
pub fn safe_name(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.len() > 1024 || name.contains('\0') || name.contains('\\') {
        return None;
    }
    let path = Path::new(name);
    let plain = path.components().all(|c| match c {
        Component::Normal(s) => !s.to_string_lossy().starts_with('.'),
        _ => false,
    });
    plain.then(|| path.to_path_buf())
}

/// `root/name`, or `name (2)`, `name (3)`… when a different file already has the name.
pub fn free_name(root: &Path, rel: &Path) -> PathBuf {
    let first = root.join(rel);
    if !first.exists() {
        return first;
    }
    let stem = rel
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = rel
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let parent = first.parent().map(Path::to_path_buf).unwrap_or_default();
    (2..)
        .map(|n| parent.join(format!("{stem} ({n}){ext}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_and_whole_hash_cover_the_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(CHUNK_SIZE as usize * 2 + 10))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).expect("write");
        let r = hash_file(&path, "f").expect("hash");
        assert_eq!(r.size, data.len() as u64);
        assert_eq!(r.chunks.len(), 3);
        assert_eq!(r.hash, blake3::hash(&data).to_hex().to_string());
        assert_eq!(
            r.chunks[2],
            blake3::hash(&data[2 * CHUNK_SIZE as usize..])
                .to_hex()
                .to_string()
        );
        assert!(r.consistent());
        assert_eq!(hash_whole(&path).expect("whole"), r.hash);
    }

    #[test]
    fn unsafe_names_are_refused_and_taken_names_get_a_number() {
        for bad in ["", "../x", "/etc/passwd", ".hostrole/id", "a/.b", "a/../b"] {
            assert!(safe_name(bad).is_none(), "{bad}");
        }
        assert!(safe_name("films/a.mkv").is_some());
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.txt"), "x").expect("write");
        assert_eq!(
            free_name(dir.path(), Path::new("a.txt")),
            dir.path().join("a (2).txt")
        );
        assert_eq!(
            free_name(dir.path(), Path::new("b.txt")),
            dir.path().join("b.txt")
        );
    }

    #[tokio::test]
    async fn the_state_folder_and_hidden_files_are_not_shared() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join(".hostrole/partial")).expect("mkdir");
        std::fs::write(dir.path().join(".hostrole/partial/x.part"), "p").expect("write");
        std::fs::create_dir_all(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/a"), "a").expect("write");
        std::fs::write(dir.path().join(".hidden"), "h").expect("write");
        let c = Catalog::new(dir.path().to_path_buf());
        c.rescan().await.expect("scan");
        let names: Vec<_> = c.resources().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["sub/a"]);
    }
}
