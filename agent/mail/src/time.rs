//! Dates in the two formats mail needs, in UTC: RFC 5322 (`Received:`) and IMAP `INTERNALDATE`.
//! The calendar is jiff's.

use std::time::SystemTime;

use jiff::Timestamp;
use jiff::tz::TimeZone;

fn utc(t: SystemTime) -> jiff::Zoned {
    // Times before 1970 or past 9999 cannot be a file's; they read as the epoch.
    Timestamp::try_from(t)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(TimeZone::UTC)
}

/// `Tue, 14 Nov 2023 22:13:20 +0000`
pub fn rfc5322(t: SystemTime) -> String {
    utc(t).strftime("%a, %-d %b %Y %H:%M:%S +0000").to_string()
}

/// `14-Nov-2023 22:13:20 +0000`
pub fn internal_date(t: SystemTime) -> String {
    utc(t).strftime("%d-%b-%Y %H:%M:%S +0000").to_string()
}

/// An APPEND date-time (`17-Jul-1996 02:44:25 -0700`, the day maybe space-padded).
pub fn parse_internal_date(s: &str) -> Option<SystemTime> {
    let s = s.trim_start();
    let zoned = jiff::fmt::strtime::parse("%d-%b-%Y %H:%M:%S %z", s)
        .ok()?
        .to_timestamp()
        .ok()?;
    Some(SystemTime::from(zoned))
}

/// The UTC calendar date of a time: (year, month, day).
pub fn utc_date(t: SystemTime) -> (i16, i8, i8) {
    let d = utc(t).date();
    (d.year(), d.month(), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn known_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc5322(t), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(internal_date(t), "14-Nov-2023 22:13:20 +0000");
        assert_eq!(rfc5322(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(internal_date(leap), "29-Feb-2000 00:00:00 +0000");
        let parsed = parse_internal_date("17-Jul-1996 02:44:25 -0700").expect("parses");
        assert_eq!(internal_date(parsed), "17-Jul-1996 09:44:25 +0000");
        assert!(parse_internal_date(" 7-Jul-1996 02:44:25 +0000").is_some());
        assert!(parse_internal_date("yesterday").is_none());
        assert_eq!(utc_date(leap), (2000, 2, 29));
    }
}
