//! Delivery against a tiny HTTP/1.1 receiver on 127.0.0.1 that answers
//! from a script, over a real SQLite store, with millisecond backoffs.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::*;
use crate::auth::rest::Secret;
use crate::store::outbox::OUTBOX_MAX_ROWS;
use crate::store::{unix_now_ms, Store};
use crate::usage::{OutboxEvent, UsageStats};

const SECRET: &[u8] = b"webhook-test-secret-0123";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Got {
    headers: HashMap<String, String>,
    body: String,
    status: u16,
}

impl Got {
    fn id(&self) -> &str {
        &self.headers["turnpike-event-id"]
    }
}

#[derive(Default)]
struct Script {
    /// Statuses for the next requests; 200 when empty.
    statuses: VecDeque<u16>,
    /// Requests that have arrived (before any delay).
    arrived: usize,
    /// Requests answered.
    got: Vec<Got>,
}

/// A receiver that can go down and come back on the same port. While
/// down it resets every connection unread: closing the port instead would
/// let another test's receiver take it in the meantime.
struct Receiver {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    down: Arc<std::sync::atomic::AtomicBool>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(delay: Duration) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script: Arc<Mutex<Script>> = Arc::default();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, d) = (script.clone(), down.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                if d.load(std::sync::atomic::Ordering::SeqCst) {
                    // An RST, as from a crashed receiver.
                    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    drop(stream);
                    continue;
                }
                conns.spawn(answer(stream, s.clone(), delay));
            }
        });
        Receiver {
            addr,
            script,
            down,
            _task: task,
        }
    }

    /// A receiver that is down (until [`Receiver::restart`]).
    async fn closed() -> Receiver {
        let r = Receiver::start(Duration::ZERO).await;
        r.stop();
        r
    }

    fn url(&self) -> String {
        format!("http://{}/hook?token=t0ken", self.addr)
    }

    fn stop(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn restart(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    fn got(&self) -> Vec<Got> {
        self.script.lock().unwrap().got.clone()
    }

    /// Ids answered with a 2xx, in order.
    fn delivered(&self) -> Vec<String> {
        self.got()
            .iter()
            .filter(|g| (200..300).contains(&g.status))
            .map(|g| g.id().to_string())
            .collect()
    }
}

/// Reads one request (headers, Content-Length body), answers from the
/// script and closes.
async fn answer(mut s: tokio::net::TcpStream, script: Arc<Mutex<Script>>, delay: Duration) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut headers = HashMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8(buf[head_end..head_end + len].to_vec()).unwrap();
    script.lock().unwrap().arrived += 1;
    tokio::time::sleep(delay).await;
    let status = {
        let mut sc = script.lock().unwrap();
        let status = sc.statuses.pop_front().unwrap_or(200);
        sc.got.push(Got {
            headers,
            body,
            status,
        });
        status
    };
    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    let _ = s.write_all(reply.as_bytes()).await;
    let _ = s.shutdown().await;
}

fn event(id: &str, time_ms: i64) -> OutboxEvent {
    OutboxEvent::new(
        id.into(),
        "allocation.created",
        "n1",
        time_ms,
        serde_json::json!({"n": id}),
    )
}

const FAST: super::deliver::Backoff = super::deliver::Backoff {
    base: Duration::from_millis(20),
    cap: Duration::from_millis(100),
};

fn webhooks(store: &Store, urls: Vec<String>, stats: &Arc<UsageStats>) -> Webhooks {
    Webhooks::new(
        store.clone(),
        urls,
        Secret(SECRET.to_vec()),
        Duration::from_secs(3600),
        "n1".into(),
        stats.clone(),
    )
    .unwrap()
    .with_backoff(FAST)
}

/// A running service and the switch that stops it.
struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start(w: Webhooks) -> Running {
    let (stop, rx) = watch::channel(false);
    Running {
        stop,
        task: tokio::spawn(w.run(rx)),
    }
}

impl Running {
    /// Stops and waits; returns how long the stop took.
    async fn stop(self) -> Duration {
        let t = Instant::now();
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("run returns")
            .unwrap();
        t.elapsed()
    }
}

/// Waits up to 5 s for `cond`.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn events_reach_each_receiver_in_time_order_signed_at_once_on_a_poke() {
    let (store, dir) = crate::store::outbox::tests::sqlite().await;
    let (a, b) = (
        Receiver::start(Duration::ZERO).await,
        Receiver::start(Duration::ZERO).await,
    );
    let stats = Arc::new(UsageStats::default());
    let urls = vec![a.url(), b.url()];
    // A poll far longer than the test: only the poke can start delivery.
    let w = webhooks(&store, urls.clone(), &stats).with_poll(Duration::from_secs(60));
    let poke = w.poker();
    let running = start(w);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let now = unix_now_ms();
    // Written out of time order, ids in reverse time order; delivered
    // in time order.
    let batch: Vec<_> = [3, 0, 4, 1, 2]
        .iter()
        .map(|&i| event(&format!("e{}", 4 - i), now - 1000 + i))
        .collect();
    assert_eq!(
        store
            .outbox_add(&batch, &urls, OUTBOX_MAX_ROWS, now)
            .await
            .unwrap(),
        0
    );
    poke.poke();
    until("both receivers got 5", || {
        a.delivered().len() == 5 && b.delivered().len() == 5
    })
    .await;
    running.stop().await;
    for r in [&a, &b] {
        assert_eq!(r.delivered(), ["e4", "e3", "e2", "e1", "e0"]);
        for g in r.got() {
            let sent = batch.iter().find(|e| e.id == g.id()).unwrap();
            assert_eq!(g.body, sent.body);
            let t = verify(
                SECRET,
                &g.headers["turnpike-signature"],
                &g.body,
                unix_now_ms() / 1000,
                5,
            )
            .expect("a valid, fresh signature");
            assert!(g.headers["turnpike-signature"].starts_with(&format!("t={t},v1=")));
            assert_eq!(g.headers["turnpike-event-type"], "allocation.created");
            assert_eq!(g.headers["content-type"], "application/json");
            assert_eq!(
                g.headers["user-agent"],
                concat!("turnpike/", env!("CARGO_PKG_VERSION"))
            );
        }
    }
    assert_eq!(UsageStats::get(&stats.webhook_delivered), 10);
    assert_eq!(UsageStats::get(&stats.webhook_failed), 0);
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_backoff_and_delivered_once_before_later_events() {
    let (store, dir) = crate::store::outbox::tests::sqlite().await;
    let r = Receiver::start(Duration::ZERO).await;
    r.script.lock().unwrap().statuses = [500, 503, 302].into();
    let stats = Arc::new(UsageStats::default());
    let now = unix_now_ms();
    let batch = [event("x0", now - 2), event("x1", now - 1)];
    store
        .outbox_add(&batch, &[r.url()], OUTBOX_MAX_ROWS, now)
        .await
        .unwrap();
    let running = start(webhooks(&store, vec![r.url()], &stats));
    until("both delivered", || r.delivered().len() == 2).await;
    running.stop().await;
    // x1 waited behind x0; a redirect is a failure, not followed.
    let seen: Vec<_> = r
        .got()
        .iter()
        .map(|g| (g.id().to_string(), g.status))
        .collect();
    assert_eq!(
        seen,
        [
            ("x0".to_string(), 500),
            ("x0".to_string(), 503),
            ("x0".to_string(), 302),
            ("x0".to_string(), 200),
            ("x1".to_string(), 200),
        ]
    );
    assert_eq!(UsageStats::get(&stats.webhook_failed), 3);
    assert_eq!(UsageStats::get(&stats.webhook_delivered), 2);
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_every_event_once_when_it_returns() {
    let (store, dir) = crate::store::outbox::tests::sqlite().await;
    let r = Receiver::closed().await;
    let stats = Arc::new(UsageStats::default());
    let now = unix_now_ms();
    let batch: Vec<_> = (0..5).map(|i| event(&format!("d{i}"), now + i)).collect();
    store
        .outbox_add(&batch, &[r.url()], OUTBOX_MAX_ROWS, now)
        .await
        .unwrap();
    let running = start(webhooks(&store, vec![r.url()], &stats));
    until("some failures", || {
        UsageStats::get(&stats.webhook_failed) >= 3
    })
    .await;
    assert_eq!(UsageStats::get(&stats.webhook_delivered), 0);
    r.restart();
    until("all delivered", || r.delivered().len() == 5).await;
    running.stop().await;
    assert_eq!(r.delivered(), ids("d", 5));
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_restart_during_an_outage_loses_nothing_and_resends_nothing_acknowledged() {
    let (store, dir) = crate::store::outbox::tests::sqlite().await;
    let r = Receiver::start(Duration::ZERO).await;
    let stats = Arc::new(UsageStats::default());
    let urls = vec![r.url()];
    let now = unix_now_ms();
    let first: Vec<_> = (0..3).map(|i| event(&format!("s{i}"), now + i)).collect();
    store
        .outbox_add(&first, &urls, OUTBOX_MAX_ROWS, now)
        .await
        .unwrap();
    let running = start(webhooks(&store, urls.clone(), &stats));
    // Acknowledged as far as the service knows (a reply cut off by the
    // receiver going down would rightly be sent again).
    until("first three", || {
        UsageStats::get(&stats.webhook_delivered) == 3
    })
    .await;
    // The receiver goes away; more events come; the server stops.
    r.stop();
    let second: Vec<_> = (3..6).map(|i| event(&format!("s{i}"), now + i)).collect();
    store
        .outbox_add(&second, &urls, OUTBOX_MAX_ROWS, now)
        .await
        .unwrap();
    until("failures", || UsageStats::get(&stats.webhook_failed) >= 2).await;
    running.stop().await;
    assert_eq!(store.outbox_depth().await.unwrap(), 3);
    // A new server process (same store) while the receiver comes back.
    let stats2 = Arc::new(UsageStats::default());
    let running = start(webhooks(&store, urls.clone(), &stats2));
    r.restart();
    until("all six", || r.delivered().len() == 6).await;
    running.stop().await;
    assert_eq!(r.delivered(), ids("s", 6), "each id once, in order");
    assert_eq!(UsageStats::get(&stats2.webhook_delivered), 3);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn stop_lets_the_request_in_flight_finish_and_records_it() {
    let (store, dir) = crate::store::outbox::tests::sqlite().await;
    let r = Receiver::start(Duration::from_millis(700)).await;
    let stats = Arc::new(UsageStats::default());
    let now = unix_now_ms();
    store
        .outbox_add(&[event("f0", now)], &[r.url()], OUTBOX_MAX_ROWS, now)
        .await
        .unwrap();
    let running = start(webhooks(&store, vec![r.url()], &stats));
    until("the request arrives", || {
        r.script.lock().unwrap().arrived == 1
    })
    .await;
    let took = running.stop().await;
    assert!(
        took >= Duration::from_millis(400),
        "waited for it: {took:?}"
    );
    assert_eq!(r.delivered(), ["f0"]);
    assert_eq!(UsageStats::get(&stats.webhook_delivered), 1);
    assert_eq!(store.outbox_depth().await.unwrap(), 0, "acknowledged");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn events_past_max_age_are_dropped_unsent_and_counted() {
    let (store, dir) = crate::store::outbox::tests::sqlite().await;
    let r = Receiver::start(Duration::ZERO).await;
    let stats = Arc::new(UsageStats::default());
    let now = unix_now_ms();
    let batch = [
        event("old0", now - 7_200_000),
        event("old1", now - 3_700_000),
        event("new", now),
    ];
    store
        .outbox_add(&batch, &[r.url()], OUTBOX_MAX_ROWS, now)
        .await
        .unwrap();
    stats
        .outbox_depth
        .store(999, std::sync::atomic::Ordering::Relaxed);
    let running = start(webhooks(&store, vec![r.url()], &stats));
    until("the new one", || r.delivered().len() == 1).await;
    until("depth gauge", || UsageStats::get(&stats.outbox_depth) == 0).await;
    running.stop().await;
    assert_eq!(r.delivered(), ["new"]);
    assert_eq!(UsageStats::get(&stats.webhook_dropped), 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn after_a_crash_mid_attempt_the_restarted_node_sends_at_once() {
    let (store, dir) = crate::store::outbox::tests::sqlite().await;
    let r = Receiver::start(Duration::ZERO).await;
    let stats = Arc::new(UsageStats::default());
    let now = unix_now_ms();
    store
        .outbox_add(&[event("k0", now)], &[r.url()], OUTBOX_MAX_ROWS, now)
        .await
        .unwrap();
    // n1 took the row and died: its lease would hold it for a minute.
    let lease = deliver::LEASE.as_millis() as i64;
    let head = store
        .outbox_claim(&r.url(), "n1", now, lease)
        .await
        .unwrap();
    assert!(matches!(head, crate::store::outbox::Head::Claimed(_)));
    let running = start(webhooks(&store, vec![r.url()], &stats));
    until("delivered well inside the lease", || {
        r.delivered() == ["k0"]
    })
    .await;
    running.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
