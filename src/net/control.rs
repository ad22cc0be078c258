//! What the admin API reaches: the [`Registry`] the workers report to,
//! and [`ServerControl`], the shell's side of [`admin::Control`].
//!
//! Each worker copies its sessions and counters into the registry once a
//! second (the data path itself touches nothing shared) and takes commands
//! from its own channel, so ending a session happens on the thread that
//! owns it.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::drain::DrainControl;
use super::status::Health;
use crate::admin::{self, DrainView, Probe, Readiness};
use crate::turn::{SessionId, SessionView, Shared, Stats, Transport};

/// A worker's latest report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub sessions: Vec<SessionView>,
    pub stats: Stats,
}

/// A request to a worker.
pub enum Command {
    /// End the allocation `session` names if it is still live; answers
    /// whether it was.
    End {
        session: SessionId,
        done: oneshot::Sender<bool>,
    },
}

pub struct Registry {
    reports: Vec<Mutex<Report>>,
    /// When each worker last reported: milliseconds after `started`, plus
    /// one (0 = never). A worker that stops reporting is stuck, and the
    /// systemd watchdog stops being fed.
    heard: Vec<AtomicU64>,
    commands: Vec<mpsc::UnboundedSender<Command>>,
    pub started: Instant,
}

/// A session's id as the API shows it: worker, slot, generation.
pub fn session_id(worker: usize, s: &SessionView) -> String {
    format!("{worker}-{}-{}", s.id.slot, s.id.generation)
}

/// Reads an id made by [`session_id`].
pub fn parse_session_id(id: &str) -> Option<(usize, u32, u32)> {
    let mut it = id.split('-');
    let out = (
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    );
    it.next().is_none().then_some(out)
}

impl Registry {
    /// A registry for `workers` workers and their command receivers.
    pub fn new(workers: usize) -> (Registry, Vec<mpsc::UnboundedReceiver<Command>>) {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        (
            Registry {
                reports: (0..workers).map(|_| Mutex::default()).collect(),
                heard: (0..workers).map(|_| AtomicU64::new(0)).collect(),
                commands: tx,
                started: Instant::now(),
            },
            rx,
        )
    }

    pub fn publish(&self, worker: usize, report: Report) {
        if let Some(r) = self.reports.get(worker) {
            *r.lock().unwrap_or_else(|e| e.into_inner()) = report;
        }
        if let Some(h) = self.heard.get(worker) {
            h.store(
                self.started.elapsed().as_millis() as u64 + 1,
                Ordering::Relaxed,
            );
        }
    }

    /// Whether every worker has reported within `within` of now.
    pub fn workers_alive(&self, within: Duration) -> bool {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let within = within.as_millis() as u64;
        self.heard.iter().all(|h| {
            let at = h.load(Ordering::Relaxed);
            at != 0 && now.saturating_sub(at) <= within
        })
    }

    /// Every worker's sessions with their ids.
    pub fn sessions(&self) -> Vec<(String, SessionView)> {
        let mut out = Vec::new();
        for (w, r) in self.reports.iter().enumerate() {
            let r = r.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(r.sessions.iter().map(|s| (session_id(w, s), s.clone())));
        }
        out
    }

    /// Every worker's sessions with the worker's index.
    pub fn worker_sessions(&self) -> Vec<(usize, SessionView)> {
        let mut out = Vec::new();
        for (w, r) in self.reports.iter().enumerate() {
            let r = r.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(r.sessions.iter().map(|s| (w, s.clone())));
        }
        out
    }

    /// Counters summed over workers.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for r in &self.reports {
            let s = r.lock().unwrap_or_else(|e| e.into_inner()).stats;
            total.allocations_created += s.allocations_created;
            total.binding_requests += s.binding_requests;
            total.classic_binding_requests += s.classic_binding_requests;
            total.auth_unauthorized += s.auth_unauthorized;
            total.auth_challenges += s.auth_challenges;
            total.auth_stale_nonce += s.auth_stale_nonce;
            total.auth_bad_request += s.auth_bad_request;
            total.auth_expired += s.auth_expired;
            total.auth_revoked += s.auth_revoked;
            total.quota_refusals += s.quota_refusals;
            total.to_peer.packets += s.to_peer.packets;
            total.to_peer.bytes += s.to_peer.bytes;
            total.to_client.packets += s.to_client.packets;
            total.to_client.bytes += s.to_client.bytes;
        }
        total
    }

    /// Ends a session by id; false if there is no such live session.
    pub async fn end(&self, id: &str) -> bool {
        let Some((worker, slot, generation)) = parse_session_id(id) else {
            return false;
        };
        let Some(tx) = self.commands.get(worker) else {
            return false;
        };
        let (done, answer) = oneshot::channel();
        if tx
            .send(Command::End {
                session: SessionId { slot, generation },
                done,
            })
            .is_err()
        {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

/// The running server as the admin API sees it.
pub(crate) struct ServerControl {
    pub registry: Arc<Registry>,
    pub shared: Arc<Shared>,
    pub reloader: Arc<super::reload::Reloader>,
    pub listeners: Vec<(Transport, SocketAddr)>,
    pub drain: Arc<DrainControl>,
    pub health: Arc<Health>,
    /// `external_name`: what `turns:` URLs name.
    pub external_name: Option<String>,
    pub usage: Arc<crate::usage::UsageStats>,
    pub acme: Option<Arc<super::acme::Handle>>,
}

impl admin::Control for ServerControl {
    fn sessions(&self) -> Vec<(String, SessionView)> {
        self.registry.sessions()
    }

    fn stats(&self) -> Stats {
        self.registry.stats()
    }

    fn allocations(&self) -> u32 {
        self.shared.quotas.total()
    }

    fn end_session<'a>(&'a self, id: &'a str) -> admin::Answer<'a, bool> {
        Box::pin(self.registry.end(id))
    }

    fn reload(&self) -> Result<admin::ReloadReport, String> {
        self.reloader.reload()
    }

    fn udp_errors(&self) -> (u64, u64) {
        (
            super::batch::SEND_ERRORS.load(Ordering::Relaxed),
            super::batch::RECV_ERRORS.load(Ordering::Relaxed),
        )
    }

    fn acme_counts(&self) -> Option<(u64, u64)> {
        let a = self.acme.as_ref()?;
        Some((
            a.successes.load(Ordering::Relaxed),
            a.failures.load(Ordering::Relaxed),
        ))
    }

    fn acme_renew(&self) -> admin::Answer<'_, Option<Result<(String, u64), String>>> {
        Box::pin(async move {
            let a = self.acme.as_ref()?;
            Some(a.renew().await.map(|r| {
                let at = r
                    .not_after
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                (r.serial, at)
            }))
        })
    }

    fn ice_urls(&self) -> Vec<String> {
        let cfg = self.shared.config();
        let name = self.external_name.as_deref();
        ice_urls(&self.listeners, &cfg.external_ips, name, |v4| {
            cfg.relay_ip(v4)
        })
    }

    fn drain(&self, deadline_s: Option<u64>) -> admin::Answer<'_, DrainView> {
        Box::pin(self.drain.start(deadline_s))
    }

    fn undrain(&self) -> DrainView {
        self.drain.stop()
    }

    fn drain_state(&self) -> DrainView {
        self.drain.view()
    }

    fn readiness(&self) -> Readiness {
        self.health.readiness()
    }

    fn selftest_credential(&self, ttl: u64) -> Option<(String, String)> {
        // 10 random letters and digits: ~51 bits, so no two live
        // credentials share a user (each is its own one-allocation quota).
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut raw = [0u8; 10];
        getrandom::fill(&mut raw).ok()?;
        let id: String = raw
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect();
        let now = crate::store::unix_now() as u64;
        self.shared.auth.mint_selftest(&id, ttl, now)
    }

    fn rest_secrets(&self, realm: &str) -> Vec<crate::auth::rest::Secret> {
        let dir = self.shared.auth.directory_in(realm);
        dir.map(|d| d.secrets.clone()).unwrap_or_default()
    }

    fn fleet_quota(&self) -> &crate::turn::quota::FleetStatus {
        &self.shared.quotas.fleet
    }

    fn usage_stats(&self) -> &crate::usage::UsageStats {
        &self.usage
    }
}

/// `turn:` (and `stun:`) URLs for every listener, with the address clients
/// should use: the external one of its family if configured (`external`
/// holds (private, public) pairs), else the listener's, else the relay
/// address of its family. `turns:` URLs name the node's DNS name when it
/// has one: TLS clients check the certificate against it.
fn ice_urls(
    listeners: &[(Transport, SocketAddr)],
    external: &[(IpAddr, IpAddr)],
    name: Option<&str>,
    relay_ip: impl Fn(bool) -> Option<IpAddr>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (transport, addr) in listeners {
        let v4 = addr.is_ipv4();
        let relay = relay_ip(v4);
        let host: Option<IpAddr> = external
            .iter()
            .find(|(_, public)| public.is_ipv4() == v4)
            .map(|(_, public)| *public)
            .or_else(|| (!addr.ip().is_unspecified()).then(|| addr.ip()))
            .or(relay);
        let Some(host) = host else { continue };
        let hp = SocketAddr::new(host, addr.port()).to_string();
        match transport {
            Transport::Udp | Transport::Tcp => {
                if seen.insert(format!("stun:{hp}")) {
                    out.push(format!("stun:{hp}"));
                }
                out.push(format!("turn:{hp}?transport={transport}"));
            }
            Transport::Tls => match name {
                Some(name) => {
                    let url = format!("turns:{name}:{}?transport=tcp", addr.port());
                    if seen.insert(url.clone()) {
                        out.push(url);
                    }
                }
                None => out.push(format!("turns:{hp}?transport=tcp")),
            },
            // RFC 7065 spells DTLS `turns:...?transport=udp`, but browsers
            // do not speak it, and one URL they reject spoils the list.
            Transport::Dtls => {}
        }
    }
    out
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::End { session, .. } => f
                .debug_struct("End")
                .field("session", session)
                .finish_non_exhaustive(),
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("workers", &self.reports.len())
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ice_urls_name_the_external_then_the_listener_then_the_relay_address_and_skip_dtls() {
        let listeners = [
            (Transport::Udp, a("0.0.0.0:3478")),
            (Transport::Tcp, a("0.0.0.0:3478")),
            (Transport::Udp, a("[::1]:3478")),
            (Transport::Tls, a("[::]:5349")),
            (Transport::Dtls, a("[::]:5349")),
        ];
        let relay = |v4: bool| Some(if v4 { "10.0.0.2" } else { "fd00::2" }.parse().unwrap());
        let external = ["10.0.0.2".parse().unwrap(), "203.0.113.7".parse().unwrap()];
        let urls = ice_urls(&listeners, &[(external[0], external[1])], None, relay);
        assert_eq!(
            urls,
            [
                "stun:203.0.113.7:3478",
                "turn:203.0.113.7:3478?transport=udp",
                "turn:203.0.113.7:3478?transport=tcp",
                "stun:[::1]:3478",
                "turn:[::1]:3478?transport=udp",
                "turns:[fd00::2]:5349?transport=tcp",
            ]
        );
        // With a DNS name, one turns: URL names it for both families.
        let tls = [
            (Transport::Tls, a("0.0.0.0:5349")),
            (Transport::Tls, a("[::]:5349")),
        ];
        let urls = ice_urls(&tls, &[], Some("turn-1.example.com"), relay);
        assert_eq!(urls, ["turns:turn-1.example.com:5349?transport=tcp"]);
    }
}
