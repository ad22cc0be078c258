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
            if full("total", limits.total)?
                || full("realm", limits.realm)?
                || full("mine", limits.user)?
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

    /// Makes `node`'s rows its `live` allocations (after an outage they
    /// come back; rows of allocations that ended unseen go), leaving alone
    /// the rows of `asking` (reservations in flight, which may have just
    /// committed), and forgets the rows of nodes silent for
    /// [`FORGET_AFTER_MS`]. Returns (inserted, deleted).
    pub(crate) async fn reconcile_allocations(
        &self,
        node: &str,
        live: &[FleetAllocation],
        asking: &[i64],
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
        let wanted: HashSet<i64> = live
            .iter()
            .map(|a| a.id)
            .chain(asking.iter().copied())
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::nodes::NodeRow;
    use crate::store::tests::pg_url;
    use sqlx::Connection;

    /// A store on a fresh PostgreSQL database of our own (other tests
    /// clear the shared one's tables).
    async fn fresh(name: &str) -> Option<Store> {
        let base = pg_url()?;
        let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap();
        }
        let (prefix, _) = base.rsplit_once('/').unwrap();
        Some(Store::open(&format!("{prefix}/{name}")).await.unwrap())
    }

    async fn beat(s: &Store, name: &str, last_seen: i64) {
        let row = NodeRow {
            name: name.into(),
            region: String::new(),
            state: "ready".into(),
            urls: vec![],
            allocations: 0,
            relayed_bps: 0,
            last_seen,
        };
        s.heartbeat(&row).await.unwrap();
    }

    fn alloc(id: i64, realm: &str, user: &str) -> FleetAllocation {
        FleetAllocation {
            id,
            realm: realm.into(),
            user: user.into(),
        }
    }

    async fn ids(s: &Store, node: &str) -> Vec<i64> {
        let mut v: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM fleet_allocations WHERE node = $1 ORDER BY id")
                .bind(node)
                .fetch_all(&s.pool)
                .await
                .unwrap();
        v.sort();
        v
    }

    const USER2: FleetLimits = FleetLimits {
        user: 2,
        realm: 0,
        total: 0,
    };

    #[tokio::test]
    async fn reserve_counts_every_live_node_and_not_a_silent_one() {
        let Some(s) = fresh("q_store_fleet_count").await else {
            return;
        };
        let now = 1_000_000_000;
        beat(&s, "qa", now).await;
        beat(&s, "qb", now - 1_000).await;
        beat(&s, "qdead", now - DOWN_AFTER_MS - 1).await;
        let free = FleetLimits::default();
        // The dead node held three of alice's: they do not count.
        for id in 1..=3 {
            let a = alloc(id, "r", "alice");
            assert!(s.reserve_allocation("qdead", &a, free, now).await.unwrap());
        }
        let r = |id| alloc(id, "r", "alice");
        assert!(s.reserve_allocation("qa", &r(1), USER2, now).await.unwrap());
        assert!(s.reserve_allocation("qb", &r(1), USER2, now).await.unwrap());
        assert!(!s.reserve_allocation("qa", &r(2), USER2, now).await.unwrap());
        assert!(!s.reserve_allocation("qb", &r(2), USER2, now).await.unwrap());
        assert_eq!(ids(&s, "qa").await, vec![1], "a refusal writes nothing");
        // Another user, and alice of another realm, have their own counts.
        let bob = alloc(3, "r", "bob");
        assert!(s.reserve_allocation("qa", &bob, USER2, now).await.unwrap());
        let other = alloc(4, "r2", "alice");
        assert!(s
            .reserve_allocation("qa", &other, USER2, now)
            .await
            .unwrap());
        // The realm's quota counts its realm; total_quota counts all.
        let realm3 = FleetLimits {
            realm: 3,
            ..Default::default()
        };
        assert!(!s
            .reserve_allocation("qa", &alloc(5, "r", "carol"), realm3, now)
            .await
            .unwrap());
        assert!(s
            .reserve_allocation("qa", &alloc(5, "r2", "carol"), realm3, now)
            .await
            .unwrap());
        let total5 = FleetLimits {
            total: 5,
            ..Default::default()
        };
        assert!(!s
            .reserve_allocation("qa", &alloc(6, "r3", "dave"), total5, now)
            .await
            .unwrap());
        // Once released, a place is free again.
        s.release_allocation("qb", 1).await.unwrap();
        assert!(s.reserve_allocation("qb", &r(2), USER2, now).await.unwrap());
        // The silent node's heartbeat comes back: its rows count again.
        beat(&s, "qdead", now).await;
        let five = FleetLimits { user: 5, ..USER2 };
        assert!(!s.reserve_allocation("qb", &r(3), five, now).await.unwrap());
        let six = FleetLimits { user: 6, ..USER2 };
        assert!(s.reserve_allocation("qb", &r(3), six, now).await.unwrap());
        s.close().await;
    }

    #[tokio::test]
    async fn concurrent_reserves_of_many_nodes_never_pass_the_quota() {
        let Some(s) = fresh("q_store_fleet_race").await else {
            return;
        };
        let now = crate::store::unix_now_ms();
        for n in 0..4 {
            beat(&s, &format!("q{n}"), now).await;
        }
        let limits = FleetLimits {
            user: 5,
            ..Default::default()
        };
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let a = alloc(i, "r", "alice");
                    s.reserve_allocation(&format!("q{}", i % 4), &a, limits, now)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            granted += usize::from(t.await.unwrap());
        }
        assert_eq!(granted, 5);
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM fleet_allocations")
            .fetch_one(&s.pool)
            .await
            .unwrap();
        assert_eq!(rows, 5);
        s.close().await;
    }

    #[tokio::test]
    async fn reconcile_makes_a_nodes_rows_its_live_allocations_and_forgets_long_dead_nodes() {
        let Some(s) = fresh("q_store_fleet_reconcile").await else {
            return;
        };
        let now = 2_000_000_000;
        beat(&s, "qa", now).await;
        beat(&s, "qgone", now - FORGET_AFTER_MS - 1).await;
        beat(&s, "qdown", now - DOWN_AFTER_MS - 1).await;
        let free = FleetLimits::default();
        for id in [1, 2] {
            assert!(s
                .reserve_allocation("qa", &alloc(id, "r", "u"), free, now)
                .await
                .unwrap());
            assert!(s
                .reserve_allocation("qgone", &alloc(id, "r", "u"), free, now)
                .await
                .unwrap());
            assert!(s
                .reserve_allocation("qdown", &alloc(id, "r", "u"), free, now)
                .await
                .unwrap());
        }
        let live = [alloc(2, "r", "u"), alloc(3, "r", "u")];
        assert_eq!(
            s.reconcile_allocations("qa", &live, &[], now)
                .await
                .unwrap(),
            (1, 1)
        );
        assert_eq!(ids(&s, "qa").await, vec![2, 3]);
        assert!(
            ids(&s, "qgone").await.is_empty(),
            "forgotten after a minute"
        );
        assert_eq!(
            ids(&s, "qdown").await,
            vec![1, 2],
            "down, not yet forgotten"
        );
        // Again: nothing to do.
        assert_eq!(
            s.reconcile_allocations("qa", &live, &[], now)
                .await
                .unwrap(),
            (0, 0)
        );
        // A reservation in flight keeps its row; the rest goes.
        assert_eq!(
            s.reconcile_allocations("qa", &[], &[3], now).await.unwrap(),
            (0, 1)
        );
        assert_eq!(ids(&s, "qa").await, vec![3]);
        s.close().await;
    }
}
