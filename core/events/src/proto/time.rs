//! `google.protobuf.Timestamp` and `Duration` as Teleport's Go code sees them.

use super::{
    DecodeError, Message, UnknownFields, WireType, expect_wire, keep_unknown, read_varint,
};

/// Seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z) since the Unix epoch.
pub const GO_ZERO_SECONDS: i64 = -62_135_596_800;
/// First second after year 9999 (Go rejects timestamps from there on).
pub const MAX_SECONDS: i64 = 253_402_300_800;

/// A point in time with nanosecond precision, in UTC.
///
/// The default is Go's zero time, 0001-01-01T00:00:00Z: a Teleport event whose time was never
/// set carries exactly that on the wire (`seconds = -62135596800`) and in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub seconds: i64,
    /// Nanoseconds within the second, 0..1e9.
    pub nanos: i32,
}

impl Default for Timestamp {
    fn default() -> Self {
        Timestamp {
            seconds: GO_ZERO_SECONDS,
            nanos: 0,
        }
    }
}

impl Timestamp {
    /// Go's zero time.
    pub const ZERO: Timestamp = Timestamp {
        seconds: GO_ZERO_SECONDS,
        nanos: 0,
    };

    /// A timestamp from Unix nanoseconds.
    pub const fn from_unix_nanos(n: i128) -> Timestamp {
        let seconds = n.div_euclid(1_000_000_000) as i64;
        let nanos = n.rem_euclid(1_000_000_000) as i32;
        Timestamp { seconds, nanos }
    }

    /// A timestamp from Unix milliseconds.
    pub const fn from_unix_millis(ms: i64) -> Timestamp {
        Timestamp::from_unix_nanos(ms as i128 * 1_000_000)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn unix_nanos(&self) -> i128 {
        self.seconds as i128 * 1_000_000_000 + self.nanos as i128
    }

    /// Milliseconds since the Unix epoch (rounded down).
    pub const fn unix_millis(&self) -> i64 {
        self.unix_nanos().div_euclid(1_000_000) as i64
    }

    /// Whether this is Go's zero time.
    pub const fn is_zero(&self) -> bool {
        self.seconds == GO_ZERO_SECONDS && self.nanos == 0
    }

    /// Rounds to the nearest millisecond, halves away from zero, as Go's `Round(time.Millisecond)`.
    pub const fn round_to_millis(&self) -> Timestamp {
        // Go rounds the duration since the zero time; halves round up (away from zero, and
        // times are after the zero time).
        let ms_rem = self.nanos % 1_000_000;
        let base = self.nanos - ms_rem;
        if ms_rem >= 500_000 {
            Timestamp::from_unix_nanos(
                self.seconds as i128 * 1_000_000_000 + base as i128 + 1_000_000,
            )
        } else {
            Timestamp {
                seconds: self.seconds,
                nanos: base,
            }
        }
    }

    /// Whether Go accepts this value (year 1 to 9999, nanos in range).
    pub const fn is_valid(&self) -> bool {
        self.seconds >= GO_ZERO_SECONDS
            && self.seconds < MAX_SECONDS
            && self.nanos >= 0
            && self.nanos < 1_000_000_000
    }

    /// RFC 3339 with nanoseconds, trailing zeros trimmed, `Z` (Go's `time.Time` JSON form).
    pub fn to_rfc3339(&self) -> String {
        let mut s = String::with_capacity(30);
        self.write_rfc3339(&mut s);
        s
    }

    /// Appends the RFC 3339 form to `out`.
    pub fn write_rfc3339(&self, out: &mut String) {
        let days = self.seconds.div_euclid(86_400);
        let secs = self.seconds.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (secs / 3600, (secs / 60) % 60, secs % 60);
        push_num(out, y, 4);
        out.push('-');
        push_num(out, m as i64, 2);
        out.push('-');
        push_num(out, d as i64, 2);
        out.push('T');
        push_num(out, hh, 2);
        out.push(':');
        push_num(out, mm, 2);
        out.push(':');
        push_num(out, ss, 2);
        if self.nanos > 0 {
            let mut n = self.nanos as u32;
            let mut width = 9;
            while n.is_multiple_of(10) {
                n /= 10;
                width -= 1;
            }
            out.push('.');
            push_num(out, n as i64, width);
        }
        out.push('Z');
    }

    /// Parses RFC 3339 (any offset, optional fraction) as Go's `time.Time` JSON decoder does.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 20 {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = b.get(r)?;
            if !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Some(
                part.iter()
                    .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
            )
        };
        let year = num(0..4)?;
        let month = num(5..7)?;
        let day = num(8..10)?;
        let hour = num(11..13)?;
        let minute = num(14..16)?;
        let second = num(17..19)?;
        if b[4] != b'-'
            || b[7] != b'-'
            || !(b[10] == b'T' || b[10] == b't')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let mut i = 19;
        let mut nanos = 0i64;
        if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 9 {
                    nanos = nanos * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            let digits = i - start;
            if digits == 0 {
                return None;
            }
            for _ in digits..9 {
                nanos *= 10;
            }
        }
        let offset = match b.get(i)? {
            b'Z' | b'z' if i + 1 == b.len() => 0,
            sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
                let oh = num(i + 1..i + 3)?;
                let om = num(i + 4..i + 6)?;
                if oh > 23 || om > 59 {
                    return None;
                }
                let v = oh * 3600 + om * 60;
                if *sign == b'-' { -v } else { v }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month as u32, day as u32);
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
        Some(Timestamp {
            seconds,
            nanos: nanos as i32,
        })
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

fn push_num(out: &mut String, v: i64, width: usize) {
    let s = v.to_string();
    for _ in s.len()..width {
        out.push('0');
    }
    out.push_str(&s);
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Proleptic Gregorian date of a day count since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[allow(clippy::too_many_arguments)] // one argument per wire field, kept flat for speed
fn merge_seconds_nanos(
    name: &'static str,
    seconds: &mut i64,
    nanos: &mut i32,
    field: u32,
    wire_type: WireType,
    key_start: &[u8],
    buf: &mut &[u8],
    unknown: &mut UnknownFields,
) -> Result<(), DecodeError> {
    match field {
        1 => {
            expect_wire(name, 1, wire_type, WireType::Varint)?;
            *seconds = read_varint(buf)? as i64;
        }
        2 => {
            expect_wire(name, 2, wire_type, WireType::Varint)?;
            *nanos = read_varint(buf)? as i32;
        }
        _ => keep_unknown(unknown, wire_type, key_start, buf)?,
    }
    Ok(())
}

fn seconds_nanos_len(seconds: i64, nanos: i32) -> usize {
    let mut n = 0;
    if seconds != 0 {
        n += 1 + super::varint_len(seconds as u64);
    }
    if nanos != 0 {
        n += 1 + super::varint_len(nanos as i64 as u64);
    }
    n
}

fn put_seconds_nanos(buf: &mut Vec<u8>, seconds: i64, nanos: i32) {
    if seconds != 0 {
        buf.push(0x08);
        super::put_varint(buf, seconds as u64);
    }
    if nanos != 0 {
        buf.push(0x10);
        super::put_varint(buf, nanos as i64 as u64);
    }
}

/// Wire form of a [`Timestamp`] (a message with the same two fields).
///
/// Decoding starts from the Unix epoch, as the protobuf message does; Go's zero time only
/// applies when the field is absent altogether.
#[derive(Debug, Default)]
pub struct TimestampWire {
    seconds: i64,
    nanos: i32,
    unknown: UnknownFields,
}

impl TimestampWire {
    /// The decoded value, checked as Go's `TimestampFromProto` does.
    pub fn into_timestamp(self) -> Result<Timestamp, DecodeError> {
        let t = Timestamp {
            seconds: self.seconds,
            nanos: self.nanos,
        };
        if t.is_valid() {
            Ok(t)
        } else {
            Err(DecodeError::InvalidValue(
                "a timestamp (outside years 1-9999)",
            ))
        }
    }
}

impl Message for TimestampWire {
    const NAME: &'static str = "google.protobuf.Timestamp";
    fn encoded_len(&self) -> usize {
        seconds_nanos_len(self.seconds, self.nanos)
    }
    fn encode_raw(&self, buf: &mut Vec<u8>) {
        put_seconds_nanos(buf, self.seconds, self.nanos)
    }
    fn merge_field(
        &mut self,
        field: u32,
        wire_type: WireType,
        key_start: &[u8],
        buf: &mut &[u8],
        _depth: u32,
    ) -> Result<(), DecodeError> {
        merge_seconds_nanos(
            Self::NAME,
            &mut self.seconds,
            &mut self.nanos,
            field,
            wire_type,
            key_start,
            buf,
            &mut self.unknown,
        )
    }
}

impl Message for Timestamp {
    const NAME: &'static str = "google.protobuf.Timestamp";
    fn encoded_len(&self) -> usize {
        seconds_nanos_len(self.seconds, self.nanos)
    }
    fn encode_raw(&self, buf: &mut Vec<u8>) {
        put_seconds_nanos(buf, self.seconds, self.nanos)
    }
    fn merge_field(
        &mut self,
        field: u32,
        wire_type: WireType,
        key_start: &[u8],
        buf: &mut &[u8],
        _depth: u32,
    ) -> Result<(), DecodeError> {
        let mut ignored = UnknownFields::default();
        merge_seconds_nanos(
            Self::NAME,
            &mut self.seconds,
            &mut self.nanos,
            field,
            wire_type,
            key_start,
            buf,
            &mut ignored,
        )
    }
}

/// Reads a nested Timestamp the way gogoproto's `StdTimeUnmarshal` does: the message replaces
/// the old value, starting from the Unix epoch, and must be a valid Go time.
pub fn read_std_time(buf: &mut &[u8], depth: u32) -> Result<Timestamp, DecodeError> {
    let mut wire = TimestampWire::default();
    super::merge_nested(&mut wire, buf, depth)?;
    wire.into_timestamp()
}

/// A span of time in nanoseconds (Go's `time.Duration`), `google.protobuf.Duration` on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub i64);

impl Message for Duration {
    const NAME: &'static str = "google.protobuf.Duration";
    fn encoded_len(&self) -> usize {
        seconds_nanos_len(self.0 / 1_000_000_000, (self.0 % 1_000_000_000) as i32)
    }
    fn encode_raw(&self, buf: &mut Vec<u8>) {
        put_seconds_nanos(buf, self.0 / 1_000_000_000, (self.0 % 1_000_000_000) as i32)
    }
    fn merge_field(
        &mut self,
        field: u32,
        wire_type: WireType,
        key_start: &[u8],
        buf: &mut &[u8],
        _depth: u32,
    ) -> Result<(), DecodeError> {
        let mut seconds = self.0 / 1_000_000_000;
        let mut nanos = (self.0 % 1_000_000_000) as i32;
        let mut ignored = UnknownFields::default();
        merge_seconds_nanos(
            Self::NAME,
            &mut seconds,
            &mut nanos,
            field,
            wire_type,
            key_start,
            buf,
            &mut ignored,
        )?;
        self.0 = seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(nanos));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(Timestamp::ZERO.to_rfc3339(), "0001-01-01T00:00:00Z");
        assert_eq!(
            Timestamp {
                seconds: 0,
                nanos: 0
            }
            .to_rfc3339(),
            "1970-01-01T00:00:00Z"
        );
        let t = Timestamp::parse_rfc3339("2021-11-18T15:34:00.069Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2021-11-18T15:34:00.069Z");
        let t = Timestamp::parse_rfc3339("2026-03-27T16:36:15.040647Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-27T16:36:15.040647Z");
        let t = Timestamp::parse_rfc3339("2020-04-07T18:45:07Z").unwrap();
        assert_eq!(t.seconds, 1_586_285_107);
        let t = Timestamp::parse_rfc3339("2020-04-07T20:45:07.5+02:00").unwrap();
        assert_eq!(
            t,
            Timestamp {
                seconds: 1_586_285_107,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            Timestamp::parse_rfc3339("9999-12-31T23:59:59.999999999Z")
                .unwrap()
                .seconds,
            MAX_SECONDS - 1
        );
    }

    #[test]
    fn rejects_bad_times() {
        for s in [
            "",
            "2021-13-01T00:00:00Z",
            "2021-02-30T00:00:00Z",
            "2021-01-01 00:00:00Z",
            "2021-01-01T00:00:00",
            "2021-01-01T00:00:00.Z",
        ] {
            assert!(Timestamp::parse_rfc3339(s).is_none(), "{s}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in [-719_162i64, -1, 0, 1, 10_957, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn rounds_to_millis_like_go() {
        let t = Timestamp {
            seconds: 10,
            nanos: 1_499_999,
        };
        assert_eq!(
            t.round_to_millis(),
            Timestamp {
                seconds: 10,
                nanos: 1_000_000
            }
        );
        let t = Timestamp {
            seconds: 10,
            nanos: 999_500_000,
        };
        assert_eq!(
            t.round_to_millis(),
            Timestamp {
                seconds: 11,
                nanos: 0
            }
        );
    }

    #[test]
    fn zero_time_wire_form() {
        let b = Timestamp::ZERO.encode_to_vec();
        let mut s = &b[..];
        assert_eq!(
            read_std_time(&mut &[&[b.len() as u8][..], &b[..]].concat()[..], 0).unwrap(),
            Timestamp::ZERO
        );
        assert_eq!(s[0], 0x08);
        s = &s[1..];
        assert_eq!(
            super::super::read_varint(&mut s).unwrap() as i64,
            GO_ZERO_SECONDS
        );
    }
}
