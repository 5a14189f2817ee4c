//! Documents: the formats the printer takes, recognising them by their first bytes, job names
//! made safe as file names, and printouts written so that a crash never leaves a partial one.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// A document format the printer prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Pdf,
    PwgRaster,
    Jpeg,
}

/// `application/octet-stream`: the printer tells the format from the document's bytes.
pub const AUTO: &str = "application/octet-stream";

/// Every `document-format-supported` value, the default first.
pub const SUPPORTED: [&str; 4] = [AUTO, "application/pdf", "image/jpeg", "image/pwg-raster"];

/// A `document-format` the printer does not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the document format is not supported")]
pub struct Unsupported;

/// Bytes [`Format::sniff`] needs.
pub const MAGIC_LEN: usize = 8;

impl Format {
    pub fn mime(self) -> &'static str {
        match self {
            Format::Pdf => "application/pdf",
            Format::PwgRaster => "image/pwg-raster",
            Format::Jpeg => "image/jpeg",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::PwgRaster => "pwg",
            Format::Jpeg => "jpg",
        }
    }

    /// The format a `document-format` names: `Ok(None)` for auto-detection, `Err` when the
    /// printer does not take it.
    pub fn of_mime(mime: &str) -> Result<Option<Format>, Unsupported> {
        match mime.to_ascii_lowercase().as_str() {
            AUTO => Ok(None),
            "application/pdf" => Ok(Some(Format::Pdf)),
            "image/pwg-raster" => Ok(Some(Format::PwgRaster)),
            "image/jpeg" => Ok(Some(Format::Jpeg)),
            _ => Err(Unsupported),
        }
    }

    /// The format a document's first bytes show (PDF's `%PDF-`, PWG raster's `RaS2`
    /// synchronization word, JPEG's SOI marker).
    pub fn sniff(head: &[u8]) -> Option<Format> {
        if head.starts_with(b"%PDF-") {
            Some(Format::Pdf)
        } else if head.starts_with(b"RaS2") {
            Some(Format::PwgRaster)
        } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Format::Jpeg)
        } else {
            None
        }
    }
}

/// Longest job name kept in a file name, in characters.
pub const MAX_FILE_NAME_CHARS: usize = 64;

/// A job name as part of a file name in a folder users may browse: letters, digits, `-`, `_`
/// and `.` only (anything else, `/` and control characters included, becomes `_`), no leading
/// dot or dash, no `..`, at most [`MAX_FILE_NAME_CHARS`] characters, never empty.
pub fn file_name_part(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if out.chars().count() >= MAX_FILE_NAME_CHARS {
            break;
        }
        let keep = c.is_alphanumeric() || c == '-' || c == '_' || c == '.';
        let c = if keep { c } else { '_' };
        if c == '.' && out.ends_with('.') {
            continue; // never ".."
        }
        out.push(c);
    }
    let out = out.trim_start_matches(['.', '-']).trim_end_matches('.');
    if out.is_empty() {
        "job".to_string()
    } else {
        out.to_string()
    }
}

/// A text from a client (job name, user name) as kept and shown: control characters dropped,
/// at most `max` characters.
pub fn clean_text(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// The name of a printout in the output folder.
pub fn printout_name(id: i32, job_name: &str, format: Format) -> String {
    format!("{id}-{}.{}", file_name_part(job_name), format.extension())
}

/// How a printout's hidden temporary file is named: this prefix, random letters, `.tmp`.
const TEMP_PREFIX: &str = ".hostrole-print-";

/// Whether a file of the output folder is one of our temporary printouts (left by a crash).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(".tmp")
}

/// How many names a printout tries (its own, then `-2` … before the extension) before its job
/// fails: the output folder never has a file replaced.
const NAME_TRIES: u32 = 100;

/// The names a printout may take, its own first: `7-report.pdf`, `7-report-2.pdf`, ….
fn names(name: &str) -> impl Iterator<Item = String> + '_ {
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    (1..=NAME_TRIES).map(move |n| match (n, ext) {
        (1, _) => name.to_string(),
        (n, "") => format!("{stem}-{n}"),
        (n, ext) => format!("{stem}-{n}.{ext}"),
    })
}

/// The job id a printout's name starts with (`7-report.pdf` → 7).
pub fn printout_id(name: &str) -> Option<i32> {
    name.split_once('-')?.0.parse().ok().filter(|id| *id > 0)
}

/// Gives the finished temporary printout the first of [`names`] of `name` that nothing in
/// `dir` has, and returns it. `persist_noclobber` (a rename that refuses to replace, or a hard
/// link then an unlink) never replaces a file already there: an earlier printout, or one a
/// share's user put in the folder. Blocking.
fn place(mut temp: tempfile::NamedTempFile, dir: &Path, name: &str) -> std::io::Result<String> {
    for candidate in names(name) {
        match temp.persist_noclobber(dir.join(&candidate)) {
            Ok(_) => return Ok(candidate),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => temp = e.file,
            Err(e) => return Err(e.error),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("{name} and {} other names for it are taken", NAME_TRIES - 1),
    ))
}

/// Copies `document` into `dir` as `name`: into a hidden temporary file first (created anew
/// under a random name, never through a link), flushed to disk, then given its name, so the
/// printout appears complete or not at all. The temporary file goes when anything fails or
/// the copy is dropped. A file already named `name` is kept: the printout takes the next free
/// name ([`place`]). Returns the bytes written and the name taken.
pub async fn write_printout(
    mut document: impl AsyncRead + Unpin,
    dir: &Path,
    name: &str,
) -> std::io::Result<(u64, String)> {
    let in_dir = dir.to_path_buf();
    let temp = tokio::task::spawn_blocking(move || {
        tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(".tmp")
            .tempfile_in(in_dir)
    })
    .await
    .map_err(std::io::Error::other)??;
    let mut file = tokio::fs::File::from_std(temp.as_file().try_clone()?);
    let mut buf = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        let n = document.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).await?;
        written += n as u64;
    }
    file.flush().await?;
    file.sync_all().await?;
    drop(file);
    let (dir, name) = (dir.to_path_buf(), name.to_string());
    tokio::task::spawn_blocking(move || {
        let taken = place(temp, &dir, &name)?;
        hostrole_agent_core::fsutil::sync_dir(&dir)?;
        Ok((written, taken))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Removes the temporary printouts a crash left in `dir`: regular files only (a share's user
/// may have made a folder or anything else by that name: it is left, as is a file that cannot
/// be removed). Returns what it removed.
pub fn sweep_temps(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        let temp = entry.file_name().to_str().is_some_and(is_temp_name)
            && entry.file_type().is_ok_and(|t| t.is_file());
        if temp && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_become_safe_file_names() {
        assert_eq!(file_name_part("report.pdf"), "report.pdf");
        assert_eq!(file_name_part("../../etc/passwd"), "_._etc_passwd");
        assert_eq!(file_name_part(".."), "job");
        assert_eq!(file_name_part(".hidden"), "hidden");
        assert_eq!(file_name_part("a\0b\nc\u{1b}[31m"), "a_b_c__31m");
        assert_eq!(file_name_part("-rf"), "rf");
        assert_eq!(file_name_part(""), "job");
        assert_eq!(file_name_part("Été über"), "Été_über");
        assert_eq!(file_name_part(&"x".repeat(1000)).len(), MAX_FILE_NAME_CHARS);
        assert!(!file_name_part("a/..//..b").contains(".."));
        assert!(!printout_name(3, "a/b", Format::Pdf).contains('/'));
    }

    #[test]
    fn formats_are_told_by_their_bytes() {
        assert_eq!(Format::sniff(b"%PDF-1.7\n"), Some(Format::Pdf));
        assert_eq!(Format::sniff(b"RaS2PwgRaster\0"), Some(Format::PwgRaster));
        assert_eq!(Format::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(Format::Jpeg));
        assert_eq!(Format::sniff(b"%!PS-Adobe"), None);
        assert_eq!(Format::of_mime("Application/PDF"), Ok(Some(Format::Pdf)));
        assert_eq!(Format::of_mime(AUTO), Ok(None));
        assert!(Format::of_mime("text/plain").is_err());
    }

    /// A document source that fails after some bytes, as a crash or a full disk would cut a
    /// copy short.
    struct Failing(usize);
    impl AsyncRead for Failing {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(Err(std::io::Error::other("cut")));
            }
            let n = self.0.min(buf.remaining()).min(1000);
            buf.put_slice(&vec![b'x'; n]);
            self.0 -= n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_printout_never_replaces_a_file_of_its_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A printout of before the queue was lost, and a user's file in the share's folder.
        std::fs::write(dir.path().join("1-report.pdf"), b"kept").expect("write");
        std::fs::write(dir.path().join("1-report-2.pdf"), b"mine").expect("write");
        let (n, name) = write_printout(&b"%PDF-1.4 new"[..], dir.path(), "1-report.pdf")
            .await
            .expect("writes");
        assert_eq!((n, name.as_str()), (12, "1-report-3.pdf"));
        assert_eq!(
            std::fs::read(dir.path().join("1-report.pdf")).expect("read"),
            b"kept"
        );
        assert_eq!(
            std::fs::read(dir.path().join("1-report-2.pdf")).expect("read"),
            b"mine"
        );
        assert_eq!(
            std::fs::read(dir.path().join(&name)).expect("read"),
            b"%PDF-1.4 new"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            3,
            "no temp file left"
        );
        let (_, plain) = write_printout(&b"x"[..], dir.path(), "4-notes")
            .await
            .expect("writes");
        assert_eq!(plain, "4-notes");
        let (_, again) = write_printout(&b"y"[..], dir.path(), "4-notes")
            .await
            .expect("writes");
        assert_eq!(again, "4-notes-2");
        assert_eq!(printout_id("12-report-2.pdf"), Some(12));
        assert_eq!(printout_id("notes.txt"), None);
        assert_eq!(printout_id("0-x.pdf"), None);
    }

    #[tokio::test]
    async fn a_printout_cut_short_leaves_nothing_in_the_output_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = printout_name(1, "cut", Format::Pdf);
        assert!(
            write_printout(Failing(5000), dir.path(), &name)
                .await
                .is_err()
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert!(
            left.is_empty(),
            "a partial printout or temp file was left: {left:?}"
        );
        let whole = write_printout(&b"%PDF-1.4 whole"[..], dir.path(), "2-ok.pdf")
            .await
            .expect("writes");
        assert_eq!(whole, (14, "2-ok.pdf".to_string()));
        assert_eq!(
            std::fs::read(dir.path().join("2-ok.pdf")).expect("read"),
            b"%PDF-1.4 whole"
        );
        // A crash between create and rename leaves a hidden temp file: the next start removes
        // it, and only it: a folder a share's user named like one stays and stops nothing.
        let temp = dir.path().join(".hostrole-print-a1B2c3.tmp");
        std::fs::write(&temp, b"partial").expect("write");
        let folder = dir.path().join(".hostrole-print-x.tmp");
        std::fs::create_dir_all(folder.join("inside")).expect("dir");
        assert_eq!(sweep_temps(dir.path()).expect("sweep"), vec![temp.clone()]);
        assert!(!temp.exists());
        assert!(folder.join("inside").is_dir());
        assert!(dir.path().join("2-ok.pdf").exists());
    }
}
