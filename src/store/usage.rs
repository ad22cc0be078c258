//! Usage records (issue 18): one row per allocation, upserted by id as its
//! interim snapshots and its final record arrive, summed up by
//! [`Store::usage`], and pruned by start time.
//!
//! Names (user, realm, node, label) are stored as bytes like the rest of
//! the store, so they hold anything and sort bytewise on both databases;
//! counters are BIGINT (a `u64` above `i64::MAX` is stored as `i64::MAX`).
//! Sums are cast to BIGINT (PostgreSQL's SUM of BIGINT is NUMERIC, which
//! the `Any` driver cannot read), so both databases answer alike.

use std::collections::HashMap;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::{text, Store, StoreError};
use crate::usage::query::{Cursor, GroupBy, UsageGroup, UsagePage, UsageQuery, UsageTotals};
use crate::usage::record::rfc3339;
use crate::usage::UsageRecord;

/// Rows per INSERT: 17 parameters each, far below SQLite's 32,766 and
/// PostgreSQL's 65,535; a batch of 500 is five statements, the full ones
/// sharing one prepared statement.
const ROWS_PER_STATEMENT: usize = 100;

/// Rows one DELETE of a prune removes: a huge prune is many short
/// statements, not one transaction that holds the write lock for minutes.
pub(crate) const PRUNE_BATCH: i64 = 10_000;

const COLUMNS: &str = "id, node, username, realm, credential, label, client, transport, \
    relayed, start_ms, end_ms, end_reason, bytes_to_peer, packets_to_peer, bytes_to_client, \
    packets_to_client, peers";
const NCOLS: usize = 17;

/// The sums every total and group shows.
const SUMS: &str = "COUNT(*) AS n, \
    COALESCE(CAST(SUM(end_ms - start_ms) AS BIGINT), 0) AS ms, \
    COALESCE(CAST(SUM(bytes_to_peer) AS BIGINT), 0) AS btp, \
    COALESCE(CAST(SUM(packets_to_peer) AS BIGINT), 0) AS ptp, \
    COALESCE(CAST(SUM(bytes_to_client) AS BIGINT), 0) AS btc, \
    COALESCE(CAST(SUM(packets_to_client) AS BIGINT), 0) AS ptc";

/// Whether `new` replaces `old` (same id): a final record always does (it
/// is the last word); an interim one only replaces an older interim one,
/// so a late snapshot never undoes the end. The upsert's WHERE says the
/// same in SQL.
fn supersedes(new: &UsageRecord, old: &UsageRecord) -> bool {
    new.end_reason.is_some() || (old.end_reason.is_none() && new.end_ms > old.end_ms)
}

/// One record per id, the one that wins by [`supersedes`], in order of
/// first appearance: PostgreSQL refuses an upsert that touches a row twice.
fn winners(records: &[UsageRecord]) -> Vec<&UsageRecord> {
    let mut out: Vec<&UsageRecord> = Vec::with_capacity(records.len());
    let mut at: HashMap<&str, usize> = HashMap::with_capacity(records.len());
    for r in records {
        match at.get(r.id.as_str()) {
            Some(&i) if supersedes(r, out[i]) => out[i] = r,
            Some(_) => {}
            None => {
                at.insert(&r.id, out.len());
                out.push(r);
            }
        }
    }
    out
}

fn upsert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=NCOLS).map(|c| format!("${}", r * NCOLS + c)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    let set: Vec<String> = COLUMNS
        .split(", ")
        .skip(1)
        .map(|c| {
            let c = c.trim();
            format!("{c} = excluded.{c}")
        })
        .collect();
    format!(
        "INSERT INTO usage_records ({COLUMNS}) VALUES {} ON CONFLICT (id) DO UPDATE SET {} \
         WHERE excluded.end_reason IS NOT NULL OR (usage_records.end_reason IS NULL \
         AND excluded.end_ms > usage_records.end_ms)",
        values.join(", "),
        set.join(", ")
    )
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn bind_record<'q>(
    q: Query<'q, Any, AnyArguments<'q>>,
    r: &UsageRecord,
) -> Query<'q, Any, AnyArguments<'q>> {
    q.bind(r.id.clone())
        .bind(r.node.as_bytes().to_vec())
        .bind(r.user.as_bytes().to_vec())
        .bind(r.realm.as_bytes().to_vec())
        .bind(r.credential.clone())
        .bind(r.label.as_ref().map(|l| l.as_bytes().to_vec()))
        .bind(r.client.clone())
        .bind(r.transport.clone())
        .bind(serde_json::to_string(&r.relayed).unwrap_or_else(|_| "[]".into()))
        .bind(r.start_ms)
        .bind(r.end_ms)
        .bind(r.end_reason.clone())
        .bind(count(r.bytes_to_peer))
        .bind(count(r.packets_to_peer))
        .bind(count(r.bytes_to_client))
        .bind(count(r.packets_to_client))
        .bind(i64::from(r.peers))
}

/// A value for a `$N` of a query built at run time.
enum Arg {
    Bytes(Vec<u8>),
    Int(i64),
    Text(String),
}

/// The WHERE clause of a query and its arguments, `$1` up.
#[derive(Default)]
struct Filter {
    sql: String,
    args: Vec<Arg>,
}

impl Filter {
    fn of(q: &UsageQuery) -> Filter {
        let mut f = Filter::default();
        for (col, v) in [
            ("username", &q.user),
            ("realm", &q.realm),
            ("node", &q.node),
        ] {
            if let Some(v) = v {
                f.and(&format!("{col} = $"), Arg::Bytes(v.as_bytes().to_vec()));
            }
        }
        if let Some(from) = q.from_ms {
            f.and("start_ms >= $", Arg::Int(from));
        }
        if let Some(to) = q.to_ms {
            f.and("start_ms < $", Arg::Int(to));
        }
        f
    }

    /// Adds `cond` ending in `$`, which gets the next argument's number.
    fn and(&mut self, cond: &str, arg: Arg) {
        self.args.push(arg);
        let n = self.next() - 1;
        self.sql += if self.sql.is_empty() {
            " WHERE "
        } else {
            " AND "
        };
        self.sql += &format!("{cond}{n}");
    }

    /// The number the next argument gets.
    fn next(&self) -> usize {
        self.args.len() + 1
    }

    fn bind<'q>(
        &self,
        mut q: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for a in &self.args {
            q = match a {
                Arg::Bytes(b) => q.bind(b.clone()),
                Arg::Int(i) => q.bind(*i),
                Arg::Text(t) => q.bind(t.clone()),
            };
        }
        q
    }
}

fn totals(r: &sqlx::any::AnyRow) -> Result<UsageTotals, sqlx::Error> {
    let u = |col: &str| -> Result<u64, sqlx::Error> { Ok(r.try_get::<i64, _>(col)?.max(0) as u64) };
    Ok(UsageTotals {
        allocations: u("n")?,
        duration_ms: r.try_get("ms")?,
        bytes_to_peer: u("btp")?,
        packets_to_peer: u("ptp")?,
        bytes_to_client: u("btc")?,
        packets_to_client: u("ptc")?,
    })
}

fn record(r: &sqlx::any::AnyRow) -> Result<UsageRecord, sqlx::Error> {
    let u = |col: &str| -> Result<u64, sqlx::Error> { Ok(r.try_get::<i64, _>(col)?.max(0) as u64) };
    let label: Option<Vec<u8>> = r.try_get("label")?;
    let relayed: String = r.try_get("relayed")?;
    Ok(UsageRecord {
        id: r.try_get("id")?,
        node: text(r, "node")?,
        user: text(r, "username")?,
        realm: text(r, "realm")?,
        credential: r.try_get("credential")?,
        label: label
            .map(String::from_utf8)
            .transpose()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        client: r.try_get("client")?,
        transport: r.try_get("transport")?,
        relayed: serde_json::from_str(&relayed).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        start_ms: r.try_get("start_ms")?,
        end_ms: r.try_get("end_ms")?,
        end_reason: r.try_get("end_reason")?,
        bytes_to_peer: u("bytes_to_peer")?,
        packets_to_peer: u("packets_to_peer")?,
        bytes_to_client: u("bytes_to_client")?,
        packets_to_client: u("packets_to_client")?,
        peers: u32::try_from(r.try_get::<i64, _>("peers")?).unwrap_or(u32::MAX),
    })
}

impl Store {
    /// Writes a batch in one transaction, upserting by id: a final record
    /// replaces whatever is stored; an interim one only a stored interim
    /// one with an older `end_ms`. Writing the same batch again changes
    /// nothing.
    pub async fn write_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        let records = winners(records);
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        for chunk in records.chunks(ROWS_PER_STATEMENT) {
            let sql = upsert_sql(chunk.len());
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = bind_record(q, r);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes records that started before `before_ms`, [`PRUNE_BATCH`]
    /// rows per statement; returns how many went.
    pub async fn prune_usage(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = sqlx::query(
                "DELETE FROM usage_records WHERE id IN \
                 (SELECT id FROM usage_records WHERE start_ms < $1 LIMIT $2)",
            )
            .bind(before_ms)
            .bind(PRUNE_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += n;
            if n < PRUNE_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// One page of the answer to `q`: the totals over every selected
    /// record, and the page's groups (ordered by key) or records (ordered
    /// by start, then id).
    pub async fn usage(&self, q: &UsageQuery) -> Result<UsagePage, StoreError> {
        let filter = Filter::of(q);
        let sql = format!("SELECT {SUMS} FROM usage_records{}", filter.sql);
        let row = filter.bind(sqlx::query(&sql)).fetch_one(&self.pool).await?;
        let mut page = UsagePage {
            totals: totals(&row)?,
            ..UsagePage::default()
        };
        let limit = q.limit.max(1) as usize;
        let mut filter = filter;
        if q.group_by == GroupBy::None {
            if let Some(Cursor::Record { start_ms, id }) = &q.cursor {
                let (a, b) = (filter.next(), filter.next() + 1);
                filter.args.push(Arg::Int(*start_ms));
                filter.args.push(Arg::Text(id.clone()));
                filter.sql += if filter.sql.is_empty() {
                    " WHERE "
                } else {
                    " AND "
                };
                filter.sql += &format!("(start_ms > ${a} OR (start_ms = ${a} AND id > ${b}))");
            }
            let sql = format!(
                "SELECT {COLUMNS} FROM usage_records{} ORDER BY start_ms, id LIMIT ${}",
                filter.sql,
                filter.next()
            );
            let rows = filter
                .bind(sqlx::query(&sql))
                .bind(limit as i64 + 1)
                .fetch_all(&self.pool)
                .await?;
            for r in rows.iter().take(limit) {
                page.records.push(record(r)?);
            }
            if rows.len() > limit {
                page.next = page.records.last().map(|r| Cursor::Record {
                    start_ms: r.start_ms,
                    id: r.id.clone(),
                });
            }
            return Ok(page);
        }
        let key = match q.group_by {
            GroupBy::User => "username",
            GroupBy::Realm => "realm",
            GroupBy::Node => "node",
            // Integer division on both databases: the UTC day number.
            _ => "start_ms / 86400000",
        };
        match &q.cursor {
            Some(Cursor::Key(k)) => filter.and(&format!("{key} > $"), Arg::Bytes(k.clone())),
            // Days after the cursor's: starts from the next midnight on.
            Some(Cursor::Day(d)) => filter.and(
                "start_ms >= $",
                Arg::Int(d.saturating_add(1).saturating_mul(86_400_000)),
            ),
            _ => {}
        }
        let sql = format!(
            "SELECT {key} AS k, {SUMS} FROM usage_records{} GROUP BY {key} ORDER BY {key} LIMIT ${}",
            filter.sql,
            filter.next()
        );
        let rows = filter
            .bind(sqlx::query(&sql))
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool)
            .await?;
        let mut last = None;
        for r in rows.iter().take(limit) {
            let (key, cursor) = if q.group_by == GroupBy::Day {
                let day: i64 = r.try_get("k")?;
                let date = rfc3339(day.saturating_mul(86_400_000));
                (date[..10.min(date.len())].to_string(), Cursor::Day(day))
            } else {
                let k = text(r, "k")?;
                let c = Cursor::Key(k.as_bytes().to_vec());
                (k, c)
            };
            page.groups.push(UsageGroup {
                key,
                totals: totals(r)?,
            });
            last = Some(cursor);
        }
        if rows.len() > limit {
            page.next = last;
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{pg_url, sqlite};

    const DAY: i64 = 86_400_000;
    /// 2026-12-01T00:00:00Z.
    const T0: i64 = 1_796_083_200_000;

    fn rec(id: &str, user: &str, start_ms: i64, end_ms: i64, end: Option<&str>) -> UsageRecord {
        UsageRecord {
            id: id.into(),
            node: "turn-a".into(),
            user: user.into(),
            realm: "r.example".into(),
            credential: "stored".into(),
            label: None,
            client: "192.0.2.1:5000".into(),
            transport: "udp".into(),
            relayed: vec!["198.51.100.1:40000".into()],
            start_ms,
            end_ms,
            end_reason: end.map(str::to_string),
            bytes_to_peer: 100,
            packets_to_peer: 1,
            bytes_to_client: 200,
            packets_to_client: 2,
            peers: 1,
        }
    }

    fn query(group_by: GroupBy) -> UsageQuery {
        UsageQuery {
            user: None,
            realm: None,
            node: None,
            from_ms: None,
            to_ms: None,
            group_by,
            limit: 1000,
            cursor: None,
        }
    }

    async fn all(s: &Store) -> Vec<UsageRecord> {
        s.usage(&query(GroupBy::None)).await.unwrap().records
    }

    async fn clear(s: &Store) {
        sqlx::query("DELETE FROM usage_records")
            .execute(&s.pool)
            .await
            .unwrap();
    }

    /// Interim records move forward only; a final one is the last word,
    /// and a batch written twice changes nothing.
    async fn upserts(s: &Store) {
        let mut a = rec("a", "alice", T0, T0 + 1000, None);
        s.write_usage(&[a.clone()]).await.unwrap();
        assert_eq!(all(s).await, vec![a.clone()]);
        // An older snapshot arriving late is ignored.
        let mut older = a.clone();
        older.end_ms = T0 + 500;
        older.bytes_to_peer = 1;
        s.write_usage(&[older]).await.unwrap();
        assert_eq!(all(s).await, vec![a.clone()]);
        // A newer one replaces.
        a.end_ms = T0 + 2000;
        a.bytes_to_peer = 300;
        s.write_usage(&[a.clone()]).await.unwrap();
        assert_eq!(all(s).await, vec![a.clone()]);
        // The end replaces it.
        let mut fin = a.clone();
        fin.end_ms = T0 + 3000;
        fin.end_reason = Some("deleted".into());
        fin.bytes_to_peer = 400;
        s.write_usage(&[fin.clone()]).await.unwrap();
        assert_eq!(all(s).await, vec![fin.clone()]);
        // A snapshot after the end (even a later one) does not undo it.
        let mut late = a.clone();
        late.end_ms = T0 + 4000;
        late.bytes_to_peer = 999;
        s.write_usage(&[late.clone()]).await.unwrap();
        assert_eq!(all(s).await, vec![fin.clone()]);
        // A final record replaces a final one.
        fin.end_reason = Some("killed".into());
        s.write_usage(&[fin.clone()]).await.unwrap();
        assert_eq!(all(s).await, vec![fin.clone()]);
        // In one batch: the same rules, whatever the order (and PostgreSQL
        // does not refuse two rows with one id).
        let b1 = rec("b", "bob", T0 + 1, T0 + 10, None);
        let b2 = rec("b", "bob", T0 + 1, T0 + 20, None);
        let bf = rec("b", "bob", T0 + 1, T0 + 15, Some("expired"));
        let c1 = rec("c", "carol", T0 + 2, T0 + 30, None);
        let c0 = rec("c", "carol", T0 + 2, T0 + 5, None);
        let batch = vec![b1, bf.clone(), b2, c1.clone(), c0, late];
        s.write_usage(&batch).await.unwrap();
        let want = vec![fin.clone(), bf.clone(), c1.clone()];
        assert_eq!(all(s).await, want);
        s.write_usage(&batch).await.unwrap();
        assert_eq!(all(s).await, want, "the same batch twice changes nothing");
        s.write_usage(&[]).await.unwrap();
        // Names round-trip verbatim, NUL included; counters above i64::MAX
        // are stored as i64::MAX.
        clear(s).await;
        let mut n = rec("n", "nul\0inside ünï 🎉", T0, T0 + 1, Some("closed"));
        n.realm = "o'brien\"; DROP TABLE usage_records; --".into();
        n.node = "back\\slash".into();
        n.label = Some("app\0user".into());
        n.relayed = vec!["[2001:db8::1]:40000".into(), "198.51.100.1:40000".into()];
        n.bytes_to_client = u64::MAX;
        n.peers = u32::MAX;
        s.write_usage(&[n.clone()]).await.unwrap();
        n.bytes_to_client = i64::MAX as u64;
        assert_eq!(all(s).await, vec![n]);
        clear(s).await;
    }

    /// 500 records in one call (five statements in one transaction).
    async fn a_batch_of_500(s: &Store) {
        let batch: Vec<UsageRecord> = (0..500)
            .map(|i| {
                rec(
                    &format!("{i:032x}"),
                    "u",
                    T0 + i,
                    T0 + i + 1000,
                    Some("deleted"),
                )
            })
            .collect();
        s.write_usage(&batch).await.unwrap();
        s.write_usage(&batch).await.unwrap();
        let page = s.usage(&query(GroupBy::None)).await.unwrap();
        assert_eq!(page.totals.allocations, 500);
        assert_eq!(page.totals.duration_ms, 500 * 1000);
        assert_eq!(page.records, batch);
        clear(s).await;
    }

    /// Totals, groups by every key, filters and the window `[from, to)`.
    async fn grouping(s: &Store) {
        let mut rs = vec![
            rec("1", "alice", T0, T0 + 60_000, Some("deleted")),
            rec("2", "alice", T0 + DAY, T0 + DAY + 1_500, None),
            rec("3", "bob", T0 + DAY + 5, T0 + DAY + 10_005, Some("expired")),
            rec("4", "carol", T0 + 2 * DAY, T0 + 2 * DAY + 1, Some("killed")),
        ];
        rs[2].realm = "other".into();
        rs[3].node = "turn-b".into();
        rs[3].bytes_to_peer = 5;
        s.write_usage(&rs).await.unwrap();
        let totals = |n, ms, btp| UsageTotals {
            allocations: n,
            duration_ms: ms,
            bytes_to_peer: btp,
            packets_to_peer: n,
            bytes_to_client: 200 * n,
            packets_to_client: 2 * n,
        };
        let group = |key: &str, t| UsageGroup {
            key: key.into(),
            totals: t,
        };
        let page = s.usage(&query(GroupBy::User)).await.unwrap();
        assert_eq!(page.totals, totals(4, 71_501, 305));
        assert_eq!(page.totals.seconds(), 71.501);
        assert_eq!(
            page.groups,
            vec![
                group("alice", totals(2, 61_500, 200)),
                group("bob", totals(1, 10_000, 100)),
                group("carol", totals(1, 1, 5)),
            ]
        );
        assert!(page.records.is_empty() && page.next.is_none());
        let page = s.usage(&query(GroupBy::Realm)).await.unwrap();
        assert_eq!(
            page.groups,
            vec![
                group("other", totals(1, 10_000, 100)),
                group("r.example", totals(3, 61_501, 205)),
            ]
        );
        let page = s.usage(&query(GroupBy::Node)).await.unwrap();
        let keys: Vec<&str> = page.groups.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, ["turn-a", "turn-b"]);
        let page = s.usage(&query(GroupBy::Day)).await.unwrap();
        assert_eq!(
            page.groups,
            vec![
                group("2026-12-01", totals(1, 60_000, 100)),
                group("2026-12-02", totals(2, 11_500, 200)),
                group("2026-12-03", totals(1, 1, 5)),
            ]
        );
        // Filters, and the window: from is in, to is out.
        let mut q = query(GroupBy::User);
        q.realm = Some("r.example".into());
        q.from_ms = Some(T0 + DAY);
        q.to_ms = Some(T0 + 2 * DAY);
        let page = s.usage(&q).await.unwrap();
        assert_eq!(page.totals, totals(1, 1_500, 100));
        assert_eq!(page.groups, vec![group("alice", totals(1, 1_500, 100))]);
        let mut q = query(GroupBy::None);
        q.user = Some("alice".into());
        q.node = Some("turn-a".into());
        let ids: Vec<String> = s
            .usage(&q)
            .await
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["1", "2"]);
        q.user = Some("nobody".into());
        let page = s.usage(&q).await.unwrap();
        assert_eq!(
            (page.totals, page.records.len()),
            (UsageTotals::default(), 0)
        );
        clear(s).await;
    }

    /// Pages follow (start, id), ties included, and end with no cursor;
    /// groups page by key.
    async fn pagination(s: &Store) {
        let rs: Vec<UsageRecord> = [("e", 3), ("b", 1), ("a", 1), ("d", 2), ("c", 1)]
            .iter()
            .map(|(id, t)| rec(id, &format!("user-{id}"), T0 + t, T0 + 10, None))
            .collect();
        s.write_usage(&rs).await.unwrap();
        for g in [GroupBy::None, GroupBy::User] {
            let mut q = query(g);
            q.limit = 2;
            let mut seen = Vec::new();
            let mut pages = 0;
            loop {
                let page = s.usage(&q).await.unwrap();
                assert_eq!(page.totals.allocations, 5, "totals cover every page");
                pages += 1;
                seen.extend(page.records.into_iter().map(|r| r.id));
                seen.extend(page.groups.into_iter().map(|g| g.key));
                match page.next {
                    Some(c) => q.cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(pages, 3, "{g:?}");
            let want: &[&str] = match g {
                GroupBy::None => &["a", "b", "c", "d", "e"],
                _ => &["user-a", "user-b", "user-c", "user-d", "user-e"],
            };
            assert_eq!(seen, want);
        }
        // Exactly a page full: no cursor to an empty page.
        let mut q = query(GroupBy::None);
        q.limit = 5;
        assert_eq!(s.usage(&q).await.unwrap().next, None);
        // Days page too.
        let more: Vec<UsageRecord> = (1..4)
            .map(|d| rec(&format!("day{d}"), "u", T0 + d * DAY, T0 + d * DAY, None))
            .collect();
        s.write_usage(&more).await.unwrap();
        let mut q = query(GroupBy::Day);
        q.limit = 3;
        let first = s.usage(&q).await.unwrap();
        q.cursor = first.next.clone();
        let second = s.usage(&q).await.unwrap();
        let days: Vec<String> = first
            .groups
            .iter()
            .chain(&second.groups)
            .map(|g| g.key.clone())
            .collect();
        assert_eq!(
            days,
            ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"]
        );
        assert_eq!(second.next, None);
        clear(s).await;
    }

    /// Prune deletes by start time, more rows than one statement takes.
    async fn prune(s: &Store) {
        let old: Vec<UsageRecord> = (0..PRUNE_BATCH + 7)
            .map(|i| rec(&format!("old{i}"), "u", T0 - DAY + i, T0, Some("deleted")))
            .collect();
        for chunk in old.chunks(1000) {
            s.write_usage(chunk).await.unwrap();
        }
        let kept = vec![
            rec("edge", "u", T0, T0 + 1, None),
            rec("new", "u", T0 + DAY, T0 + DAY, None),
        ];
        s.write_usage(&kept).await.unwrap();
        assert_eq!(s.prune_usage(T0).await.unwrap(), PRUNE_BATCH as u64 + 7);
        assert_eq!(all(s).await, kept);
        assert_eq!(s.prune_usage(T0).await.unwrap(), 0);
        clear(s).await;
    }

    async fn exercise(s: &Store) {
        clear(s).await;
        upserts(s).await;
        a_batch_of_500(s).await;
        grouping(s).await;
        pagination(s).await;
        prune(s).await;
    }

    #[tokio::test]
    async fn sqlite_usage_records_upsert_group_page_and_prune() {
        let (s, dir) = sqlite().await;
        exercise(&s).await;
        s.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The same answers from PostgreSQL, in a database of its own.
    #[tokio::test]
    async fn postgres_usage_records_upsert_group_page_and_prune() {
        let Some(base) = pg_url() else { return };
        let name = "turnpike_usage_unit";
        let admin = Store::open(&base).await.unwrap();
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::raw_sql(&sql).execute(&admin.pool).await.unwrap();
        }
        admin.close().await;
        let (prefix, _) = base.rsplit_once('/').unwrap();
        let s = Store::open(&format!("{prefix}/{name}")).await.unwrap();
        exercise(&s).await;
        s.close().await;
    }
}
