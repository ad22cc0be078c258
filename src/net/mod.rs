//! The I/O shell: sockets and threads around the sans-IO core.
//!
//! [`serve`] binds every listener before it returns, so callers (tests
//! especially, on port 0) learn the real addresses from [`Running`]. Work is
//! sharded over `workers` threads ([`worker`]): each owns one SO_REUSEPORT
//! socket per listener, its clients' allocations and their relay sockets.
//! The server stops when the `shutdown` future completes or
//! [`Running::stop`] is called.

pub(crate) mod batch;
pub mod control;
pub mod dtls;
pub mod limits;
mod socket;
pub mod tls;
mod worker;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::auth::nonce::{NonceIssuer, FEATURE_PASSWORD_ALGORITHMS, FEATURE_USERNAME_ANONYMITY};
use crate::auth::{Authenticator, Credentials, Directory};
use crate::config::Config;
use crate::store::{Snapshot, Store, StoreError};
use crate::turn::policy::PeerPolicy;
use crate::turn::ports::PortPool;
use crate::turn::quota::Quotas;
use crate::turn::{Shared, TurnConfig, DEFAULT_LIFETIME};
use control::Registry;

pub use crate::turn::Transport;

/// Could not start the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot bind {transport} {addr}: {source}")]
    Bind {
        transport: Transport,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("no relay address for {0}: set relay_ip")]
    NoRelayAddress(&'static str),
    #[error("cannot start worker threads: {0}")]
    Workers(io::Error),
    #[error("cannot read random bytes for the nonce key: {0}")]
    Random(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot bind admin API {addr}: {source}")]
    Admin { addr: SocketAddr, source: io::Error },
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("rfc5780: {0}")]
    Rfc5780(String),
}

/// A started server.
pub struct Running {
    listeners: Vec<(Transport, SocketAddr)>,
    relay_ips: Vec<IpAddr>,
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    watcher: tokio::task::JoinHandle<()>,
    registry: Arc<Registry>,
    store: Store,
    admin: Option<SocketAddr>,
    tls: Option<Arc<tls::Tls>>,
    limits: Arc<limits::ConnLimits>,
}

impl Running {
    /// Every bound listener, in bind order.
    pub fn listeners(&self) -> &[(Transport, SocketAddr)] {
        &self.listeners
    }

    /// Bound addresses of one transport.
    pub fn addrs(&self, transport: Transport) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|(t, _)| *t == transport)
            .map(|(_, a)| *a)
            .collect()
    }

    /// The addresses relay sockets bind to.
    pub fn relay_ips(&self) -> &[IpAddr] {
        &self.relay_ips
    }

    /// Where the admin API listens, if it does.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The TLS state, when a certificate is configured.
    pub fn tls(&self) -> Option<Arc<tls::Tls>> {
        self.tls.clone()
    }

    /// TCP and TLS connections and DTLS sessions open now (what the
    /// connection caps count).
    pub fn stream_connections(&self) -> u32 {
        self.limits.open()
    }

    /// DTLS handshakes past the cookie exchange and not finished.
    pub fn dtls_handshakes(&self) -> usize {
        self.tls
            .as_ref()
            .and_then(|t| t.dtls())
            .map_or(0, |d| d.half_open())
    }

    /// Allocations alive now, over all workers.
    pub fn allocations(&self) -> u32 {
        self.shared.quotas.total()
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) {
        let Running {
            threads, watcher, ..
        } = self;
        let _ = watcher.await;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }

    /// Stops the server now and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.wait().await
    }
}

/// Completes once the stop flag is set (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn worker_count(config: &Config) -> usize {
    if config.workers > 0 {
        config.workers
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

/// Relay addresses: configured ones, else the specific listening addresses,
/// else (wildcard listeners) the host's first non-loopback address of each
/// family, else loopback.
fn relay_ips(config: &Config, bound: &[(Transport, SocketAddr)]) -> Vec<IpAddr> {
    if !config.relay_ips.is_empty() {
        let mut out: Vec<IpAddr> = Vec::new();
        for ip in &config.relay_ips {
            if !out.iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
                out.push(*ip);
            }
        }
        return out;
    }
    let mut out: Vec<IpAddr> = Vec::new();
    for v4 in [true, false] {
        let listened: Vec<IpAddr> = bound
            .iter()
            .map(|(_, a)| a.ip())
            .filter(|ip| ip.is_ipv4() == v4)
            .collect();
        if let Some(ip) = listened.iter().find(|ip| !ip.is_unspecified()) {
            out.push(*ip);
        } else if !listened.is_empty() {
            let host = if_addrs::get_if_addrs().unwrap_or_default();
            let pick = host.iter().map(|i| i.ip()).find(|ip| {
                ip.is_ipv4() == v4
                    && !ip.is_loopback()
                    && !matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
            });
            out.push(pick.unwrap_or(if v4 {
                IpAddr::from([127, 0, 0, 1])
            } else {
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
            }));
        }
    }
    out
}

/// This host's addresses that a peer must never name on a listener port:
/// every interface address when a listener is a wildcard (it answers on
/// all of them), the relay IPs, and the external (public) IPs.
fn own_ips(
    bound: &[(Transport, SocketAddr)],
    relay_ips: &[IpAddr],
    external_ips: &[(IpAddr, IpAddr)],
) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = relay_ips.to_vec();
    out.extend(
        external_ips
            .iter()
            .flat_map(|(private, public)| [*private, *public]),
    );
    if bound.iter().any(|(_, a)| a.ip().is_unspecified()) {
        let host = if_addrs::get_if_addrs().unwrap_or_default();
        out.extend(host.iter().map(|i| i.ip()));
    }
    out
}

/// Binds `addr` once per worker (SO_REUSEPORT when there are several);
/// returns the bound address (port 0 resolved by the first bind).
fn bind_udp_per_worker(
    udp: &mut [Vec<std::net::UdpSocket>],
    addr: SocketAddr,
    reuse: bool,
    transport: Transport,
) -> Result<SocketAddr, ServeError> {
    let bind_err = |source| ServeError::Bind {
        transport,
        addr,
        source,
    };
    let first = socket::bind_udp(addr, reuse).map_err(bind_err)?;
    let bound = first.local_addr().map_err(bind_err)?;
    udp[0].push(first);
    for sockets in udp.iter_mut().skip(1) {
        sockets.push(socket::bind_udp(bound, true).map_err(bind_err)?);
    }
    Ok(bound)
}

/// Binds the three other sockets RFC 5780 answers from: the primary IP
/// with the alternate port, and the alternate IP with both ports. The
/// primary is the first UDP listener of a specific IP in alt_ip's family
/// (config validation guarantees one).
fn bind_rfc5780(
    config: &Config,
    listeners: &[(Transport, SocketAddr)],
    udp: &mut [Vec<std::net::UdpSocket>],
    reuse: bool,
) -> Result<crate::nat::ServerAddresses, ServeError> {
    let alt_ip = config
        .alt_ip
        .ok_or(ServeError::Rfc5780("needs alt_ip".into()))?;
    let primary = listeners
        .iter()
        .find(|(t, a)| {
            *t == Transport::Udp && a.is_ipv4() == alt_ip.is_ipv4() && !a.ip().is_unspecified()
        })
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            ServeError::Rfc5780(format!(
                "no UDP listener of a specific IP in the family of {alt_ip}"
            ))
        })?;
    let bind_all = |udp: &mut [Vec<std::net::UdpSocket>], addr| {
        bind_udp_per_worker(udp, addr, reuse, Transport::Udp)
    };
    // Port 0 listeners (tests) let the OS pick the alternate port too.
    let alt_port = match config.alt_listening_port {
        Some(p) => p,
        None if config.listen.iter().any(|l| l.port() == 0) => 0,
        None => primary.port().wrapping_add(1),
    };
    let primary_alt_port = bind_all(udp, SocketAddr::new(primary.ip(), alt_port))?;
    let alternate = SocketAddr::new(alt_ip, primary_alt_port.port());
    bind_all(udp, SocketAddr::new(alt_ip, primary.port()))?;
    bind_all(udp, alternate)?;
    crate::nat::ServerAddresses::with_alternate(primary, alternate)
        .map_err(|e| ServeError::Rfc5780(e.to_string()))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], ServeError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| ServeError::Random(e.to_string()))?;
    Ok(b)
}

/// Binds the configured listeners and serves until `shutdown` completes.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, ServeError> {
    let workers = worker_count(&config);
    // The store first: a server that cannot read its users must not start.
    let store = Store::open(&config.db).await?;
    let snapshot = store.snapshot(&config.realm).await?;
    let revision = store.revision().await?;
    let mut listeners = Vec::new();
    let mut udp: Vec<Vec<std::net::UdpSocket>> = (0..workers).map(|_| Vec::new()).collect();
    let mut tcp: Vec<Vec<std::net::TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    let reuse = workers > 1;

    for want in &config.listen {
        let bind_err = |transport, source| ServeError::Bind {
            transport,
            addr: *want,
            source,
        };
        let first = match socket::bind_udp(*want, reuse) {
            Ok(s) => s,
            Err(e) if socket::is_optional_ipv6(want, &e) => {
                tracing::warn!("skipping {want}: no IPv6 on this host ({e})");
                continue;
            }
            Err(e) => return Err(bind_err(Transport::Udp, e)),
        };
        let udp_addr = first
            .local_addr()
            .map_err(|e| bind_err(Transport::Udp, e))?;
        udp[0].push(first);
        for sockets in udp.iter_mut().skip(1) {
            sockets
                .push(socket::bind_udp(udp_addr, true).map_err(|e| bind_err(Transport::Udp, e))?);
        }
        // On port 0, TCP takes the port UDP got: operators expect one port.
        let first = if want.port() == 0 {
            socket::bind_tcp(udp_addr, reuse).or_else(|_| socket::bind_tcp(*want, reuse))
        } else {
            socket::bind_tcp(*want, reuse)
        }
        .map_err(|e| bind_err(Transport::Tcp, e))?;
        let tcp_addr = first
            .local_addr()
            .map_err(|e| bind_err(Transport::Tcp, e))?;
        tcp[0].push(first);
        for listeners in tcp.iter_mut().skip(1) {
            listeners
                .push(socket::bind_tcp(tcp_addr, true).map_err(|e| bind_err(Transport::Tcp, e))?);
        }
        tracing::info!("listening udp {udp_addr}");
        tracing::info!("listening tcp {tcp_addr}");
        listeners.push((Transport::Udp, udp_addr));
        listeners.push((Transport::Tcp, tcp_addr));
    }

    let nat = if config.rfc5780 {
        Some(bind_rfc5780(&config, &listeners, &mut udp, reuse)?)
    } else {
        None
    };
    if let Some(set) = &nat {
        for addr in set.local_addresses().into_iter().skip(1) {
            tracing::info!("listening udp {addr} (RFC 5780)");
            listeners.push((Transport::Udp, addr));
        }
    }

    let tls = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            let t = tls::Tls::load(cert, key)?;
            let t = if config.dtls {
                t.with_dtls(config.max_dtls_handshakes as usize)?
            } else {
                t
            };
            Some(Arc::new(t))
        }
        _ => None,
    };
    for want in &config.tls_listen {
        let bind_err = |source| ServeError::Bind {
            transport: Transport::Tls,
            addr: *want,
            source,
        };
        let first = socket::bind_tcp(*want, reuse).map_err(bind_err)?;
        let addr = first.local_addr().map_err(bind_err)?;
        tcp[0].push(first);
        for listeners in tcp.iter_mut().skip(1) {
            listeners.push(socket::bind_tcp(addr, true).map_err(bind_err)?);
        }
        tracing::info!("listening tls {addr}");
        listeners.push((Transport::Tls, addr));
        if config.dtls {
            // DTLS on the same port number, UDP side.
            bind_udp_per_worker(&mut udp, addr, reuse, Transport::Dtls)?;
            tracing::info!("listening dtls {addr}");
            listeners.push((Transport::Dtls, addr));
        }
    }
    socket::raise_fd_limit();
    let streams = Arc::new(worker::StreamSetup {
        tls: tls.clone(),
        limits: limits::ConnLimits::new(config.max_tcp_per_ip, config.max_tcp_connections),
        handshake_timeout: config.handshake_timeout,
        // A DTLS client with an allocation sends at least once per
        // lifetime (its Refresh); one without is dropped after
        // handshake_timeout of silence (dtls.rs).
        dtls_idle: config.max_allocate_lifetime + std::time::Duration::from_secs(60),
        peers: Default::default(),
    });

    let relay_ips = relay_ips(&config, &listeners);
    if relay_ips.is_empty() && !listeners.is_empty() {
        return Err(ServeError::NoRelayAddress("any family"));
    }
    for ip in &relay_ips {
        tracing::info!("relay ip {ip}");
    }
    let external_ips: Vec<(IpAddr, IpAddr)> = config
        .external_ips
        .iter()
        .filter_map(|(public, private)| {
            let private = private.or_else(|| {
                relay_ips
                    .iter()
                    .copied()
                    .find(|ip| ip.is_ipv4() == public.is_ipv4())
            })?;
            Some((private, *public))
        })
        .collect();
    if config.allow_loopback_peers {
        tracing::warn!(
            "allow_loopback_peers is on: clients may relay to services on this host's loopback; for local testing only"
        );
    }
    let mut policy = PeerPolicy::new(
        config.allowed_peer_ips.clone(),
        config.denied_peer_ips.clone(),
        config.allow_loopback_peers,
        listeners.iter().map(|(_, a)| *a).collect(),
    );
    policy.add_own_ips(own_ips(&listeners, &relay_ips, &external_ips));
    let turn = TurnConfig {
        relay_ips: relay_ips.clone(),
        external_ips,
        // Validation keeps the max at or above the default; a Config
        // built in code (tests of expiry) may go below it.
        default_lifetime: DEFAULT_LIFETIME.min(config.max_allocate_lifetime),
        max_lifetime: config.max_allocate_lifetime,
        max_permissions: config.max_permissions,
        max_channels: config.max_channels,
        max_bps: config.max_bps,
        software: config.software.clone(),
        policy,
        auth_reply_rate: config.auth_reply_rate,
        strict_expiry: config.strict_expiry,
        tcp_relay: config.tcp_relay,
        max_peer_connections: config.max_peer_connections,
        max_peer_connections_per_user: config.max_peer_connections_per_user,
        stun_backward_compatibility: config.stun_backward_compatibility,
    };
    let nonces = NonceIssuer::new(
        random_bytes()?,
        Instant::now(),
        config.stale_nonce,
        FEATURE_PASSWORD_ALGORITHMS | FEATURE_USERNAME_ANONYMITY,
    );
    let shared = Arc::new(
        Shared::new(
            turn,
            authenticator(&config, nonces, snapshot),
            Quotas::new(config.user_quota, config.total_quota)
                .with_per_source(config.max_allocations_per_ip),
            PortPool::new(config.min_port, config.max_port).with_key(random_bytes()?),
        )
        .with_token_key(random_bytes()?)
        .with_budget_key(random_bytes()?),
    );

    let (stop, stop_rx) = watch::channel(false);
    let (registry, commands) = Registry::new(workers);
    let registry = Arc::new(registry);
    let mut threads = Vec::new();
    for (index, ((udp, tcp), commands)) in udp.into_iter().zip(tcp).zip(commands).enumerate() {
        let setup = worker::WorkerSetup {
            index,
            shared: shared.clone(),
            udp,
            tcp,
            streams: streams.clone(),
            stop: stop_rx.clone(),
            registry: registry.clone(),
            commands,
            nat: nat.map(|addresses| worker::NatSetup {
                addresses,
                software: config.software.clone(),
            }),
        };
        match worker::spawn(setup) {
            Ok(t) => threads.push(t),
            Err(e) => {
                let _ = stop.send(true);
                return Err(ServeError::Workers(e));
            }
        }
    }
    let config = Arc::new(config);
    tokio::spawn(sync_loop(
        store.clone(),
        shared.clone(),
        config.clone(),
        revision,
        stop_rx.clone(),
    ));
    let admin = match config.admin_listen {
        None => None,
        Some(addr) => {
            let state = crate::admin::State::new(
                store.clone(),
                shared.clone(),
                registry.clone(),
                config.clone(),
                listeners.clone(),
                tls.clone(),
            )
            .await?;
            let (bound, task) = crate::admin::serve(addr, state, stop_rx.clone())
                .await
                .map_err(|source| ServeError::Admin { addr, source })?;
            tracing::info!("admin api http://{bound}");
            tokio::spawn(task);
            Some(bound)
        }
    };
    let stop_on_shutdown = stop.clone();
    let mut stop_seen = stop_rx;
    let watcher = tokio::spawn(async move {
        tokio::select! {
            _ = shutdown => {}
            _ = stopped(&mut stop_seen) => {}
        }
        let _ = stop_on_shutdown.send(true);
    });
    Ok(Running {
        listeners,
        relay_ips,
        shared,
        threads,
        stop,
        watcher,
        registry,
        store,
        admin,
        tls,
        limits: streams.limits.clone(),
    })
}

/// How often running servers look for store changes.
pub const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Reloads the credential snapshot whenever the store's revision moves.
/// A failing store keeps the last good snapshot and says so once.
async fn sync_loop(
    store: Store,
    shared: Arc<Shared>,
    config: Arc<Config>,
    mut revision: i64,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SYNC_EVERY) => {}
            _ = stopped(&mut stop) => return,
        }
        let result = async {
            let now = store.revision().await?;
            if now != revision {
                let snapshot = store.snapshot(&config.realm).await?;
                shared.auth.replace(directory(&config, snapshot));
                tracing::debug!("store revision {now}: credentials reloaded");
            }
            Ok::<_, StoreError>(now)
        }
        .await;
        match result {
            Ok(now) => {
                if failing {
                    tracing::info!("store reachable again");
                }
                failing = false;
                revision = now;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("store unreachable, keeping the last credentials: {e}");
                }
                failing = true;
            }
        }
    }
}

/// The credentials the server checks against: the configuration's static
/// users and secrets, then the store's (a static user wins a name clash).
pub fn directory(config: &Config, stored: Snapshot) -> Directory {
    let mut users = Credentials::new(&config.realm);
    for (name, keys) in stored.users {
        users.insert(&name, keys);
    }
    for (name, keys) in &config.users {
        users.insert(name, keys.clone());
    }
    let mut d = Directory::new(users);
    d.secrets = config.static_auth_secrets.clone();
    d.secrets.extend(stored.secrets);
    d.oauth_keys = stored.oauth_keys.into_iter().collect();
    d.user_quotas = stored.user_quotas.into_iter().collect();
    d.realm_quota = stored.realm_quota;
    d
}

fn authenticator(config: &Config, nonces: NonceIssuer, stored: Snapshot) -> Authenticator {
    let a = Authenticator::new(directory(config, stored), nonces)
        .with_rest_separator(config.rest_api_separator);
    if config.oauth {
        a.with_oauth(&config.server_name)
    } else {
        a
    }
}
