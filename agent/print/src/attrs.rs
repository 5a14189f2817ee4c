//! The printer's and jobs' attributes as IPP reports them, and the job template values the
//! printer takes. Everything stated is what the role does: it keeps each document as sent (one
//! copy, no duplex, no imposition, no margins of its own), so the "supported" values are the
//! ones that describe a digital output tray.

use std::collections::BTreeSet;

use crate::document;
use crate::jobs::Job;
use crate::wire::{Attribute, Group, Value, tag};

/// Operations the printer answers (`operations-supported`).
pub mod op {
    pub const PRINT_JOB: u16 = 0x0002;
    pub const VALIDATE_JOB: u16 = 0x0004;
    pub const CREATE_JOB: u16 = 0x0005;
    pub const SEND_DOCUMENT: u16 = 0x0006;
    pub const CANCEL_JOB: u16 = 0x0008;
    pub const GET_JOB_ATTRIBUTES: u16 = 0x0009;
    pub const GET_JOBS: u16 = 0x000A;
    pub const GET_PRINTER_ATTRIBUTES: u16 = 0x000B;
    pub const CANCEL_MY_JOBS: u16 = 0x0039;
    pub const CLOSE_JOB: u16 = 0x003B;
    pub const IDENTIFY_PRINTER: u16 = 0x003C;
    pub const ALL: [u16; 11] = [
        PRINT_JOB,
        VALIDATE_JOB,
        CREATE_JOB,
        SEND_DOCUMENT,
        CANCEL_JOB,
        GET_JOB_ATTRIBUTES,
        GET_JOBS,
        GET_PRINTER_ATTRIBUTES,
        CANCEL_MY_JOBS,
        CLOSE_JOB,
        IDENTIFY_PRINTER,
    ];
}

/// IPP status codes the printer answers.
pub mod status {
    pub const OK: u16 = 0x0000;
    pub const OK_IGNORED: u16 = 0x0001;
    pub const BAD_REQUEST: u16 = 0x0400;
    pub const NOT_AUTHORIZED: u16 = 0x0403;
    pub const NOT_POSSIBLE: u16 = 0x0404;
    pub const NOT_FOUND: u16 = 0x0406;
    pub const TOO_LARGE: u16 = 0x0408;
    pub const FORMAT_NOT_SUPPORTED: u16 = 0x040A;
    pub const ATTRIBUTES_NOT_SUPPORTED: u16 = 0x040B;
    pub const CHARSET_NOT_SUPPORTED: u16 = 0x040D;
    pub const COMPRESSION_NOT_SUPPORTED: u16 = 0x040F;
    pub const FORMAT_ERROR: u16 = 0x0411;
    pub const INTERNAL_ERROR: u16 = 0x0500;
    pub const OPERATION_NOT_SUPPORTED: u16 = 0x0501;
    pub const VERSION_NOT_SUPPORTED: u16 = 0x0503;
    pub const TEMPORARY_ERROR: u16 = 0x0505;
    pub const MULTIPLE_DOCUMENTS_NOT_SUPPORTED: u16 = 0x0509;
    pub const TOO_MANY_JOBS: u16 = 0x050B;
}

/// The media the printer lists: (keyword, width, length in hundredths of a millimetre).
pub const MEDIA: [(&str, i32, i32); 2] = [
    ("iso_a4_210x297mm", 21000, 29700),
    ("na_letter_8.5x11in", 21590, 27940),
];

/// Which `requested-attributes` group a printer attribute belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Description,
    Template,
    /// Only when asked by name or as `media-col-database` (not part of `all`).
    MediaColDatabase,
}

/// What the printer attributes depend on beyond the configuration.
pub struct PrinterState<'a> {
    pub name: &'a str,
    pub location: &'a str,
    pub info: &'a str,
    pub uuid: &'a str,
    /// `ipp://host:port/ipp/print` (or `ipps://`) as this client reached it.
    pub uri: String,
    /// `http://host:port/` (or `https://`).
    pub more_info: String,
    pub tls: bool,
    pub users: bool,
    pub queued: usize,
    pub accepting: bool,
    /// Unix seconds.
    pub now: u64,
    pub started: u64,
    pub max_job_bytes: u64,
}

fn kw(s: &str) -> Value {
    Value::keyword(s)
}

fn media_col(width: i32, length: i32) -> Value {
    Value::Collection(vec![
        Attribute::new(
            "media-size",
            Value::Collection(vec![
                Attribute::new("x-dimension", Value::integer(width)),
                Attribute::new("y-dimension", Value::integer(length)),
            ]),
        ),
        Attribute::new("media-top-margin", Value::integer(0)),
        Attribute::new("media-bottom-margin", Value::integer(0)),
        Attribute::new("media-left-margin", Value::integer(0)),
        Attribute::new("media-right-margin", Value::integer(0)),
        Attribute::new("media-source", kw("main")),
        Attribute::new("media-type", kw("stationery")),
    ])
}

/// An RFC 2579 DateAndTime of a Unix time, UTC.
pub fn date_time(unix: u64) -> Value {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
    let y = year.to_be_bytes();
    Value::DateTime([
        y[0],
        y[1],
        month,
        day,
        (secs / 3600) as u8,
        ((secs / 60) % 60) as u8,
        (secs % 60) as u8,
        0,
        b'+',
        0,
        0,
    ])
}

fn clamp(unix: u64) -> i32 {
    i32::try_from(unix).unwrap_or(i32::MAX)
}

/// Every printer attribute with its kind.
pub fn printer(p: &PrinterState<'_>) -> Vec<(Kind, Attribute)> {
    use Kind::{Description as D, MediaColDatabase as M, Template as T};
    let one = |name: &str, v: Value| Attribute::new(name, v);
    let many = |name: &str, v: Vec<Value>| Attribute::many(name, v);
    let formats: Vec<Value> = document::SUPPORTED.iter().map(|m| Value::mime(m)).collect();
    let (security, auth) = (
        if p.tls { "tls" } else { "none" },
        if p.users { "basic" } else { "none" },
    );
    let media_kw: Vec<Value> = MEDIA.iter().map(|(k, ..)| kw(k)).collect();
    let media_cols: Vec<Value> = MEDIA.iter().map(|(_, w, l)| media_col(*w, *l)).collect();
    let sizes: Vec<Value> = MEDIA
        .iter()
        .map(|(_, w, l)| {
            Value::Collection(vec![
                Attribute::new("x-dimension", Value::integer(*w)),
                Attribute::new("y-dimension", Value::integer(*l)),
            ])
        })
        .collect();
    let up = clamp(p.now).max(1);
    vec![
        (
            D,
            one(
                "charset-configured",
                Value::Bytes(tag::CHARSET, b"utf-8".to_vec()),
            ),
        ),
        (
            D,
            many(
                "charset-supported",
                vec![
                    Value::Bytes(tag::CHARSET, b"utf-8".to_vec()),
                    Value::Bytes(tag::CHARSET, b"us-ascii".to_vec()),
                ],
            ),
        ),
        (
            D,
            one(
                "natural-language-configured",
                Value::Bytes(tag::LANGUAGE, b"en".to_vec()),
            ),
        ),
        (
            D,
            one(
                "generated-natural-language-supported",
                Value::Bytes(tag::LANGUAGE, b"en".to_vec()),
            ),
        ),
        (D, one("compression-supported", kw("none"))),
        (
            D,
            one("document-format-default", Value::mime(document::AUTO)),
        ),
        (D, many("document-format-supported", formats)),
        (D, one("pdl-override-supported", kw("not-attempted"))),
        (
            D,
            many("ipp-versions-supported", vec![kw("1.1"), kw("2.0")]),
        ),
        (D, one("ipp-features-supported", kw("ipp-everywhere"))),
        (
            D,
            many(
                "operations-supported",
                op::ALL
                    .iter()
                    .map(|o| Value::enumeration(i32::from(*o)))
                    .collect(),
            ),
        ),
        (
            D,
            one("multiple-document-jobs-supported", Value::Bool(false)),
        ),
        (D, one("multiple-operation-time-out", Value::integer(60))),
        (
            D,
            one("multiple-operation-time-out-action", kw("abort-job")),
        ),
        (D, one("job-ids-supported", Value::Bool(true))),
        (
            D,
            many(
                "which-jobs-supported",
                vec![kw("completed"), kw("not-completed")],
            ),
        ),
        (
            D,
            one("printer-get-attributes-supported", kw("document-format")),
        ),
        (
            D,
            one(
                "job-k-octets-supported",
                Value::Range(0, clamp(p.max_job_bytes.div_ceil(1024))),
            ),
        ),
        (D, one("printer-name", Value::name(p.name))),
        (D, one("printer-location", Value::text(p.location))),
        (D, one("printer-info", Value::text(p.info))),
        (
            D,
            one("printer-make-and-model", Value::text("hostrole print role")),
        ),
        (
            D,
            one(
                "printer-device-id",
                Value::text("MFG:hostrole;MDL:print role;CMD:PDF,PWGRaster,JPEG;CLS:PRINTER;"),
            ),
        ),
        (D, one("printer-more-info", Value::uri(&p.more_info))),
        (
            D,
            one(
                "printer-icons",
                Value::uri(&format!("{}icon.png", p.more_info)),
            ),
        ),
        (D, one("printer-uuid", Value::uri(p.uuid))),
        (D, one("printer-uri-supported", Value::uri(&p.uri))),
        (D, one("uri-security-supported", kw(security))),
        (D, one("uri-authentication-supported", kw(auth))),
        (
            D,
            one(
                "printer-state",
                Value::enumeration(if p.queued > 0 { 4 } else { 3 }),
            ),
        ),
        (D, one("printer-state-reasons", kw("none"))),
        (D, one("printer-state-message", Value::text(""))),
        (
            D,
            one("printer-is-accepting-jobs", Value::Bool(p.accepting)),
        ),
        (
            D,
            one(
                "queued-job-count",
                Value::integer(i32::try_from(p.queued).unwrap_or(i32::MAX)),
            ),
        ),
        (D, one("printer-up-time", Value::integer(up))),
        (D, one("printer-current-time", date_time(p.now))),
        (
            D,
            one(
                "printer-config-change-time",
                Value::integer(clamp(p.started).max(1)),
            ),
        ),
        (
            D,
            one("printer-config-change-date-time", date_time(p.started)),
        ),
        (
            D,
            one(
                "printer-state-change-time",
                Value::integer(clamp(p.started).max(1)),
            ),
        ),
        (
            D,
            one("printer-state-change-date-time", date_time(p.started)),
        ),
        (
            D,
            one("printer-geo-location", Value::OutOfBand(tag::UNKNOWN)),
        ),
        (D, one("printer-organization", Value::text(""))),
        (D, one("printer-organizational-unit", Value::text(""))),
        (D, one("printer-kind", kw("document"))),
        (D, one("color-supported", Value::Bool(true))),
        // Required by PWG 5100.12; nominal, since writing a file is not paced by pages.
        (D, one("pages-per-minute", Value::integer(60))),
        (D, one("pages-per-minute-color", Value::integer(60))),
        (D, one("preferred-attributes-supported", Value::Bool(false))),
        (D, many("identify-actions-supported", vec![kw("display")])),
        (D, one("identify-actions-default", kw("display"))),
        (
            D,
            many(
                "pwg-raster-document-resolution-supported",
                vec![
                    Value::Resolution(150, 150, 3),
                    Value::Resolution(300, 300, 3),
                ],
            ),
        ),
        (
            D,
            many(
                "pwg-raster-document-type-supported",
                vec![kw("black_1"), kw("sgray_8"), kw("srgb_8")],
            ),
        ),
        (D, one("pwg-raster-document-sheet-back", kw("normal"))),
        (
            D,
            many(
                "job-creation-attributes-supported",
                [
                    "copies",
                    "finishings",
                    "media",
                    "media-col",
                    "orientation-requested",
                    "output-bin",
                    "print-color-mode",
                    "print-quality",
                    "printer-resolution",
                    "sides",
                ]
                .iter()
                .map(|k| kw(k))
                .collect(),
            ),
        ),
        (T, one("copies-default", Value::integer(1))),
        (T, one("copies-supported", Value::Range(1, 1))),
        (T, one("finishings-default", Value::enumeration(3))),
        (T, one("finishings-supported", Value::enumeration(3))),
        (T, one("media-default", kw(MEDIA[0].0))),
        (T, many("media-supported", media_kw.clone())),
        (T, many("media-ready", media_kw)),
        (
            T,
            one("media-col-default", media_col(MEDIA[0].1, MEDIA[0].2)),
        ),
        (T, many("media-col-ready", media_cols.clone())),
        (M, many("media-col-database", media_cols)),
        (
            T,
            many(
                "media-col-supported",
                [
                    "media-size",
                    "media-top-margin",
                    "media-bottom-margin",
                    "media-left-margin",
                    "media-right-margin",
                    "media-source",
                    "media-type",
                ]
                .iter()
                .map(|k| kw(k))
                .collect(),
            ),
        ),
        (T, many("media-size-supported", sizes)),
        (T, one("media-top-margin-supported", Value::integer(0))),
        (T, one("media-bottom-margin-supported", Value::integer(0))),
        (T, one("media-left-margin-supported", Value::integer(0))),
        (T, one("media-right-margin-supported", Value::integer(0))),
        (T, one("media-source-supported", kw("main"))),
        (T, one("media-type-supported", kw("stationery"))),
        (
            T,
            one(
                "orientation-requested-default",
                Value::OutOfBand(tag::NO_VALUE),
            ),
        ),
        (
            T,
            many(
                "orientation-requested-supported",
                (3..=6).map(Value::enumeration).collect(),
            ),
        ),
        (T, one("output-bin-default", kw("face-up"))),
        (T, one("output-bin-supported", kw("face-up"))),
        (T, one("print-color-mode-default", kw("auto"))),
        (
            T,
            many(
                "print-color-mode-supported",
                vec![kw("auto"), kw("color"), kw("monochrome")],
            ),
        ),
        // The document is kept as sent: the printer neither optimizes nor converts colors.
        (T, one("print-content-optimize-default", kw("auto"))),
        (T, one("print-content-optimize-supported", kw("auto"))),
        (T, one("print-rendering-intent-default", kw("auto"))),
        (T, one("print-rendering-intent-supported", kw("auto"))),
        (T, one("print-quality-default", Value::enumeration(4))),
        (T, one("print-quality-supported", Value::enumeration(4))),
        (
            T,
            one("printer-resolution-default", Value::Resolution(300, 300, 3)),
        ),
        (
            T,
            one(
                "printer-resolution-supported",
                Value::Resolution(300, 300, 3),
            ),
        ),
        (T, one("sides-default", kw("one-sided"))),
        (T, one("sides-supported", kw("one-sided"))),
    ]
}

/// The printer attributes `requested` names (`None`: all).
pub fn select_printer(
    all: Vec<(Kind, Attribute)>,
    requested: Option<&BTreeSet<String>>,
) -> Vec<Attribute> {
    all.into_iter()
        .filter(|(kind, a)| match requested {
            None => *kind != Kind::MediaColDatabase,
            Some(r) => {
                r.contains(&a.name)
                    || (r.contains("all") && *kind != Kind::MediaColDatabase)
                    || (r.contains("printer-description") && *kind == Kind::Description)
                    || (r.contains("job-template") && *kind == Kind::Template)
                    || (r.contains("media-col-database") && *kind == Kind::MediaColDatabase)
            }
        })
        .map(|(_, a)| a)
        .collect()
}

/// Attributes of a job anyone may see (with users, other users' jobs show only these).
const PUBLIC_JOB: [&str; 9] = [
    "job-id",
    "job-uri",
    "job-printer-uri",
    "job-state",
    "job-state-reasons",
    "time-at-creation",
    "time-at-processing",
    "time-at-completed",
    "job-printer-up-time",
];

fn time_or_none(t: Option<u64>) -> Value {
    t.map_or(Value::OutOfBand(tag::NO_VALUE), |t| {
        Value::integer(clamp(t))
    })
}

fn date_or_none(t: Option<u64>) -> Value {
    t.map_or(Value::OutOfBand(tag::NO_VALUE), date_time)
}

/// A job's attributes: those `requested` names (`None`: all), only the public ones unless
/// `owner`.
pub fn job(
    j: &Job,
    printer_uri: &str,
    now: u64,
    requested: Option<&BTreeSet<String>>,
    owner: bool,
) -> Group {
    let mut all = vec![
        Attribute::new("job-id", Value::integer(j.id)),
        Attribute::new("job-uri", Value::uri(&format!("{printer_uri}/{}", j.id))),
        Attribute::new("job-printer-uri", Value::uri(printer_uri)),
        Attribute::new("job-state", Value::enumeration(j.state as i32)),
        Attribute::new("job-state-reasons", Value::keyword(&j.reason)),
        Attribute::new("time-at-creation", Value::integer(clamp(j.created))),
        Attribute::new("time-at-processing", time_or_none(j.processing)),
        Attribute::new("time-at-completed", time_or_none(j.finished)),
        Attribute::new("job-printer-up-time", Value::integer(clamp(now).max(1))),
        Attribute::new("date-time-at-creation", date_time(j.created)),
        Attribute::new("date-time-at-processing", date_or_none(j.processing)),
        Attribute::new("date-time-at-completed", date_or_none(j.finished)),
        Attribute::new("job-name", Value::name(&j.name)),
        Attribute::new("job-originating-user-name", Value::name(&j.user)),
        Attribute::new("job-state-message", Value::text(&j.message)),
        Attribute::new("document-format", Value::mime(&j.declared_format)),
        Attribute::new(
            "job-k-octets",
            Value::integer(clamp(j.bytes.div_ceil(1024))),
        ),
        Attribute::new(
            "number-of-documents",
            Value::integer(i32::from(j.format.is_some())),
        ),
        Attribute::new("job-impressions-completed", Value::integer(0)),
    ];
    if let Some(f) = j.format {
        all.push(Attribute::new(
            "document-format-detected",
            Value::mime(f.mime()),
        ));
    }
    let description = |n: &str| !matches!(n, "job-id" | "job-uri");
    let attributes = all
        .into_iter()
        .filter(|a| owner || PUBLIC_JOB.contains(&a.name.as_str()))
        .filter(|a| match requested {
            None => true,
            Some(r) => {
                r.contains(&a.name)
                    || r.contains("all")
                    || (r.contains("job-description") && description(&a.name))
                    || (r.contains("job-status") && a.name.starts_with("job-"))
            }
        })
        .collect();
    Group {
        tag: crate::wire::group::JOB,
        attributes,
    }
}

/// The job template attributes of a request's job group the printer does not take as given,
/// as the unsupported group lists them.
pub fn unsupported_template(job: Option<&Group>) -> Vec<Attribute> {
    let Some(job) = job else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for a in &job.attributes {
        let ok = match a.name.as_str() {
            "copies" => a.values.iter().all(|v| v.as_int() == Some(1)),
            "finishings" => a.values.iter().all(|v| v.as_int() == Some(3)),
            "media" => a.values.iter().all(|v| {
                v.as_str()
                    .is_some_and(|m| MEDIA.iter().any(|(k, ..)| *k == m))
            }),
            "media-col" => a.values.iter().all(|v| matches!(v, Value::Collection(_))),
            "orientation-requested" => a
                .values
                .iter()
                .all(|v| v.as_int().is_some_and(|o| (3..=6).contains(&o))),
            "output-bin" => a.values.iter().all(|v| v.as_str() == Some("face-up")),
            "print-color-mode" => a.values.iter().all(|v| {
                v.as_str()
                    .is_some_and(|m| ["auto", "color", "monochrome"].contains(&m))
            }),
            "print-quality" => a.values.iter().all(|v| v.as_int() == Some(4)),
            "print-content-optimize" | "print-rendering-intent" => {
                a.values.iter().all(|v| v.as_str() == Some("auto"))
            }
            "printer-resolution" => a
                .values
                .iter()
                .all(|v| *v == Value::Resolution(300, 300, 3)),
            "sides" => a.values.iter().all(|v| v.as_str() == Some("one-sided")),
            // Not a job template of its own: a hint PWG 5100.7 lets clients send.
            "job-name" | "document-name" => true,
            _ => false,
        };
        if !ok {
            out.push(Attribute::new(&a.name, Value::OutOfBand(tag::UNSUPPORTED)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_time_is_utc_civil_time() {
        // 2024-02-29 12:34:56 UTC
        let v = date_time(1_709_210_096);
        assert_eq!(
            v,
            Value::DateTime([0x07, 0xE8, 2, 29, 12, 34, 56, 0, b'+', 0, 0])
        );
        assert_eq!(
            date_time(0),
            Value::DateTime([0x07, 0xB2, 1, 1, 0, 0, 0, 0, b'+', 0, 0])
        );
    }
}
