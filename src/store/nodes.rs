//! The node registry of a fleet (issue 15): each node's heartbeat row.
//! With SQLite the table holds the one node; the API is the same.

use sqlx::Row;

use super::{Store, StoreError};

/// A heartbeat older than this (ms) means the node is down (five missed
/// beats of 2 s).
pub(crate) const DOWN_AFTER_MS: i64 = 10_000;

/// One node as its last heartbeat described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeRow {
    pub(crate) name: String,
    pub(crate) region: String,
    /// `ready` or `draining`, as the node said; readers derive `down`.
    pub(crate) state: String,
    /// The ICE URLs it serves.
    pub(crate) urls: Vec<String>,
    pub(crate) allocations: i64,
    /// Relayed bits per second, both ways, over the last heartbeat.
    pub(crate) relayed_bps: i64,
    /// Unix milliseconds of the heartbeat.
    pub(crate) last_seen: i64,
}

impl NodeRow {
    /// Its state at `now_ms`: what it said, or `down` once silent.
    pub(crate) fn state_at(&self, now_ms: i64) -> &str {
        if now_ms - self.last_seen > DOWN_AFTER_MS {
            "down"
        } else {
            &self.state
        }
    }
}

impl Store {
    /// Writes this node's row (insert or replace).
    pub(crate) async fn heartbeat(&self, node: &NodeRow) -> Result<(), StoreError> {
        let urls = serde_json::to_string(&node.urls).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO nodes (name, region, state, urls, allocations, relayed_bps, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (name) DO UPDATE SET region = excluded.region, state = excluded.state, \
             urls = excluded.urls, allocations = excluded.allocations, \
             relayed_bps = excluded.relayed_bps, last_seen = excluded.last_seen",
        )
        .bind(&node.name)
        .bind(&node.region)
        .bind(&node.state)
        .bind(urls)
        .bind(node.allocations)
        .bind(node.relayed_bps)
        .bind(node.last_seen)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every node's last heartbeat, by name.
    pub(crate) async fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, region, state, urls, allocations, relayed_bps, last_seen \
             FROM nodes ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let urls: String = r.try_get("urls")?;
                Ok(NodeRow {
                    name: r.try_get("name")?,
                    region: r.try_get("region")?,
                    state: r.try_get("state")?,
                    urls: serde_json::from_str(&urls).unwrap_or_default(),
                    allocations: r.try_get("allocations")?,
                    relayed_bps: r.try_get("relayed_bps")?,
                    last_seen: r.try_get("last_seen")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_silent_for_ten_seconds_is_down() {
        let row = NodeRow {
            name: "a".into(),
            region: String::new(),
            state: "draining".into(),
            urls: vec![],
            allocations: 0,
            relayed_bps: 0,
            last_seen: 1_000_000,
        };
        assert_eq!(row.state_at(1_000_000 + DOWN_AFTER_MS), "draining");
        assert_eq!(row.state_at(1_000_000 + DOWN_AFTER_MS + 1), "down");
    }
}
