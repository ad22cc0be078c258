//! What usage accounting writes and webhooks carry: one [`UsageRecord`] per
//! allocation (rewritten by interim snapshots, then once more when it
//! ends), and [`OutboxEvent`]s.

use serde::{Deserialize, Serialize};

/// One allocation's usage. Times are Unix milliseconds. A record without
/// `end_reason` is an interim one: the allocation was live at `end_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Unique across the fleet and restarts: 32 hex digits.
    pub id: String,
    /// The node that served it.
    pub node: String,
    pub user: String,
    pub realm: String,
    /// `static`, `stored`, `rest` or `oauth`.
    pub credential: String,
    /// The part of a REST username after the separator (the app's user id).
    pub label: Option<String>,
    /// The client's address, `IP:PORT`.
    pub client: String,
    /// `udp`, `tcp`, `tls` or `dtls`.
    pub transport: String,
    /// The relayed addresses told to the client.
    pub relayed: Vec<String>,
    pub start_ms: i64,
    /// When it ended, or when an interim record was taken.
    pub end_ms: i64,
    /// `expired`, `deleted`, `killed`, `drained`, `shutdown`, `closed`
    /// (the client's TCP, TLS or DTLS connection went) or `revoked`;
    /// `None` = interim.
    pub end_reason: Option<String>,
    /// Application bytes (the data of Send indications and ChannelData,
    /// not their headers) and packets, client to peer.
    pub bytes_to_peer: u64,
    pub packets_to_peer: u64,
    /// Likewise, peer to client.
    pub bytes_to_client: u64,
    pub packets_to_client: u64,
    /// Distinct peer IP addresses given permission (counted up to 256).
    pub peers: u32,
}

/// An event on its way to the webhook receivers. `body` is made once, when
/// the event happens, so every retry sends the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// 32 hex digits, random: receivers drop duplicates by it.
    pub id: String,
    /// `allocation.created`, `allocation.deleted`, `allocation.refused`,
    /// `node.draining` or `node.ready`.
    pub kind: String,
    /// Unix milliseconds; receivers see it as RFC 3339 in `time`.
    pub time_ms: i64,
    /// The JSON body: `{"id","type","time","node","data"}`.
    pub body: String,
}

impl OutboxEvent {
    /// An event of `kind` on `node` at `time_ms` with `data`, under the
    /// random `id`.
    pub fn new(id: String, kind: &str, node: &str, time_ms: i64, data: serde_json::Value) -> Self {
        let body = serde_json::json!({
            "id": id,
            "type": kind,
            "time": rfc3339(time_ms),
            "node": node,
            "data": data,
        })
        .to_string();
        OutboxEvent {
            id,
            kind: kind.to_string(),
            time_ms,
            body,
        }
    }
}

/// Unix milliseconds as RFC 3339 in UTC with milliseconds
/// (`2026-12-02T15:04:05.123Z`); out-of-range values are clamped to 1970.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let t = t
        .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_224_445_123), "2026-12-02T15:14:05.123Z");
    }

    #[test]
    fn an_event_body_has_the_documented_fields() {
        let e = OutboxEvent::new("ab".into(), "node.ready", "n1", 1000, serde_json::json!({}));
        let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(v["id"], "ab");
        assert_eq!(v["type"], "node.ready");
        assert_eq!(v["time"], "1970-01-01T00:00:01Z");
        assert_eq!(v["node"], "n1");
        assert!(v["data"].is_object());
    }
}
