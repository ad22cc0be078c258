//! Start-up, once the workers run: the background loops and the handles
//! that steer them. The store sync of phase four ([`super::sync`], woken
//! by PostgreSQL notifications, [`super::listen`]), usage records, drain,
//! alerts, the fleet heartbeat and session view, and the [`ServerControl`]
//! handle the admin API is given.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::watch;

use super::control::{Registry, ServerControl};
use super::{
    alerts, drain, fleet_sessions, heartbeat, listen, reload, status, sync, tls, worker, Transport,
};
use crate::config::Config;
use crate::store::{Snapshots, Store};
use crate::turn::Shared;
use crate::usage::Usage;

/// What the loops start from: the assembled server, the store as read at
/// start-up, and the stop signal.
pub(super) struct LoopInputs<'a> {
    pub(super) config: &'a Arc<Config>,
    pub(super) store: &'a Store,
    pub(super) shared: &'a Arc<Shared>,
    pub(super) registry: &'a Arc<Registry>,
    pub(super) streams: &'a Arc<worker::StreamSetup>,
    pub(super) tls: &'a Option<Arc<tls::Tls>>,
    /// ACME's forced renewal and counts, when configured.
    pub(super) acme: Option<Arc<super::acme::Handle>>,
    pub(super) listeners: &'a [(Transport, SocketAddr)],
    pub(super) relay_ips: &'a [IpAddr],
    pub(super) health: &'a Arc<status::Health>,
    pub(super) usage: &'a Usage,
    /// The store's credentials and revision read at start-up: where sync
    /// takes over.
    pub(super) snapshot: Snapshots,
    pub(super) revision: i64,
    pub(super) stop: &'a watch::Sender<bool>,
    pub(super) stop_rx: &'a watch::Receiver<bool>,
    /// Set when the server stops: ends the health listener.
    pub(super) health_stop: watch::Sender<bool>,
}

/// The handles the loops are steered through (admin API, signals).
pub(super) struct Steering {
    pub(super) control: Arc<ServerControl>,
    pub(super) reloader: Arc<reload::Reloader>,
    pub(super) drain: Arc<drain::DrainControl>,
}

/// Spawns every background loop and builds the handles.
pub(super) fn start_loops(i: LoopInputs<'_>) -> Steering {
    let LoopInputs {
        config,
        store,
        shared,
        registry,
        streams,
        tls,
        acme,
        listeners,
        relay_ips,
        health,
        usage,
        snapshot,
        revision,
        stop,
        stop_rx,
        health_stop,
    } = i;
    usage.start_loops(config, store, registry.clone(), stop_rx);
    // PostgreSQL announces changes; the loops below poll as well.
    let wake = Arc::new(listen::Wakeups::default());
    if store.is_postgres() {
        tokio::spawn(listen::listen_loop(
            config.db.clone(),
            config.node_name.clone(),
            wake.clone(),
            stop_rx.clone(),
        ));
    }
    let credentials = Arc::new(sync::CredentialHalves::new(
        shared.clone(),
        config.clone(),
        snapshot,
    ));
    tokio::spawn(sync::sync_loop(
        store.clone(),
        credentials.clone(),
        config.realm_names(),
        revision,
        wake.clone(),
        stop_rx.clone(),
    ));
    let reloader = Arc::new(reload::Reloader {
        source: reload::Source::built(config.clone()),
        shared: shared.clone(),
        streams: streams.clone(),
        tls: tls.clone(),
        credentials,
        listeners: listeners.to_vec(),
        relay_ips: relay_ips.to_vec(),
        log: Default::default(),
    });
    let drain = Arc::new(drain::DrainControl::new(
        shared.clone(),
        store.clone(),
        config,
        usage.recorder.clone(),
    ));
    tokio::spawn(drain::drain_loop(
        drain.clone(),
        stop.clone(),
        stop_rx.clone(),
    ));
    tokio::spawn(status::stop_with(stop_rx.clone(), health_stop));
    tokio::spawn(alerts::alert_loop(
        registry.clone(),
        alerts::ALERT_EVERY,
        stop_rx.clone(),
    ));
    let control = Arc::new(ServerControl {
        registry: registry.clone(),
        shared: shared.clone(),
        reloader: reloader.clone(),
        listeners: listeners.to_vec(),
        drain: drain.clone(),
        health: health.clone(),
        external_name: config.external_name.clone(),
        usage: usage.stats.clone(),
        acme,
    });
    tokio::spawn(heartbeat::heartbeat_loop(
        store.clone(),
        control.clone(),
        config.clone(),
        stop_rx.clone(),
    ));
    tokio::spawn(fleet_sessions::command_loop(
        store.clone(),
        control.clone(),
        config.clone(),
        wake,
        stop_rx.clone(),
    ));
    Steering {
        control,
        reloader,
        drain,
    }
}
