//! Fleet quotas (issue 15): one row per allocation of every node of the
//! store. An Allocate reserves its row in a transaction that takes one
//! advisory lock, counts the live rows and inserts only under the quotas,
//! so the fleet never exceeds them while PostgreSQL is reachable. A row
//! counts while its node's heartbeat is fresh (`nodes::DOWN_AFTER_MS`):
//! a crashed node leaks nothing. Each node rewrites its own rows from its
//! live allocations every heartbeat ([`Store::reconcile_allocations`]).

use std::collections::HashSet;

use sqlx::Row;

use super::nodes::DOWN_AFTER_MS;
use super::{row_key, Kind, Store, StoreError};
use crate::turn::quota::FleetLimits;

/// The advisory lock every reservation of the store takes ("turnquot").
const FLEET_LOCK: i64 = 0x7475_726e_7175_6f74;

/// Rows of a node silent this long (ms) are deleted by any other node's
/// reconciliation; they stopped counting at `DOWN_AFTER_MS` already.
pub(crate) const FORGET_AFTER_MS: i64 = 60_000;

/// One allocation of this node, as the fleet counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FleetAllocation {
    /// Unique on its node.
    pub(crate) id: i64,
    pub(crate) realm: String,
    pub(crate) user: String,
}

impl Store {
    /// Whether this store can be shared by several nodes (PostgreSQL):
    /// then quotas are counted fleet-wide.
    pub(crate) fn is_shared(&self) -> bool {
        self.kind == Kind::Postgres
    }

    /// Counts `a` (of node `node`) against `limits` over every live node's
    /// allocations at `now_ms`, and inserts its row if under all of them.
    /// False: a quota is full, nothing was written.
    pub(crate) async fn reserve_allocation(
        &self,
        node: &str,
        a: &FleetAllocation,
        limits: FleetLimits,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let realm_key = row_key(&[&a.realm]);
        let user_key = row_key(&[&a.realm, &a.user]);
        if limits != FleetLimits::default() {
            if self.kind == Kind::Postgres {
                // One lock for the count and the insert of every node: two
                // Allocates never both see the last free place. (The
                // function returns void, which the Any driver cannot read.)
                sqlx::query("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock($1)) AS l")
                    .bind(FLEET_LOCK)
                    .fetch_one(&mut *tx)
                    .await?;
            }
            let row = sqlx::query(
                "SELECT COUNT(*) AS total, \
                 COUNT(CASE WHEN f.realm_key = $1 THEN 1 END) AS realm, \
                 COUNT(CASE WHEN f.user_key = $2 THEN 1 END) AS mine \
                 FROM fleet_allocations f LEFT JOIN nodes n ON n.name = f.node \
                 WHERE (f.node = $3 OR n.last_seen >= $4) AND NOT (f.node = $3 AND f.id = $5)",
            )
            .bind(&realm_key)
            .bind(&user_key)
            .bind(node)
            .bind(now_ms - DOWN_AFTER_MS)
            .bind(a.id)
            .fetch_one(&mut *tx)
            .await?;
            let full = |col: &str, cap: u32| -> Result<bool, sqlx::Error> {
                Ok(cap != 0 && row.try_get::<i64, _>(col)? >= i64::from(cap))
            };
            if full("total", limits.total)? || full("realm", limits.realm)? || full("mine", limits.user)?
            {
                return Ok(false);
            }
        }
        insert(&mut tx, node, a.id, &realm_key, &user_key, now_ms).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Gives back allocation `id` of `node`.
    pub(crate) async fn release_allocation(&self, node: &str, id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM fleet_allocations WHERE node = $1 AND id = $2")
            .bind(node)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Makes `node`'s rows exactly `live` (after an outage they come back;
    /// rows of allocations that ended unseen go), and forgets the rows of
    /// nodes silent for [`FORGET_AFTER_MS`]. Returns (inserted, deleted).
    pub(crate) async fn reconcile_allocations(
        &self,
        node: &str,
        live: &[FleetAllocation],
        now_ms: i64,
    ) -> Result<(usize, usize), StoreError> {
        let mut tx = self.write().await?;
        let stored: HashSet<i64> = sqlx::query("SELECT id FROM fleet_allocations WHERE node = $1")
            .bind(node)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>("id"))
            .collect::<Result<_, _>>()?;
        let wanted: HashSet<i64> = live.iter().map(|a| a.id).collect();
        let mut deleted = 0;
        for id in stored.difference(&wanted) {
            sqlx::query("DELETE FROM fleet_allocations WHERE node = $1 AND id = $2")
                .bind(node)
                .bind(*id)
                .execute(&mut *tx)
                .await?;
            deleted += 1;
        }
        let mut inserted = 0;
        for a in live.iter().filter(|a| !stored.contains(&a.id)) {
            let realm_key = row_key(&[&a.realm]);
            let user_key = row_key(&[&a.realm, &a.user]);
            insert(&mut tx, node, a.id, &realm_key, &user_key, now_ms).await?;
            inserted += 1;
        }
        sqlx::query(
            "DELETE FROM fleet_allocations WHERE node <> $1 \
             AND node NOT IN (SELECT name FROM nodes WHERE last_seen >= $2)",
        )
        .bind(node)
        .bind(now_ms - FORGET_AFTER_MS)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((inserted, deleted))
    }
}

async fn insert(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    node: &str,
    id: i64,
    realm_key: &str,
    user_key: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO fleet_allocations (node, id, realm_key, user_key, created) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (node, id) DO NOTHING",
    )
    .bind(node)
    .bind(id)
    .bind(realm_key)
    .bind(user_key)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
