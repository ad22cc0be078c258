//! Asking for usage: the parameters `GET /api/v1/usage` and `turnpike
//! usage` share ([`UsageParams`], read once here for both), the query the
//! store answers ([`UsageQuery`]), its answer ([`UsagePage`]) and the one
//! JSON shape both print ([`answer_json`]).
//!
//! Records are selected by start time in `[from, to)`. Totals sum
//! `end_ms - start_ms` in milliseconds (exact on both databases) and show
//! it as `seconds`, a float with millisecond precision; an interim record
//! counts up to its snapshot.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::record::{rfc3339, UsageRecord};

/// Without `from`, the window starts this long before now.
pub const DEFAULT_WINDOW_MS: i64 = 30 * DAY_MS;
/// Records or groups per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest `limit`.
pub const MAX_LIMIT: u32 = 1000;
pub(crate) const DAY_MS: i64 = 86_400_000;
/// 9999-12-31T23:59:59.999Z: times are clamped to `[0, MAX_TIME_MS]`
/// (nothing was recorded before 1970, and RFC 3339 has four-digit years).
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// How records are summed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// No groups: the records themselves, paginated.
    None,
    User,
    Realm,
    Node,
    /// The UTC day of the start.
    Day,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "none" => GroupBy::None,
            "user" => GroupBy::User,
            "realm" => GroupBy::Realm,
            "node" => GroupBy::Node,
            "day" => GroupBy::Day,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::None => "none",
            GroupBy::User => "user",
            GroupBy::Realm => "realm",
            GroupBy::Node => "node",
            GroupBy::Day => "day",
        }
    }

    /// The byte a cursor of this grouping starts with.
    fn tag(self) -> u8 {
        match self {
            GroupBy::None => b'n',
            GroupBy::User => b'u',
            GroupBy::Realm => b'r',
            GroupBy::Node => b'o',
            GroupBy::Day => b'd',
        }
    }
}

/// Where the next page starts: after this record or group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// After the record (start_ms, id), in that order.
    Record { start_ms: i64, id: String },
    /// After the group whose key (user, realm or node) is these bytes.
    Key(Vec<u8>),
    /// After this UTC day (days since 1970).
    Day(i64),
}

impl Cursor {
    /// The opaque text form (base64url, no padding), tagged with the
    /// grouping it pages so that it is refused under another one.
    pub fn encode(&self, group_by: GroupBy) -> String {
        let mut b = vec![group_by.tag()];
        match self {
            Cursor::Record { start_ms, id } => {
                b.extend(start_ms.to_be_bytes());
                b.extend(id.as_bytes());
            }
            Cursor::Key(k) => b.extend(k),
            Cursor::Day(d) => b.extend(d.to_be_bytes()),
        }
        URL_SAFE_NO_PAD.encode(b)
    }

    /// Reads a cursor made by [`Cursor::encode`] for `group_by`.
    pub fn decode(s: &str, group_by: GroupBy) -> Option<Cursor> {
        let b = URL_SAFE_NO_PAD.decode(s).ok()?;
        let (&tag, rest) = b.split_first()?;
        if tag != group_by.tag() {
            return None;
        }
        let int =
            |r: &[u8]| -> Option<i64> { Some(i64::from_be_bytes(r.get(..8)?.try_into().ok()?)) };
        Some(match group_by {
            GroupBy::None => Cursor::Record {
                start_ms: int(rest)?,
                id: String::from_utf8(rest[8..].to_vec()).ok()?,
            },
            GroupBy::Day if rest.len() == 8 => Cursor::Day(int(rest)?),
            GroupBy::Day => return None,
            _ => Cursor::Key(rest.to_vec()),
        })
    }
}

/// What to sum up: filters (exact names), the window of start times
/// `[from_ms, to_ms)` (`None`: open), the grouping, and the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    pub user: Option<String>,
    pub realm: Option<String>,
    pub node: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub group_by: GroupBy,
    /// Records or groups per page, 1 to [`MAX_LIMIT`].
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

/// Sums over a set of records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub allocations: u64,
    /// Sum of `end_ms - start_ms`.
    pub duration_ms: i64,
    pub bytes_to_peer: u64,
    pub packets_to_peer: u64,
    pub bytes_to_client: u64,
    pub packets_to_client: u64,
}

impl UsageTotals {
    /// The duration in seconds (millisecond precision).
    pub fn seconds(&self) -> f64 {
        self.duration_ms as f64 / 1000.0
    }

    fn json(&self) -> serde_json::Map<String, Value> {
        let v = json!({
            "allocations": self.allocations,
            "seconds": self.seconds(),
            "bytes_to_peer": self.bytes_to_peer,
            "packets_to_peer": self.packets_to_peer,
            "bytes_to_client": self.bytes_to_client,
            "packets_to_client": self.packets_to_client,
        });
        match v {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }
}

/// One group's key (a name, or a day as `YYYY-MM-DD`) and sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageGroup {
    pub key: String,
    pub totals: UsageTotals,
}

/// One page of an answer: totals over every selected record, and this
/// page's groups (grouped) or records (`GroupBy::None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsagePage {
    pub totals: UsageTotals,
    pub groups: Vec<UsageGroup>,
    pub records: Vec<UsageRecord>,
    /// `None` on the last page.
    pub next: Option<Cursor>,
}

/// A parameter that does not read; `field` is the API's name for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} `{value}`: {expected}")]
pub struct ParamError {
    pub field: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// The parameters as given, text (the API's query string, the CLI's flags).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct UsageParams {
    pub user: Option<String>,
    pub realm: Option<String>,
    pub node: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub group_by: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

const TIME_FORMS: &str =
    "expected RFC 3339 (2026-12-01T00:00:00Z), a date (2026-12-01), Unix seconds, or an age (7d, 12h, 30m)";

impl UsageParams {
    /// The query these ask for at `now_ms`: `from` defaults to
    /// [`DEFAULT_WINDOW_MS`] before `to`, `to` to now, `group_by` to none,
    /// `limit` to [`DEFAULT_LIMIT`].
    pub fn resolve(&self, now_ms: i64) -> Result<UsageQuery, ParamError> {
        let bad = |field, value: &str, expected| ParamError {
            field,
            value: value.to_string(),
            expected,
        };
        let time = |field, v: &Option<String>| -> Result<Option<i64>, ParamError> {
            v.as_deref()
                .map(|s| parse_time(s, now_ms).ok_or_else(|| bad(field, s, TIME_FORMS)))
                .transpose()
        };
        let to_ms = time("to", &self.to)?.unwrap_or(now_ms.clamp(0, MAX_TIME_MS));
        let from_ms = time("from", &self.from)?.unwrap_or((to_ms - DEFAULT_WINDOW_MS).max(0));
        let group_by = match self.group_by.as_deref() {
            None => GroupBy::None,
            Some(g) => GroupBy::parse(g)
                .ok_or_else(|| bad("group_by", g, "expected none, user, realm, node or day"))?,
        };
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| bad("limit", l, "expected an integer from 1 to 1000"))?,
        };
        // An empty cursor is the first page (a form's empty field).
        let cursor = self
            .cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|c| {
                Cursor::decode(c, group_by)
                    .ok_or_else(|| bad("cursor", c, "not a next_cursor of this group_by"))
            })
            .transpose()?;
        Ok(UsageQuery {
            user: self.user.clone(),
            realm: self.realm.clone(),
            node: self.node.clone(),
            from_ms: Some(from_ms),
            to_ms: Some(to_ms),
            group_by,
            limit,
            cursor,
        })
    }
}

/// A point in time as Unix ms, clamped to `[0, MAX_TIME_MS]`: RFC 3339
/// (any offset, any fraction), a date (`2026-12-01`, UTC midnight), Unix
/// seconds (up to 11 digits), or an age before `now_ms` (`7d`, `12h`,
/// `30m`, up to 6 digits). `None` if it is none of these.
pub fn parse_time(s: &str, now_ms: i64) -> Option<i64> {
    let ms = if let Some(n) = digits(s, 11) {
        n * 1000
    } else if let Some(unit) = s.strip_suffix(['d', 'h', 'm']).and_then(|n| digits(n, 6)) {
        let per = match s.as_bytes()[s.len() - 1] {
            b'd' => DAY_MS,
            b'h' => 3_600_000,
            _ => 60_000,
        };
        now_ms - unit * per
    } else if s.len() == 10 {
        let mut parts = s.splitn(3, '-');
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        let month = time::Month::try_from(digits(m, 2)? as u8).ok()?;
        let date = time::Date::from_calendar_date(digits(y, 4)? as i32, month, digits(d, 2)? as u8)
            .ok()?;
        date.midnight().assume_utc().unix_timestamp() * 1000
    } else {
        let t =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
        (t.unix_timestamp_nanos() / 1_000_000) as i64
    };
    Some(ms.clamp(0, MAX_TIME_MS))
}

/// `s` as a number if it is 1 to `max` ASCII digits.
fn digits(s: &str, max: usize) -> Option<i64> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// One record as the API shows it: every field, plus `start` and `end` in
/// RFC 3339 and `seconds`.
pub fn record_json(r: &UsageRecord) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("start".into(), rfc3339(r.start_ms).into());
        m.insert("end".into(), rfc3339(r.end_ms).into());
        m.insert(
            "seconds".into(),
            ((r.end_ms - r.start_ms) as f64 / 1000.0).into(),
        );
    }
    v
}

/// The answer's JSON, the same from the API and `turnpike usage --format
/// json`: `group_by`, `from`, `to`, `totals`, `next_cursor`, and `groups`
/// (grouped) or `records` (`none`).
pub fn answer_json(q: &UsageQuery, page: &UsagePage) -> Value {
    let mut v = json!({
        "group_by": q.group_by.name(),
        "from": rfc3339(q.from_ms.unwrap_or(0)),
        "to": rfc3339(q.to_ms.unwrap_or(MAX_TIME_MS)),
        "totals": page.totals.json(),
        "next_cursor": page.next.as_ref().map(|c| c.encode(q.group_by)),
    });
    if q.group_by == GroupBy::None {
        v["records"] = page.records.iter().map(record_json).collect();
    } else {
        v["groups"] = page
            .groups
            .iter()
            .map(|g| {
                let mut m = serde_json::Map::new();
                m.insert("key".into(), g.key.clone().into());
                m.extend(g.totals.json());
                Value::Object(m)
            })
            .collect();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_224_445_123; // 2026-12-02T15:14:05.123Z

    #[test]
    fn times_read_in_every_documented_form() {
        assert_eq!(
            parse_time("2026-12-01T00:00:00Z", NOW),
            Some(1_796_083_200_000)
        );
        assert_eq!(
            parse_time("2026-12-01T01:00:00.5+01:00", NOW),
            Some(1_796_083_200_500)
        );
        assert_eq!(parse_time("2026-12-01", NOW), Some(1_796_083_200_000));
        assert_eq!(parse_time("1796083200", NOW), Some(1_796_083_200_000));
        assert_eq!(parse_time("7d", NOW), Some(NOW - 7 * DAY_MS));
        assert_eq!(parse_time("12h", NOW), Some(NOW - 12 * 3_600_000));
        assert_eq!(parse_time("30m", NOW), Some(NOW - 30 * 60_000));
        // Clamped to the representable range, never an error or a panic.
        assert_eq!(parse_time("0001-01-01T00:00:00+23:59", NOW), Some(0));
        assert_eq!(parse_time("99999999999", NOW), Some(99_999_999_999_000));
        assert_eq!(
            parse_time("9999-12-31T23:59:59-23:59", NOW),
            Some(MAX_TIME_MS)
        );
        assert_eq!(parse_time("999999d", NOW), Some(0));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2026-1-01",
            "-5",
            "+5",
            "7w",
            "d",
            "1234567890123",
            "2026-12-01T25:00:00Z",
            "2026-12-01 00:00:00",
            "٣",
        ] {
            assert_eq!(parse_time(bad, NOW), None, "{bad:?}");
        }
    }

    #[test]
    fn parameters_resolve_with_defaults_and_name_the_bad_one() {
        let q = UsageParams::default().resolve(NOW).unwrap();
        assert_eq!(
            (q.from_ms, q.to_ms),
            (Some(NOW - DEFAULT_WINDOW_MS), Some(NOW))
        );
        assert_eq!((q.group_by, q.limit, q.cursor), (GroupBy::None, 100, None));
        fn p(f: impl FnOnce(&mut UsageParams)) -> Result<UsageQuery, ParamError> {
            let mut p = UsageParams::default();
            f(&mut p);
            p.resolve(NOW)
        }
        let q = p(|p| p.to = Some("2026-12-01".into())).unwrap();
        assert_eq!(q.from_ms, Some(1_796_083_200_000 - DEFAULT_WINDOW_MS));
        let field = |r: Result<UsageQuery, ParamError>| r.unwrap_err().field;
        assert_eq!(field(p(|p| p.from = Some("soon".into()))), "from");
        assert_eq!(field(p(|p| p.to = Some("x".into()))), "to");
        assert_eq!(field(p(|p| p.group_by = Some("week".into()))), "group_by");
        for l in ["0", "1001", "-1", "ten", ""] {
            assert_eq!(field(p(|p| p.limit = Some(l.into()))), "limit", "{l}");
        }
        assert_eq!(p(|p| p.limit = Some("1000".into())).unwrap().limit, 1000);
        assert_eq!(field(p(|p| p.cursor = Some("!!".into()))), "cursor");
        assert_eq!(p(|p| p.cursor = Some(String::new())).unwrap().cursor, None);
        let e = p(|p| p.from = Some("soon".into())).unwrap_err().to_string();
        assert!(e.starts_with("from `soon`: expected RFC 3339"), "{e}");
    }

    #[test]
    fn cursors_round_trip_and_are_refused_under_another_grouping() {
        let cases = [
            (
                GroupBy::None,
                Cursor::Record {
                    start_ms: NOW,
                    id: "ab12".into(),
                },
            ),
            (GroupBy::User, Cursor::Key(b"nul\0inside".to_vec())),
            (GroupBy::Realm, Cursor::Key(vec![])),
            (GroupBy::Node, Cursor::Key(b"turn-a".to_vec())),
            (GroupBy::Day, Cursor::Day(20_000)),
        ];
        for (g, c) in &cases {
            let text = c.encode(*g);
            assert_eq!(Cursor::decode(&text, *g).as_ref(), Some(c), "{g:?}");
            for (other, _) in &cases {
                if other != g {
                    assert_eq!(Cursor::decode(&text, *other), None, "{g:?} as {other:?}");
                }
            }
        }
        assert_eq!(Cursor::decode("", GroupBy::User), None);
        assert_eq!(Cursor::decode("bg", GroupBy::None), None, "too short");
    }
}
