//! The fleet's session view (issue 15): each node publishes its sessions
//! (the admin API's JSON entries) every heartbeat, and a node asked to end
//! another node's session queues a command the owner takes.
//!
//! With PostgreSQL a queued command is announced on [`SESSIONS_CHANNEL`]
//! (payload: the owner's name) in the same transaction, so the owner acts
//! at once; every node also polls its queue, which is all SQLite does.

use serde_json::Value;
use sqlx::Row;

use super::nodes::DOWN_AFTER_MS;
use super::{Kind, Store, StoreError};

/// The NOTIFY channel of session commands.
pub(crate) const SESSIONS_CHANNEL: &str = "turnpike_sessions";

/// Sessions one node publishes at most (its own API lists them all).
pub(crate) const MAX_PUBLISHED: usize = 10_000;

/// Commands waiting for one node at most.
pub(crate) const MAX_COMMANDS_PER_NODE: i64 = 256;

/// Commands one take returns at most (the rest wait for the next).
pub(crate) const TAKE_AT_MOST: i64 = 64;

/// A command its owner has not taken in this long (ms) is dropped: the
/// node was away, and its sessions have been out of the view since.
pub(crate) const COMMAND_TTL_MS: i64 = 60_000;

/// A node's row is deleted once it has been silent this long (ms): the
/// table does not keep every name a node ever had.
pub(crate) const FORGET_AFTER_MS: i64 = 3_600_000;

/// What became of a queued "end this session".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Waiting for the owner (or already waiting: asked twice).
    Yes,
    /// The owner has [`MAX_COMMANDS_PER_NODE`] waiting already.
    Full,
}

impl Store {
    /// Replaces `node`'s published sessions (at most [`MAX_PUBLISHED`])
    /// and forgets nodes silent for [`FORGET_AFTER_MS`].
    pub(crate) async fn publish_sessions(
        &self,
        node: &str,
        sessions: &[Value],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sessions = &sessions[..sessions.len().min(MAX_PUBLISHED)];
        let json = serde_json::to_string(sessions).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO fleet_sessions (node, sessions, updated) VALUES ($1, $2, $3) \
             ON CONFLICT (node) DO UPDATE SET sessions = excluded.sessions, \
             updated = excluded.updated",
        )
        .bind(node)
        .bind(json)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM fleet_sessions WHERE updated < $1")
            .bind(now_ms - FORGET_AFTER_MS)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The published sessions of every node alive at `now_ms` (heard from
    /// within [`DOWN_AFTER_MS`]), by node name.
    pub(crate) async fn fleet_sessions(
        &self,
        now_ms: i64,
    ) -> Result<Vec<(String, Vec<Value>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT node, sessions FROM fleet_sessions WHERE updated >= $1 ORDER BY node",
        )
        .bind(now_ms - DOWN_AFTER_MS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let json: String = r.try_get("sessions")?;
                Ok((
                    r.try_get("node")?,
                    serde_json::from_str(&json).unwrap_or_default(),
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Asks `node` to end its session `session` (the node's local id).
    pub(crate) async fn queue_session_end(
        &self,
        node: &str,
        session: &str,
        now_ms: i64,
    ) -> Result<Queued, StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM fleet_session_commands WHERE created < $1")
            .bind(now_ms - COMMAND_TTL_MS)
            .execute(&mut *tx)
            .await?;
        let waiting: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM fleet_session_commands WHERE node = $1")
                .bind(node)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        if waiting >= MAX_COMMANDS_PER_NODE {
            return Ok(Queued::Full);
        }
        sqlx::query(
            "INSERT INTO fleet_session_commands (node, session, created) VALUES ($1, $2, $3) \
             ON CONFLICT (node, session) DO NOTHING",
        )
        .bind(node)
        .bind(session)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        self.notify(&mut tx, SESSIONS_CHANNEL, node).await?;
        tx.commit().await?;
        Ok(Queued::Yes)
    }

    /// Takes up to [`TAKE_AT_MOST`] of `node`'s commands: each is deleted,
    /// and returned only to the taker whose delete removed it.
    pub(crate) async fn take_session_commands(
        &self,
        node: &str,
    ) -> Result<Vec<String>, StoreError> {
        // A read first: the usual answer is "none", and on SQLite a read
        // takes no write lock.
        let rows = sqlx::query(
            "SELECT session FROM fleet_session_commands WHERE node = $1 ORDER BY created LIMIT $2",
        )
        .bind(node)
        .bind(TAKE_AT_MOST)
        .fetch_all(&self.pool)
        .await?;
        let mut taken = Vec::new();
        for r in rows {
            let session: String = r.try_get("session")?;
            let gone =
                sqlx::query("DELETE FROM fleet_session_commands WHERE node = $1 AND session = $2")
                    .bind(node)
                    .bind(&session)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
            if gone == 1 {
                taken.push(session);
            }
        }
        Ok(taken)
    }

    /// Announces `payload` on `channel` when `tx` commits (PostgreSQL
    /// only; SQLite nodes poll).
    pub(crate) async fn notify(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        channel: &str,
        payload: &str,
    ) -> Result<(), StoreError> {
        if self.kind == Kind::Postgres {
            // pg_notify returns void, which the Any driver cannot decode.
            sqlx::query("SELECT CAST(pg_notify($1, $2) AS TEXT) AS n")
                .bind(channel)
                .bind(payload)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// The test cluster's URL (store tests' own), for tests outside the store.
    pub(crate) fn pg_url() -> Option<String> {
        crate::store::tests::pg_url()
    }

    /// A node name no other test (or run) uses.
    fn unique(tag: &str) -> String {
        format!(
            "{tag}-{}-{}",
            std::process::id(),
            crate::store::unix_now_ms()
        )
    }

    async fn exercise(s: &Store) {
        let (a, b) = (unique("s-a"), unique("s-b"));
        let now = crate::store::unix_now_ms();
        let entry = json!({"id": format!("{a}~0-1-1"), "node": a, "user": "u"});
        s.publish_sessions(&a, std::slice::from_ref(&entry), now)
            .await
            .unwrap();
        s.publish_sessions(&b, &[], now - DOWN_AFTER_MS - 1)
            .await
            .unwrap();
        let view = s.fleet_sessions(now).await.unwrap();
        let mine: Vec<_> = view.iter().filter(|(n, _)| *n == a || *n == b).collect();
        assert_eq!(mine, [&(a.clone(), vec![entry])], "b is down: not listed");
        // The next heartbeat replaces the row; b comes back.
        s.publish_sessions(&a, &[], now + 1).await.unwrap();
        s.publish_sessions(&b, &[json!({"id": "x"})], now + 1)
            .await
            .unwrap();
        let view = s.fleet_sessions(now + 1).await.unwrap();
        let mine: Vec<_> = view.iter().filter(|(n, _)| *n == a || *n == b).collect();
        assert_eq!(
            mine,
            [&(a.clone(), vec![]), &(b.clone(), vec![json!({"id": "x"})])]
        );
        // A node silent for an hour is forgotten at the next publish.
        let gone = unique("s-gone");
        s.publish_sessions(&gone, &[], now - FORGET_AFTER_MS - 1)
            .await
            .unwrap();
        let all = |s: &Store| {
            let s = s.clone();
            async move {
                let rows = sqlx::query("SELECT node FROM fleet_sessions")
                    .fetch_all(&s.pool)
                    .await
                    .unwrap();
                rows.iter()
                    .map(|r| r.try_get::<String, _>("node").unwrap())
                    .collect::<Vec<_>>()
            }
        };
        assert!(all(s).await.contains(&gone));
        s.publish_sessions(&a, &[], now + 1).await.unwrap();
        assert!(!all(s).await.contains(&gone));
        assert!(all(s).await.contains(&b), "b is down, not forgotten");
        // Publishing is bounded.
        let many: Vec<Value> = (0..MAX_PUBLISHED + 5).map(|i| json!({"id": i})).collect();
        s.publish_sessions(&a, &many, now + 2).await.unwrap();
        let view = s.fleet_sessions(now + 2).await.unwrap();
        let a_row = view.iter().find(|(n, _)| *n == a).unwrap();
        assert_eq!(a_row.1.len(), MAX_PUBLISHED);

        // Commands: queued once however often asked, taken once, per node.
        assert_eq!(
            s.queue_session_end(&a, "0-1-1", now).await.unwrap(),
            Queued::Yes
        );
        assert_eq!(
            s.queue_session_end(&a, "0-1-1", now).await.unwrap(),
            Queued::Yes
        );
        assert_eq!(
            s.queue_session_end(&a, "1-2-1", now).await.unwrap(),
            Queued::Yes
        );
        assert!(s.take_session_commands(&b).await.unwrap().is_empty());
        let mut taken = s.take_session_commands(&a).await.unwrap();
        taken.sort();
        assert_eq!(taken, ["0-1-1", "1-2-1"]);
        assert!(s.take_session_commands(&a).await.unwrap().is_empty());
        // Bounded per node; old commands expire.
        for i in 0..MAX_COMMANDS_PER_NODE {
            let q = s
                .queue_session_end(&b, &format!("0-{i}-1"), now)
                .await
                .unwrap();
            assert_eq!(q, Queued::Yes);
        }
        assert_eq!(
            s.queue_session_end(&b, "9-9-9", now).await.unwrap(),
            Queued::Full
        );
        assert_eq!(
            s.queue_session_end(&a, "9-9-9", now).await.unwrap(),
            Queued::Yes
        );
        let later = now + COMMAND_TTL_MS + 1;
        assert_eq!(
            s.queue_session_end(&b, "9-9-9", later).await.unwrap(),
            Queued::Yes
        );
        assert_eq!(s.take_session_commands(&b).await.unwrap(), ["9-9-9"]);
        assert!(
            s.take_session_commands(&a).await.unwrap().is_empty(),
            "expired"
        );
    }

    #[tokio::test]
    async fn sessions_are_published_listed_while_fresh_and_commands_taken_once_sqlite() {
        let (s, dir) = crate::store::tests::sqlite().await;
        exercise(&s).await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn sessions_are_published_listed_while_fresh_and_commands_taken_once_postgres() {
        let Some(url) = crate::store::tests::pg_url() else {
            return;
        };
        exercise(&Store::open(&url).await.unwrap()).await;
    }

    #[tokio::test]
    async fn a_queued_command_is_announced_to_its_node_on_commit() {
        let Some(url) = crate::store::tests::pg_url() else {
            return;
        };
        let s = Store::open(&url).await.unwrap();
        let node = unique("s-n");
        let mut l = sqlx::postgres::PgListener::connect(&url).await.unwrap();
        l.listen(SESSIONS_CHANNEL).await.unwrap();
        s.queue_session_end(&node, "0-1-1", crate::store::unix_now_ms())
            .await
            .unwrap();
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                let n = l.recv().await.unwrap();
                if n.payload() == node {
                    return n;
                }
            }
        })
        .await
        .expect("notified");
        assert_eq!(n.channel(), SESSIONS_CHANNEL);
        s.take_session_commands(&node).await.unwrap();
    }
}
