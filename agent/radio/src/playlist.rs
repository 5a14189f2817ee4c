//! A playlist mount: the MP3 and Ogg (Vorbis, Opus) files of a directory in name order, in a
//! loop, each at its own pace. symphonia's MPEG audio demuxer finds MP3 frames and their
//! durations (no decoding); Ogg pages and their durations come from [`crate::ogg`]. Every
//! frame or page is published when the audio before it has played.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hostrole_agent_core::metrics::{AgentMetrics, Reason};
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ROLE;
use crate::mount::{Mount, NowPlaying};
use crate::pacing::Schedule;

/// Largest file played (read into memory whole).
const MAX_FILE_BYTES: u64 = 128 << 20;
/// Pause before looking at an empty or unplayable directory again.
const RETRY: Duration = Duration::from_secs(5);

/// One file's frames, ready to send.
#[derive(Debug)]
pub struct Track {
    pub title: String,
    pub content_type: &'static str,
    pub frames: Vec<(Bytes, Duration)>,
    /// Ogg: the header pages a listener joining mid-file needs first.
    pub headers: Vec<Bytes>,
    /// Average kbit/s, from the frames' sizes and durations.
    pub bitrate: Option<u32>,
}

/// Why a file cannot be played.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path} is not MPEG audio: {source}")]
    Format {
        path: PathBuf,
        #[source]
        source: symphonia::core::errors::Error,
    },
    #[error("{path} holds no audio frames")]
    Empty { path: PathBuf },
}

/// Whether a file name is one the playlist plays.
pub fn playable(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["mp3", "ogg", "oga", "opus"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

/// The title of a file: its name without the extension.
pub fn title_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Splits an Ogg (Vorbis, Opus) or MPEG audio file into pages or frames with their durations.
pub fn frames(data: Vec<u8>, path: &Path) -> Result<Track, TrackError> {
    if data.starts_with(b"OggS") {
        let data = Bytes::from(data);
        let Some((pages, content_type)) = crate::ogg::timed(&data) else {
            return Err(TrackError::Empty {
                path: path.to_path_buf(),
            });
        };
        let headers: Vec<Bytes> = pages
            .iter()
            .take_while(|(_, d)| d.is_zero())
            .map(|(p, _)| p.clone())
            .collect();
        let seconds: f64 = pages.iter().map(|(_, d)| d.as_secs_f64()).sum();
        let bytes: usize = pages.iter().map(|(p, _)| p.len()).sum();
        if seconds <= 0.0 {
            return Err(TrackError::Empty {
                path: path.to_path_buf(),
            });
        }
        return Ok(Track {
            title: title_of(path),
            content_type,
            bitrate: Some(((bytes as f64 * 8.0 / seconds) / 1000.0).round() as u32),
            frames: pages,
            headers,
        });
    }
    let format_error = |source| TrackError::Format {
        path: path.to_path_buf(),
        source,
    };
    let stream = MediaSourceStream::new(
        Box::new(std::io::Cursor::new(data)),
        MediaSourceStreamOptions::default(),
    );
    let mut reader = symphonia::default::formats::MpaReader::try_new(
        stream,
        &FormatOptions {
            enable_gapless: false,
            ..Default::default()
        },
    )
    .map_err(format_error)?;
    let time_base = reader.default_track().and_then(|t| {
        t.codec_params.time_base.or_else(|| {
            t.codec_params
                .sample_rate
                .map(|r| symphonia::core::units::TimeBase::new(1, r))
        })
    });
    let mut frames = Vec::new();
    let (mut bytes, mut seconds) = (0u64, 0f64);
    loop {
        let packet = match reader.next_packet() {
            Ok(p) => p,
            Err(symphonia::core::errors::Error::IoError(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                break;
            }
            Err(e) => return Err(format_error(e)),
        };
        let Some(tb) = time_base else { break };
        let t = tb.calc_time(packet.dur);
        let duration = Duration::from_secs_f64(t.seconds as f64 + t.frac);
        bytes += packet.data.len() as u64;
        seconds += duration.as_secs_f64();
        frames.push((Bytes::from(packet.data.into_vec()), duration));
    }
    if frames.is_empty() {
        return Err(TrackError::Empty {
            path: path.to_path_buf(),
        });
    }
    let bitrate = (seconds > 0.0).then(|| ((bytes as f64 * 8.0 / seconds) / 1000.0).round() as u32);
    Ok(Track {
        title: title_of(path),
        content_type: "audio/mpeg",
        frames,
        headers: Vec::new(),
        bitrate,
    })
}

async fn load(path: PathBuf) -> Result<Track, TrackError> {
    let read_error = |source| TrackError::Read {
        path: path.clone(),
        source,
    };
    let meta = tokio::fs::metadata(&path).await.map_err(read_error)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(TrackError::TooLarge { path });
    }
    let data = tokio::fs::read(&path).await.map_err(read_error)?;
    let p = path.clone();
    tokio::task::spawn_blocking(move || frames(data, &p))
        .await
        .unwrap_or_else(|_| Err(TrackError::Empty { path }))
}

/// The directory's playable files in name order (re-read at each loop).
async fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = tokio::fs::read_dir(dir).await?;
    let mut files = Vec::new();
    while let Some(e) = entries.next_entry().await? {
        let path = e.path();
        if playable(&path)
            && e.file_type()
                .await
                .is_ok_and(|t| t.is_file() || t.is_symlink())
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Plays `dir` on `mount` until `stop`, pausing while a live source feeds the mount.
pub async fn play(mount: Arc<Mount>, dir: PathBuf, metrics: AgentMetrics, stop: CancellationToken) {
    let mut schedule = Schedule::new(Instant::now());
    while !stop.is_cancelled() {
        let files = match list(&dir).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(role = ROLE, mount = %mount.path, dir = %dir.display(), error = %e, "cannot read the playlist directory");
                metrics.error(ROLE, Reason::StorageFailed);
                Vec::new()
            }
        };
        let mut played = false;
        for file in files {
            let track = match load(file).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(role = ROLE, mount = %mount.path, error = %e, "skipping a playlist file");
                    metrics.error(ROLE, Reason::StorageFailed);
                    continue;
                }
            };
            played = true;
            if !mount.is_live() {
                announce(&mount, &track);
            }
            for (frame, duration) in track.frames.iter() {
                if mount.is_live() {
                    // A source has the mount: wait for it to leave, then go on from here.
                    let left = mount.source_left.notified();
                    tokio::pin!(left);
                    left.as_mut().enable();
                    if mount.is_live() {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = left => {}
                        }
                    }
                    schedule = Schedule::new(Instant::now());
                    announce(&mount, &track);
                }
                let due = schedule.next_due(Instant::now());
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(due) => {}
                }
                if mount.is_live() {
                    continue;
                }
                mount.publish(frame.clone());
                schedule.sent(*duration);
            }
        }
        if !played {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }
}

fn announce(mount: &Mount, track: &Track) {
    mount.start(NowPlaying {
        content_type: track.content_type.to_string(),
        title: track.title.clone(),
        bitrate: track.bitrate,
        headers: track.headers.clone(),
        ..Default::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_and_playable_names() {
        assert_eq!(title_of(Path::new("/m/01 Sine.mp3")), "01 Sine");
        assert!(playable(Path::new("a.MP3")));
        assert!(!playable(Path::new("cover.jpg")));
    }

    #[test]
    fn garbage_is_not_a_track() {
        let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        assert!(frames(garbage, Path::new("x.mp3")).is_err());
    }
}
