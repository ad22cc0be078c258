//! The outbox's rules on SQLite and on PostgreSQL (a database of its own
//! per test: depth and the bound count every row).

use super::*;
use crate::store::tests::pg_url;

fn event(id: &str, time_ms: i64) -> OutboxEvent {
    OutboxEvent::new(
        id.into(),
        "node.ready",
        "n1",
        time_ms,
        serde_json::json!({}),
    )
}

fn urls(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|n| format!("http://{n}.test/hook"))
        .collect()
}

fn claimed(h: Head) -> OutboxRow {
    match h {
        Head::Claimed(r) => r,
        other => panic!("expected a claim, got {other:?}"),
    }
}

/// A fresh SQLite store in a temporary directory (for tests outside the
/// store too).
pub(crate) async fn sqlite() -> (Store, std::path::PathBuf) {
    crate::store::tests::sqlite().await
}

async fn postgres(name: &str) -> Option<Store> {
    use sqlx::Connection;
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

const NOW: i64 = 1_800_000_000_000;
const LEASE: i64 = 30_000;

/// Duplicates are ignored; each URL delivers its oldest row first and
/// only that one; a lease keeps others off until it runs out; a failure
/// backs the URL off; an ack moves the line on; expiry drops old events.
async fn head_of_line(s: &Store) {
    let u = urls(&["a", "b"]);
    let batch = [event("a300", 300), event("z100", 100), event("m200", 200)];
    assert_eq!(s.outbox_add(&batch, &u, 1000, NOW).await.unwrap(), 0);
    assert_eq!(s.outbox_depth().await.unwrap(), 6);
    // The same batch again (a retried write): nothing new.
    assert_eq!(s.outbox_add(&batch, &u, 1000, NOW).await.unwrap(), 0);
    assert_eq!(s.outbox_depth().await.unwrap(), 6);

    let head = claimed(s.outbox_claim(&u[0], "n1", NOW, LEASE).await.unwrap());
    assert_eq!((head.event_id.as_str(), head.time_ms), ("z100", 100));
    assert_eq!((head.kind.as_str(), head.attempts), ("node.ready", 0));
    assert_eq!(head.body, batch[1].body);
    // Leased: nobody (not even n1) gets it, nor the rows behind it.
    assert_eq!(
        s.outbox_claim(&u[0], "n2", NOW + 1, LEASE).await.unwrap(),
        Head::Wait {
            until_ms: NOW + LEASE
        }
    );
    // Another URL has its own line.
    let other = claimed(s.outbox_claim(&u[1], "n2", NOW, LEASE).await.unwrap());
    assert_eq!(other.event_id, "z100");

    // n1 crashes; its lease runs out and n2 takes the row over.
    let later = NOW + LEASE;
    let taken = claimed(s.outbox_claim(&u[0], "n2", later, LEASE).await.unwrap());
    assert_eq!(taken.event_id, "z100");
    // n1's late failure report does not count: n2 holds it.
    assert!(!s.outbox_fail("z100", &u[0], "n1", later + 5).await.unwrap());
    // n2's failure backs the URL off: its later rows wait too.
    assert!(s
        .outbox_fail("z100", &u[0], "n2", later + 5_000)
        .await
        .unwrap());
    assert_eq!(
        s.outbox_claim(&u[0], "n2", later + 4_999, LEASE)
            .await
            .unwrap(),
        Head::Wait {
            until_ms: later + 5_000
        }
    );
    let retry = claimed(
        s.outbox_claim(&u[0], "n1", later + 5_000, LEASE)
            .await
            .unwrap(),
    );
    assert_eq!((retry.event_id.as_str(), retry.attempts), ("z100", 1));
    // Acknowledged: gone, and the next in time order is the head.
    assert!(s.outbox_ack("z100", &u[0]).await.unwrap());
    assert!(!s.outbox_ack("z100", &u[0]).await.unwrap());
    let next = claimed(
        s.outbox_claim(&u[0], "n1", later + 5_000, LEASE)
            .await
            .unwrap(),
    );
    assert_eq!(next.event_id, "m200");
    assert_eq!(
        s.outbox_rows(&u[0]).await.unwrap(),
        [("m200".to_string(), 0), ("a300".to_string(), 0)]
    );

    // Expiry: events before 250 go, for every URL, leased or not.
    assert_eq!(
        s.outbox_expire(250).await.unwrap(),
        3,
        "m200@a, z100@b, m200@b"
    );
    assert_eq!(s.outbox_rows(&u[1]).await.unwrap().len(), 1);
    assert_eq!(s.outbox_depth().await.unwrap(), 2);
    assert_eq!(s.outbox_expire(301).await.unwrap(), 2);
    assert_eq!(
        s.outbox_claim(&u[0], "n1", later, LEASE).await.unwrap(),
        Head::Empty
    );
}

/// The outbox holds at most `max_rows`: beyond it the newest rows are
/// refused and counted, rows already there are not counted again.
async fn bounded(s: &Store) {
    let u = urls(&["c", "d"]);
    let held = s.outbox_depth().await.unwrap() as i64;
    let batch: Vec<_> = (0..5).map(|i| event(&format!("b{i}"), i)).collect();
    assert_eq!(s.outbox_add(&batch, &u, held + 3, NOW).await.unwrap(), 7);
    assert_eq!(s.outbox_depth().await.unwrap() as i64, held + 3);
    assert_eq!(
        s.outbox_rows(&u[0]).await.unwrap(),
        [("b0".to_string(), 0), ("b1".to_string(), 0)]
    );
    assert_eq!(s.outbox_rows(&u[1]).await.unwrap(), [("b0".to_string(), 0)]);
    // Written again while full: the three that are there are not lost.
    assert_eq!(s.outbox_add(&batch, &u, held + 3, NOW).await.unwrap(), 7);
    // Room again: the rest go in.
    assert_eq!(s.outbox_add(&batch, &u, held + 10, NOW).await.unwrap(), 0);
    assert_eq!(s.outbox_depth().await.unwrap() as i64, held + 10);
}

/// Many claimers at once on one due row: exactly one wins it.
async fn one_claimer_wins(s: &Store) {
    for round in 0..20 {
        let url = format!("http://race{round}.test/");
        s.outbox_add(&[event("r", 1)], std::slice::from_ref(&url), 1_000_000, NOW)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let (s, url) = (s.clone(), url.clone());
                tokio::spawn(
                    async move { s.outbox_claim(&url, &format!("n{i}"), NOW, LEASE).await },
                )
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            if let Head::Claimed(_) = t.await.unwrap().unwrap() {
                won += 1;
            }
        }
        assert_eq!(won, 1, "round {round}");
    }
}

#[tokio::test]
async fn the_outbox_delivers_head_of_line_under_leases_sqlite() {
    let (s, dir) = sqlite().await;
    head_of_line(&s).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_outbox_delivers_head_of_line_under_leases_postgres() {
    if let Some(s) = postgres("turnpike_outbox_line").await {
        head_of_line(&s).await;
    }
}

#[tokio::test]
async fn the_outbox_is_bounded_sqlite() {
    let (s, dir) = sqlite().await;
    bounded(&s).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_outbox_is_bounded_postgres() {
    if let Some(s) = postgres("turnpike_outbox_bound").await {
        bounded(&s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_several_claimers_wins_a_row_sqlite() {
    let (s, dir) = sqlite().await;
    one_claimer_wins(&s).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_several_claimers_wins_a_row_postgres() {
    if let Some(s) = postgres("turnpike_outbox_race").await {
        one_claimer_wins(&s).await;
    }
}
