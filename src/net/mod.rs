//! The I/O shell: sockets and threads around the sans-IO core.
//!
//! [`serve`] binds every listener before it returns, so callers (tests
//! especially, on port 0) learn the real addresses from [`Running`]. Work is
//! sharded over `workers` threads ([`worker`]): each owns one SO_REUSEPORT
//! socket per listener, its clients' allocations and their relay sockets.
//! The server stops when the `shutdown` future completes or
//! [`Running::stop`] is called.
//!
//! Rooms: start-up in phases ([`bind`], [`assemble`], [`sync`],
//! [`loops`]); the
//! workers ([`worker`]); TLS and DTLS over one certificate room
//! ([`certs`], [`tls`], [`dtls`]); connection caps ([`limits`]); PROXY
//! protocol headers from trusted proxies (`proxy_protocol.rs`); what
//! the admin API is given ([`control`]); the fleet's loops: [`heartbeat`],
//! the session view ([`fleet_sessions`]) and PostgreSQL notifications
//! that wake them and [`sync`] ([`listen`]).

pub mod acme;
mod alerts;
mod assemble;
pub(crate) mod batch;
mod bind;
pub mod certs;
pub mod control;
mod drain;
pub mod dtls;
mod fleet_quota;
mod fleet_sessions;
pub(crate) mod heartbeat;
pub mod limits;
mod listen;
mod loops;
mod passthrough;
mod proxy_protocol;
pub mod reload;
mod socket;
mod status;
mod sync;
pub mod tls;
mod worker;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::store::{Store, StoreError};
use crate::turn::Shared;
use control::{Registry, ServerControl};

pub use crate::turn::Transport;
pub use assemble::directory;
pub use drain::Drainer;
pub use sync::SYNC_EVERY;

/// Could not start the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    // Not named `source`: thiserror would make it the error's source,
    // and the one-line `{:#}` report would say the OS error twice.
    #[error("cannot bind {transport} {addr}: {error}")]
    Bind {
        transport: Transport,
        addr: SocketAddr,
        error: io::Error,
    },
    #[error("no relay address for {0}: set relay_ip")]
    NoRelayAddress(&'static str),
    #[error("cannot start worker threads: {0}")]
    Workers(io::Error),
    #[error("cannot read random bytes for the nonce key: {0}")]
    Random(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot bind admin API {addr}: {error}")]
    Admin { addr: SocketAddr, error: io::Error },
    #[error("cannot bind health listener {addr}: {error}")]
    Health { addr: SocketAddr, error: io::Error },
    #[error("cannot bind selftest listener {addr}: {error}")]
    Selftest { addr: SocketAddr, error: io::Error },
    #[error("{0}")]
    Tls(#[from] certs::CertError),
    #[error("acme: {0}")]
    Acme(String),
    #[error("rfc5780: {0}")]
    Rfc5780(String),
    #[error("{0}")]
    Webhooks(String),
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
    selftest: Option<SocketAddr>,
    tls: Option<Arc<tls::Tls>>,
    limits: Arc<limits::ConnLimits>,
    drain: Arc<drain::DrainControl>,
    health: Option<SocketAddr>,
    reloader: Arc<reload::Reloader>,
    usage: crate::usage::Usage,
}

impl Running {
    /// Reads the config file again (SIGHUP); see [`reload::Reloader`].
    pub fn reloader(&self) -> &Arc<reload::Reloader> {
        &self.reloader
    }

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

    /// Where the self-test page alone is served (`selftest_listen`).
    pub fn selftest_addr(&self) -> Option<SocketAddr> {
        self.selftest
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where the health endpoints alone are served (`health_listen`).
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health
    }

    /// Starts drains from outside the admin API (SIGUSR1).
    pub fn drainer(&self) -> Drainer {
        Drainer(self.drain.clone())
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
            threads,
            watcher,
            usage,
            ..
        } = self;
        let _ = watcher.await;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        // The workers ended their allocations on the way out.
        usage.finish().await;
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

/// Binds the configured listeners and serves until `shutdown` completes.
///
/// Start-up runs in phases: the store, the sockets ([`bind`]), the shared
/// state ([`assemble`]), the workers, the background loops with the store
/// sync ([`loops`], [`sync`]) and the admin API, given a [`ServerControl`]
/// handle.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, ServeError> {
    let workers = bind::worker_count(&config);
    // The health listener before anything else, so that it says "starting"
    // until all is up. It stops with the server, or when serve fails and
    // drops `health_stop`.
    let health = Arc::new(status::Health::new(config.readyz_store_timeout));
    let (health_stop, health_stop_rx) = watch::channel(false);
    let health_addr = start_health(&config, health.clone(), health_stop_rx).await?;
    // The store first: a server that cannot read its users must not start.
    let store = Store::open(&config.db).await?;
    let snapshot = store.snapshots(&config.realm_names()).await?;
    let revision = store.revision().await?;

    let mut bound = bind::Bound::new(workers);
    bind::listen(&config, &mut bound)?;
    let nat = bind::rfc5780(&config, &mut bound)?;
    let acme = match &config.acme {
        Some(a) => Some(acme::prepare(a).map_err(ServeError::Acme)?),
        None => None,
    };
    let tls = load_tls(&config)?;
    bind::tls_listen(&config, &mut bound)?;
    socket::raise_fd_limit();
    let bind::Bound {
        listeners,
        udp,
        tcp,
        ..
    } = bound;
    let streams = assemble::streams(&config, tls.clone());
    let relay_ips = bind::relays(&config, &listeners)?;
    let fleet = assemble::FleetKeys {
        nonce: store.fleet_key("nonce").await?,
        reservation_token: store.fleet_key("reservation_token").await?,
    };
    let shared = assemble::shared(&config, &listeners, &relay_ips, snapshot.clone(), fleet)?;

    let (stop, stop_rx) = watch::channel(false);
    let fleet_quota = fleet_quota::start(&store, &config.node_name, &shared, stop_rx.clone());
    let usage = crate::usage::Usage::start(&config, &store, &stop_rx)
        .map_err(|e| ServeError::Webhooks(e.to_string()))?;
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
            fleet_quota: fleet_quota.clone(),
            usage: usage.recorder.clone(),
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
    let loops::Steering {
        control,
        reloader,
        drain,
    } = loops::start_loops(loops::LoopInputs {
        config: &config,
        store: &store,
        shared: &shared,
        registry: &registry,
        streams: &streams,
        tls: &tls,
        acme: acme.as_ref().map(|a| a.handle()),
        listeners: &listeners,
        relay_ips: &relay_ips,
        health: &health,
        usage: &usage,
        snapshot,
        revision,
        stop: &stop,
        stop_rx: &stop_rx,
        health_stop,
    });
    if let (Some(a), Some(t)) = (acme, &tls) {
        a.start(t.clone(), stop_rx.clone())
            .await
            .map_err(ServeError::Acme)?;
    }
    let (selftest_routes, selftest) = start_selftest(&config, control.clone(), &stop_rx).await?;
    let admin = start_admin(
        &store,
        control,
        config,
        tls.as_deref(),
        selftest_routes,
        &stop_rx,
    )
    .await?;
    health.serving(shared.clone());
    usage
        .recorder
        .node_event("node.ready", serde_json::json!({"allocations": 0}));
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
        selftest,
        tls,
        limits: streams.limits.clone(),
        drain,
        health: health_addr,
        reloader,
        usage,
    })
}

/// Starts the health listener when `health_listen` is set; returns where
/// it listens.
async fn start_health(
    config: &Config,
    health: Arc<status::Health>,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<SocketAddr>, ServeError> {
    let Some(addr) = config.health_listen else {
        return Ok(None);
    };
    let shutdown = async move { stopped(&mut stop).await };
    let (bound, task) = crate::admin::serve_health(addr, health, shutdown)
        .await
        .map_err(|error| ServeError::Health { addr, error })?;
    tracing::info!(event = "listening", "health endpoints http://{bound}");
    tokio::spawn(task);
    Ok(Some(bound))
}

/// The certificate, when one is configured, with DTLS from the same pair.
/// With ACME the pair is the one in the state directory ([`acme`]).
fn load_tls(config: &Config) -> Result<Option<Arc<tls::Tls>>, ServeError> {
    let t = match (&config.cert, &config.key, &config.acme) {
        (Some(cert), Some(key), _) => tls::Tls::load(cert, key)?,
        (_, _, Some(a)) => tls::Tls::load(
            &acme::files::cert_path(&a.dir),
            &acme::files::key_path(&a.dir),
        )?,
        _ => return Ok(None),
    };
    let t = if config.dtls {
        t.with_dtls(config.max_dtls_handshakes as usize)?
    } else {
        t
    };
    Ok(Some(Arc::new(t)))
}

/// The self-test page (issue 20): its routes for the admin listener (404
/// unless `selftest` is on), and its own listener when `selftest_listen`
/// is set (where it listens). One rate limiter serves both.
async fn start_selftest(
    config: &Config,
    control: Arc<ServerControl>,
    stop: &watch::Receiver<bool>,
) -> Result<(axum::Router, Option<SocketAddr>), ServeError> {
    if !config.selftest.enabled() {
        return Ok((crate::selftest::routes_off(), None));
    }
    let state = crate::selftest::Selftest::new(control, &config.selftest);
    let on_admin = match config.selftest.on_admin {
        true => crate::selftest::routes(state.clone()),
        false => crate::selftest::routes_off(),
    };
    let Some(addr) = config.selftest.listen else {
        return Ok((on_admin, None));
    };
    let mut stop = stop.clone();
    let shutdown = async move { stopped(&mut stop).await };
    let (bound, task) = crate::selftest::serve(addr, state, shutdown)
        .await
        .map_err(|error| ServeError::Selftest { addr, error })?;
    tracing::info!(event = "listening", "selftest page http://{bound}/selftest");
    tokio::spawn(task);
    Ok((on_admin, Some(bound)))
}

/// Starts the admin API when `admin_listen` is set; returns where it
/// listens. It stops with the server.
async fn start_admin(
    store: &Store,
    control: Arc<ServerControl>,
    config: Arc<Config>,
    tls: Option<&tls::Tls>,
    selftest: axum::Router,
    stop: &watch::Receiver<bool>,
) -> Result<Option<SocketAddr>, ServeError> {
    let Some(addr) = config.admin_listen else {
        return Ok(None);
    };
    // Config checked that admin_tls has a certificate.
    let https = match tls.filter(|_| config.admin_tls) {
        Some(t) => Some(t.https_config()?),
        None => None,
    };
    let scheme = if https.is_some() { "https" } else { "http" };
    let state = crate::admin::State::new(store.clone(), control, config).await?;
    let mut stop = stop.clone();
    let shutdown = async move { stopped(&mut stop).await };
    let (bound, task) = crate::admin::serve(addr, state, https, selftest, shutdown)
        .await
        .map_err(|error| ServeError::Admin { addr, error })?;
    tracing::info!(event = "listening", "admin api {scheme}://{bound}");
    tokio::spawn(task);
    Ok(Some(bound))
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("listeners", &self.listeners)
            .field("relay_ips", &self.relay_ips)
            .finish_non_exhaustive()
    }
}
