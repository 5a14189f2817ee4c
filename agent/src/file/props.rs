//! Dead properties (RFC 4918 section 4): what PROPPATCH sets, kept on disk beside the files.
//!
//! Each resource's properties are one small JSON file in a hidden `.hostrole-props` directory:
//!
//! - a file `D/name` keeps them in `D/.hostrole-props/name`;
//! - a collection `D/` keeps its own in `D/.hostrole-props/.hostrole-props` (a child cannot be
//!   named `.hostrole-props`: the name is refused at every depth), so a collection's properties and
//!   those of everything in it move with it when it is renamed.
//!
//! A file is written whole to the staging area, fsynced and renamed into place (then its directory
//! fsynced): a reader or a crash sees the old set or the new one. The format is
//! `{"format":1,"props":[{"name","namespace","prefix","xml"}]}`, `xml` being the property's
//! element as the client sent it. See docs/decisions.md (File role) for why not xattrs.

use hostrole_agent_core::fsutil::sync_dir_async;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dav_server::fs::{DavProp, FsError, FsResult};
use serde::{Deserialize, Serialize};

/// The hidden directory that holds properties, in every collection that has any.
pub const PROPS: &str = ".hostrole-props";

/// The most one resource's properties may take (serialized): PROPPATCH beyond it answers 507.
pub const MAX_BYTES: usize = 64 * 1024;

/// Version of the on-disk format.
const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stored {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    pub xml: String,
}

impl Stored {
    fn same(&self, prop: &DavProp) -> bool {
        self.name == prop.name && self.namespace == prop.namespace
    }

    pub fn to_prop(&self, content: bool) -> DavProp {
        DavProp {
            name: self.name.clone(),
            prefix: self.prefix.clone(),
            namespace: self.namespace.clone(),
            xml: content.then(|| self.xml.clone().into_bytes()),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    format: u32,
    props: Vec<Stored>,
}

/// Applies a PROPPATCH (in order: a later instruction wins) to a set of properties. A property
/// whose value is not UTF-8 XML is refused with 409.
pub fn apply(
    mut props: Vec<Stored>,
    patch: &[(bool, DavProp)],
) -> (Vec<Stored>, Vec<http::StatusCode>) {
    let mut statuses = Vec::with_capacity(patch.len());
    for (set, prop) in patch {
        props.retain(|p| !p.same(prop));
        if !set {
            // Removing a property that does not exist is not an error (RFC 4918 14.23).
            statuses.push(http::StatusCode::OK);
            continue;
        }
        match prop
            .xml
            .as_ref()
            .and_then(|x| String::from_utf8(x.clone()).ok())
        {
            Some(xml) => {
                props.push(Stored {
                    name: prop.name.clone(),
                    namespace: prop.namespace.clone(),
                    prefix: prop.prefix.clone(),
                    xml,
                });
                statuses.push(http::StatusCode::OK);
            }
            None => statuses.push(http::StatusCode::CONFLICT),
        }
    }
    (props, statuses)
}

/// Serializes a set of properties as stored.
pub fn encode(props: &[Stored]) -> Vec<u8> {
    // Serializing plain strings cannot fail.
    serde_json::to_vec(&File {
        format: FORMAT,
        props: props.to_vec(),
    })
    .unwrap_or_default()
}

fn decode(bytes: &[u8]) -> Option<Vec<Stored>> {
    let file: File = serde_json::from_slice(bytes).ok()?;
    (file.format == FORMAT).then_some(file.props)
}

/// Where the properties of the resource at `relative` (to the share root) are kept.
pub fn location(root: &Path, relative: &Path, collection: bool) -> Option<PathBuf> {
    if collection {
        return Some(root.join(relative).join(PROPS).join(PROPS));
    }
    let name = relative.file_name()?;
    let parent = relative.parent().unwrap_or(Path::new(""));
    Some(root.join(parent).join(PROPS).join(name))
}

/// The store: reads and atomic writes of properties files.
#[derive(Debug, Clone)]
pub struct Store {
    /// Where new files are written before they are renamed into place.
    staging: Arc<PathBuf>,
    /// One writer at a time (read-modify-write of PROPPATCH, and moves).
    writing: Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    pub fn new(staging: PathBuf) -> Self {
        Self {
            staging: Arc::new(staging),
            writing: Arc::default(),
        }
    }

    /// Serializes writers.
    pub async fn writer(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writing.lock().await
    }

    /// The properties kept at `location` (none when there is no file).
    pub async fn read(&self, location: &Path) -> FsResult<Vec<Stored>> {
        match tokio::fs::read(location).await {
            Ok(bytes) => Ok(decode(&bytes).unwrap_or_else(|| {
                tracing::warn!(path = %location.display(), "unreadable dead properties file; treated as empty");
                Vec::new()
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces what `location` holds with `bytes` (from [`encode`]), atomically and durably; an
    /// empty set removes the file.
    pub async fn write(&self, location: &Path, props: &[Stored]) -> FsResult<()> {
        if props.is_empty() {
            return self.remove(location).await;
        }
        let dir = location.parent().ok_or(FsError::GeneralFailure)?;
        tokio::fs::create_dir_all(dir).await?;
        let temp = self
            .staging
            .join(format!("{}.props", super::fs::random_name()));
        let result = async {
            let mut file = tokio::fs::File::create(&temp).await?;
            tokio::io::AsyncWriteExt::write_all(&mut file, &encode(props)).await?;
            file.sync_all().await?;
            tokio::fs::rename(&temp, location).await?;
            sync_dir_async(dir).await
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        Ok(result?)
    }

    /// Removes the properties kept at `location` (nothing to do when there are none).
    pub async fn remove(&self, location: &Path) -> FsResult<()> {
        match tokio::fs::remove_file(location).await {
            Ok(()) => {
                if let Some(dir) = location.parent() {
                    // Leave no empty properties directory behind (fails while it holds others).
                    let _ = tokio::fs::remove_dir(dir).await;
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives `to` the properties of `from` (a COPY), or none.
    pub async fn copy(&self, from: &Path, to: &Path) -> FsResult<()> {
        let props = self.read(from).await?;
        self.write(to, &props).await
    }

    /// Moves the properties of `from` to `to` (a MOVE of a file).
    pub async fn rename(&self, from: &Path, to: &Path) -> FsResult<()> {
        if tokio::fs::symlink_metadata(from).await.is_err() {
            // Nothing to move; no stale properties may stay at the new name either.
            return self.remove(to).await;
        }
        let dir = to.parent().ok_or(FsError::GeneralFailure)?;
        tokio::fs::create_dir_all(dir).await?;
        tokio::fs::rename(from, to).await?;
        sync_dir_async(dir).await?;
        if let Some(old) = from.parent() {
            let _ = tokio::fs::remove_dir(old).await;
        }
        Ok(())
    }
}

/// After a COPY of the collection `from` to `to` (relative to `root`), gives each collection the
/// properties of its source: dav-server creates the collections itself and copies only files
/// through the filesystem. `depth_zero`: only the collection itself.
pub fn copy_collections(
    root: &Path,
    from: &Path,
    to: &Path,
    depth_zero: bool,
) -> std::io::Result<()> {
    let (src, dst) = (root.join(from), root.join(to));
    let own = |dir: &Path| dir.join(PROPS).join(PROPS);
    let mut stack = vec![PathBuf::new()];
    while let Some(sub) = stack.pop() {
        let (s, d) = (src.join(&sub), dst.join(&sub));
        if !d.is_dir() {
            continue;
        }
        if own(&s).is_file() {
            std::fs::create_dir_all(d.join(PROPS))?;
            std::fs::copy(own(&s), own(&d))?;
        }
        if depth_zero {
            break;
        }
        for entry in std::fs::read_dir(&s)?.filter_map(Result::ok) {
            let name = entry.file_name();
            if name != PROPS && entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(sub.join(name));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(ns: &str, name: &str, xml: Option<&str>) -> DavProp {
        DavProp {
            name: name.into(),
            prefix: Some("Z".into()),
            namespace: Some(ns.into()),
            xml: xml.map(|x| x.as_bytes().to_vec()),
        }
    }

    #[test]
    fn set_replace_and_remove() {
        let (props, statuses) = apply(
            Vec::new(),
            &[
                (
                    true,
                    prop("urn:a", "x", Some("<Z:x xmlns:Z=\"urn:a\">1</Z:x>")),
                ),
                (
                    true,
                    prop("urn:b", "x", Some("<Z:x xmlns:Z=\"urn:b\">2</Z:x>")),
                ),
                (
                    true,
                    prop("urn:a", "x", Some("<Z:x xmlns:Z=\"urn:a\">3</Z:x>")),
                ),
            ],
        );
        assert_eq!(statuses, [http::StatusCode::OK; 3]);
        assert_eq!(
            props.len(),
            2,
            "same name in two namespaces: two properties"
        );
        assert!(props.iter().any(|p| p.xml.contains(">3<")));
        let (props, statuses) = apply(
            props,
            &[
                (false, prop("urn:a", "x", None)),
                (false, prop("urn:c", "y", None)),
            ],
        );
        assert_eq!(statuses, [http::StatusCode::OK; 2]);
        assert_eq!(props.len(), 1);
        assert_eq!(props[0].namespace.as_deref(), Some("urn:b"));
    }

    #[test]
    fn the_format_round_trips_and_is_versioned() {
        let (props, _) = apply(
            Vec::new(),
            &[(
                true,
                prop("urn:a", "x", Some("<Z:x xmlns:Z=\"urn:a\">\u{10348}</Z:x>")),
            )],
        );
        let bytes = encode(&props);
        assert!(String::from_utf8_lossy(&bytes).starts_with("{\"format\":1,"));
        assert_eq!(decode(&bytes), Some(props));
        assert_eq!(decode(b"{\"format\":2,\"props\":[]}"), None);
        assert_eq!(decode(b"not json"), None);
    }

    #[test]
    fn locations_keep_a_collection_s_own_properties_inside_it() {
        let root = Path::new("/share");
        assert_eq!(
            location(root, Path::new("a/b.txt"), false),
            Some(PathBuf::from("/share/a/.hostrole-props/b.txt"))
        );
        assert_eq!(
            location(root, Path::new("a/c"), true),
            Some(PathBuf::from("/share/a/c/.hostrole-props/.hostrole-props"))
        );
        assert_eq!(
            location(root, Path::new(""), true),
            Some(PathBuf::from("/share/.hostrole-props/.hostrole-props"))
        );
        assert_eq!(location(root, Path::new(""), false), None);
    }
}
