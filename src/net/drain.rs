//! Drain (issue 15), the shell's side (readiness is in `status.rs`): the
//! state the admin API and SIGUSR1 set ([`DrainControl`]), the alternates read from the node registry for
//! the core's [`crate::turn::Drain`], and the loop that ends the process
//! once its allocations are down to `drain_min_allocations` or the
//! deadline passes.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{watch, Notify};

use super::heartbeat::HEARTBEAT_EVERY;
use super::stopped;
use crate::admin::DrainView;
use crate::config::Config;
use crate::store::nodes::NodeRow;
use crate::store::Store;
use crate::turn::{Alternate, Shared, Transport};

/// How often a draining node looks at its allocation count.
const EXIT_CHECK_EVERY: Duration = Duration::from_millis(200);
/// A draining node stays at least this long, even with no allocations: two
/// heartbeats, so the registry shows it draining (and the credential API
/// stops naming it) before it goes, and clients given its address just
/// before get a 300 rather than silence.
const MIN_DRAIN: Duration = Duration::from_secs(4);
/// The longest reading the registry (and resolving names) may hold up a
/// drain's start.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// A drain under way.
#[derive(Debug, Clone, Copy)]
struct Draining {
    started: Instant,
    since_unix: u64,
    /// The monotonic deadline and its Unix second.
    deadline: Option<(Instant, u64)>,
}

/// The node's drain state, shared by the admin API, SIGUSR1, the heartbeat
/// and the exit loop.
#[derive(Debug)]
pub(crate) struct DrainControl {
    shared: Arc<Shared>,
    store: Store,
    node_name: String,
    min_allocations: u32,
    default_timeout: Option<Duration>,
    state: Mutex<Option<Draining>>,
    /// Wakes the exit loop when a drain starts or ends.
    changed: Notify,
    /// Sends `node.draining` and `node.ready`.
    events: Arc<crate::usage::recorder::Recorder>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl DrainControl {
    pub(super) fn new(
        shared: Arc<Shared>,
        store: Store,
        config: &Config,
        events: Arc<crate::usage::recorder::Recorder>,
    ) -> Self {
        DrainControl {
            shared,
            store,
            node_name: config.node_name.clone(),
            min_allocations: config.drain_min_allocations,
            default_timeout: config.drain_timeout,
            state: Mutex::new(None),
            changed: Notify::new(),
            events,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Draining>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts draining, or moves the deadline of a drain under way:
    /// `deadline_s` seconds from now, `Some(0)` none, `None` the configured
    /// `drain_timeout`. The alternates are read first, so the first
    /// Allocate turned away already has somewhere to go.
    pub(crate) async fn start(&self, deadline_s: Option<u64>) -> DrainView {
        let timeout = match deadline_s {
            None => self.default_timeout,
            Some(0) => None,
            Some(s) => Some(Duration::from_secs(s)),
        };
        let _ = tokio::time::timeout(LOOKUP_TIMEOUT, self.refresh_alternates()).await;
        let now = unix_now();
        let began = {
            let mut state = self.lock();
            let began = state.is_none();
            let (started, since_unix) =
                state.map_or((Instant::now(), now), |d| (d.started, d.since_unix));
            *state = Some(Draining {
                started,
                since_unix,
                deadline: timeout.map(|t| (Instant::now() + t, now + t.as_secs())),
            });
            began
        };
        self.shared.drain.set_draining(true);
        self.changed.notify_one();
        let view = self.view();
        if began {
            self.events.node_event(
                "node.draining",
                serde_json::json!({"deadline": view.deadline, "allocations": view.allocations}),
            );
        }
        view
    }

    /// Ends a drain: the node takes new allocations again.
    pub(crate) fn stop(&self) -> DrainView {
        let was = self.lock().take().is_some();
        self.shared.drain.set_draining(false);
        self.changed.notify_one();
        let view = self.view();
        if was {
            self.events.node_event(
                "node.ready",
                serde_json::json!({"allocations": view.allocations}),
            );
        }
        view
    }

    pub(crate) fn view(&self) -> DrainView {
        let state = *self.lock();
        DrainView {
            state: self.node_state(),
            since: state.map(|d| d.since_unix),
            deadline: state.and_then(|d| d.deadline.map(|(_, unix)| unix)),
            allocations: self.shared.quotas.total(),
            min_allocations: self.min_allocations,
            alternates: self
                .shared
                .drain
                .alternates()
                .iter()
                .map(|a| format!("{} {}", a.transport, a.addr))
                .collect(),
        }
    }

    /// This node's state as the registry shows it.
    pub(crate) fn node_state(&self) -> &'static str {
        if self.shared.drain.is_draining() {
            "draining"
        } else {
            "ready"
        }
    }

    /// Reads the `ready` nodes from the registry into the core's
    /// alternates. A failing store keeps the last ones.
    async fn refresh_alternates(&self) {
        match self.store.nodes().await {
            Ok(rows) => {
                let found = resolve(listeners(&rows, &self.node_name)).await;
                self.shared.drain.set_alternates(found);
            }
            Err(e) => tracing::warn!("drain: cannot read the node registry, alternates kept: {e}"),
        }
    }

    /// Why the process should end now, if it should: its allocations are
    /// down to `drain_min_allocations` (after [`MIN_DRAIN`]), or the
    /// deadline passed.
    fn exit_reason(&self, now: Instant) -> Option<String> {
        let state = (*self.lock())?;
        let allocations = self.shared.quotas.total();
        let lingered = now.saturating_duration_since(state.started) >= MIN_DRAIN;
        if allocations <= self.min_allocations && lingered {
            return Some(format!(
                "drained: {allocations} allocations left (drain_min_allocations {})",
                self.min_allocations
            ));
        }
        match state.deadline {
            Some((at, _)) if now >= at => Some(format!(
                "drain deadline reached with {allocations} allocations left"
            )),
            _ => None,
        }
    }
}

/// Starts a drain from outside the admin API (SIGUSR1), with the
/// configured deadline.
#[derive(Debug, Clone)]
pub struct Drainer(pub(super) Arc<DrainControl>);

impl Drainer {
    /// Starts draining with `drain_timeout` as the deadline.
    pub async fn drain(&self) {
        let view = self.0.start(None).await;
        tracing::info!(
            event = "drain",
            "draining: {} allocations, deadline {:?}",
            view.allocations,
            view.deadline
        );
    }
}

/// While draining: keeps the alternates fresh and stops the server once
/// [`DrainControl::exit_reason`] says so. The process then exits 0.
pub(super) async fn drain_loop(
    control: Arc<DrainControl>,
    stop_server: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut refreshed = Instant::now();
    loop {
        let draining = control.lock().is_some();
        if draining {
            if let Some(why) = control.exit_reason(Instant::now()) {
                tracing::info!(event = "drain", "{why}: exiting");
                let _ = stop_server.send(true);
                return;
            }
            if refreshed.elapsed() >= HEARTBEAT_EVERY {
                refreshed = Instant::now();
                // Bounded: a hanging store must not hold up the exit check.
                let _ = tokio::time::timeout(LOOKUP_TIMEOUT, control.refresh_alternates()).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EXIT_CHECK_EVERY), if draining => {}
            _ = control.changed.notified() => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// A listener named by an ICE URL: its transport, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listener {
    transport: Transport,
    host: String,
    port: u16,
}

/// The TURN listeners of every `ready` node but `me`, least loaded first.
fn listeners(rows: &[NodeRow], me: &str) -> Vec<Listener> {
    let now = crate::store::unix_now_ms();
    let mut ready: Vec<&NodeRow> = rows
        .iter()
        .filter(|n| n.name != me && n.state_at(now) == "ready")
        .collect();
    ready.sort_by_key(|n| n.allocations);
    ready
        .iter()
        .flat_map(|n| n.urls.iter().filter_map(|u| parse_url(u)))
        .collect()
}

/// `turn:HOST[:PORT][?transport=udp|tcp]` or `turns:...` (RFC 7065);
/// `stun:` and anything else is no TURN listener.
fn parse_url(url: &str) -> Option<Listener> {
    let (scheme, rest) = url.split_once(':')?;
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let proto = match query {
        None => None,
        Some(q) => Some(q.strip_prefix("transport=")?),
    };
    let (transport, default_port) = match (scheme, proto) {
        ("turn", None | Some("udp")) => (Transport::Udp, 3478),
        ("turn", Some("tcp")) => (Transport::Tcp, 3478),
        ("turns", None | Some("tcp")) => (Transport::Tls, 5349),
        _ => return None,
    };
    // A bracketed IPv6 host, or a name or IPv4 address with an optional port.
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, tail) = v6.split_once(']')?;
        match tail {
            "" => (host, default_port),
            t => (host, t.strip_prefix(':')?.parse().ok()?),
        }
    } else {
        match hostport.split_once(':') {
            None => (hostport, default_port),
            Some((h, p)) => (h, p.parse().ok()?),
        }
    };
    if host.is_empty() || port == 0 {
        return None;
    }
    Some(Listener {
        transport,
        host: host.to_string(),
        port,
    })
}

/// Addresses for the listeners: an IP as is; a DNS name resolved (every
/// address it has) and kept as the ALTERNATE-DOMAIN.
async fn resolve(found: Vec<Listener>) -> Vec<Alternate> {
    let mut out = Vec::new();
    for l in found {
        if let Ok(ip) = l.host.parse::<IpAddr>() {
            out.push(Alternate {
                transport: l.transport,
                addr: SocketAddr::new(ip, l.port),
                domain: None,
            });
            continue;
        }
        match tokio::net::lookup_host((l.host.as_str(), l.port)).await {
            Ok(addrs) => out.extend(addrs.map(|addr| Alternate {
                transport: l.transport,
                addr,
                domain: Some(l.host.clone()),
            })),
            Err(e) => tracing::debug!("drain: cannot resolve {}: {e}", l.host),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(transport: Transport, host: &str, port: u16) -> Option<Listener> {
        Some(Listener {
            transport,
            host: host.into(),
            port,
        })
    }

    #[test]
    fn ice_urls_name_turn_listeners() {
        assert_eq!(
            parse_url("turn:192.0.2.1:3478?transport=udp"),
            l(Transport::Udp, "192.0.2.1", 3478)
        );
        assert_eq!(
            parse_url("turn:[2001:db8::1]:3479?transport=tcp"),
            l(Transport::Tcp, "2001:db8::1", 3479)
        );
        assert_eq!(
            parse_url("turns:turn.example.com:443?transport=tcp"),
            l(Transport::Tls, "turn.example.com", 443)
        );
        assert_eq!(parse_url("turns:[::1]"), l(Transport::Tls, "::1", 5349));
        assert_eq!(
            parse_url("turn:a.example"),
            l(Transport::Udp, "a.example", 3478)
        );
        for bad in [
            "stun:192.0.2.1:3478",
            "turns:192.0.2.1:5349?transport=udp",
            "turn:192.0.2.1:0",
            "turn:192.0.2.1:x",
            "turn:[::1",
            "turn::3478",
            "http://x",
            "turn:1.2.3.4:1?foo=bar",
        ] {
            assert_eq!(parse_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn alternates_are_the_other_ready_nodes_least_loaded_first() {
        let now = crate::store::unix_now_ms();
        let row = |name: &str, state: &str, allocations: i64, url: &str, last_seen: i64| NodeRow {
            name: name.into(),
            region: String::new(),
            state: state.into(),
            urls: vec!["stun:x:1".into(), url.into()],
            allocations,
            relayed_bps: 0,
            last_seen,
        };
        let rows = [
            row("me", "ready", 0, "turn:192.0.2.1:3478", now),
            row("busy", "ready", 9, "turn:192.0.2.2:3478", now),
            row("idle", "ready", 1, "turn:192.0.2.3:3478", now),
            row("leaving", "draining", 0, "turn:192.0.2.4:3478", now),
            row("gone", "ready", 0, "turn:192.0.2.5:3478", now - 60_000),
        ];
        let hosts: Vec<String> = listeners(&rows, "me").into_iter().map(|l| l.host).collect();
        assert_eq!(hosts, ["192.0.2.3", "192.0.2.2"]);
    }

    #[tokio::test]
    async fn a_drain_ends_once_allocations_are_down_to_the_minimum_after_two_heartbeats_or_at_the_deadline(
    ) {
        let dir = std::env::temp_dir().join(format!("turnpike-drain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&format!("sqlite:{}/t.db", dir.display()))
            .await
            .unwrap();
        let shared = crate::net::status::tests::shared();
        let config = Config {
            drain_min_allocations: 1,
            ..Config::default()
        };
        let stats = Arc::new(crate::usage::UsageStats::default());
        let queue = Arc::new(crate::usage::queue::Queue::new(stats.clone()));
        let events = crate::usage::recorder::Recorder::new("me", ':', queue.clone(), true, stats);
        let control = DrainControl::new(shared.clone(), store, &config, Arc::new(events));
        let limits = crate::turn::quota::Limits {
            user: None,
            realm: None,
        };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..2 {
            shared.quotas.acquire("u", ip, limits).unwrap();
        }
        let t0 = Instant::now();
        assert_eq!(control.exit_reason(t0), None, "not draining");
        let view = control.start(Some(0)).await;
        assert_eq!((view.state, view.deadline), ("draining", None));
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(
            control.exit_reason(later),
            None,
            "two allocations, no deadline"
        );
        shared.quotas.release("u", ip);
        assert_eq!(
            control.exit_reason(Instant::now()),
            None,
            "down to the minimum, but not two heartbeats yet"
        );
        assert!(control.exit_reason(later).unwrap().starts_with("drained"));
        // Again with a deadline: it moves, the start stays.
        shared.quotas.acquire("u", ip, limits).unwrap();
        let view = control.start(Some(60)).await;
        assert!(view.deadline.is_some());
        let at = Instant::now() + Duration::from_secs(61);
        assert!(control
            .exit_reason(at)
            .unwrap()
            .starts_with("drain deadline"));
        // Undrained: nothing ends.
        control.stop();
        assert_eq!(control.exit_reason(at), None);
        // One node.draining for the drain (moving its deadline is not a
        // second), one node.ready when it ended.
        let kinds: Vec<String> = queue
            .take(10)
            .into_iter()
            .map(|i| match i {
                crate::usage::queue::Item::Event(e) => e.kind,
                crate::usage::queue::Item::Record(_) => "record".into(),
            })
            .collect();
        assert_eq!(kinds, ["node.draining", "node.ready"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn names_resolve_and_become_the_alternate_domain() {
        let found = resolve(vec![
            Listener {
                transport: Transport::Tls,
                host: "localhost".into(),
                port: 5349,
            },
            Listener {
                transport: Transport::Udp,
                host: "192.0.2.9".into(),
                port: 3478,
            },
        ])
        .await;
        assert!(found.iter().any(|a| a.transport == Transport::Tls
            && a.addr.ip().is_loopback()
            && a.addr.port() == 5349
            && a.domain.as_deref() == Some("localhost")));
        assert!(found.contains(&Alternate {
            transport: Transport::Udp,
            addr: "192.0.2.9:3478".parse().unwrap(),
            domain: None,
        }));
    }
}
