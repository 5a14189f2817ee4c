//! `/status-json.xsl` in Icecast 2.4's shape: `icestats` with one `source` per mount on the
//! air, an object when there is one and a list when there are several (absent when none), as
//! Icecast's XSLT renders it.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// One mount as the status page shows it.
#[derive(Debug, Clone)]
pub struct SourceStatus {
    pub listenurl: String,
    pub server_name: String,
    pub server_description: String,
    pub server_type: String,
    pub listeners: usize,
    pub listener_peak: usize,
    pub stream_start: Option<SystemTime>,
    pub title: String,
    pub bitrate: Option<u32>,
}

/// The page.
pub fn page(host: &str, started: SystemTime, sources: &[SourceStatus]) -> Value {
    let mut stats = json!({
        "admin": "icemaster@localhost",
        "host": host,
        "location": "Earth",
        "server_id": concat!("hostrole-", env!("CARGO_PKG_VERSION")),
        "server_start": rfc2822ish(started),
        "server_start_iso8601": iso8601(started),
    });
    let list: Vec<Value> = sources
        .iter()
        .map(|s| {
            let mut v = json!({
                "genre": "various",
                "listener_peak": s.listener_peak,
                "listeners": s.listeners,
                "listenurl": s.listenurl,
                "server_description": s.server_description,
                "server_name": s.server_name,
                "server_type": s.server_type,
                "server_url": null,
                "title": s.title,
                "dummy": null,
            });
            if let Some(t) = s.stream_start {
                v["stream_start"] = rfc2822ish(t).into();
                v["stream_start_iso8601"] = iso8601(t).into();
            }
            if let Some(b) = s.bitrate {
                v["bitrate"] = b.into();
                v["audio_info"] = format!("bitrate={b}").into();
            }
            v
        })
        .collect();
    match list.len() {
        0 => {}
        1 => stats["source"] = list.into_iter().next().unwrap_or(Value::Null),
        _ => stats["source"] = Value::Array(list),
    }
    json!({ "icestats": stats })
}

/// Civil date and time (UTC) of a time: (year, month, day, hour, minute, second, weekday 0=Sun).
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, usize) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    let weekday = (days + 4).rem_euclid(7) as usize;
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
        weekday,
    )
}

/// `2026-12-02T10:54:27+0000`, as Icecast writes it.
pub fn iso8601(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+0000")
}

/// `Wed, 02 Dec 2026 10:54:27 +0000`, Icecast's `server_start`.
pub fn rfc2822ish(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, wd) = civil(t);
    format!(
        "{}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} +0000",
        DAYS[wd],
        MONTHS[(mo as usize).saturating_sub(1) % 12]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn source(n: usize) -> SourceStatus {
        SourceStatus {
            listenurl: format!("http://h:8000/m{n}"),
            server_name: "Station".into(),
            server_description: "d".into(),
            server_type: "audio/mpeg".into(),
            listeners: n,
            listener_peak: n + 1,
            stream_start: Some(UNIX_EPOCH),
            title: "t".into(),
            bitrate: Some(128),
        }
    }

    #[test]
    fn times_are_icecasts_formats() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_208_867); // 2026-12-02T10:54:27Z
        assert_eq!(iso8601(t), "2026-12-02T10:54:27+0000");
        assert_eq!(rfc2822ish(t), "Wed, 02 Dec 2026 10:54:27 +0000");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00+0000");
    }

    #[test]
    fn one_source_is_an_object_several_a_list_none_absent() {
        let p = page("h", UNIX_EPOCH, &[source(1)]);
        let s = &p["icestats"]["source"];
        assert!(s.is_object());
        assert_eq!(s["listeners"], 1);
        assert_eq!(s["listener_peak"], 2);
        assert_eq!(s["bitrate"], 128);
        assert_eq!(s["stream_start_iso8601"], "1970-01-01T00:00:00+0000");
        assert!(
            p["icestats"]["server_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("hostrole-"))
        );
        let p = page("h", UNIX_EPOCH, &[source(1), source(2)]);
        assert_eq!(p["icestats"]["source"].as_array().map(Vec::len), Some(2));
        let p = page("h", UNIX_EPOCH, &[]);
        assert!(p["icestats"].get("source").is_none());
    }
}
