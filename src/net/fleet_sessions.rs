//! This node's part of the fleet's session view (issue 15): it publishes
//! its sessions with each heartbeat ([`publish`]) and ends the sessions
//! other nodes were asked to end ([`command_loop`]), on a notification
//! (PostgreSQL) or at the latest after [`COMMANDS_EVERY`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::control::ServerControl;
use super::listen::Wakeups;
use super::stopped;
use crate::admin::Control;
use crate::config::Config;
use crate::store::Store;

/// How often the command queue is looked at without a notification.
pub(crate) const COMMANDS_EVERY: Duration = Duration::from_secs(1);

/// How long publishing may take: an unreachable store must not hold the
/// heartbeat back longer than one beat more.
const PUBLISH_WITHIN: Duration = super::heartbeat::HEARTBEAT_EVERY;

/// Writes this node's sessions as the admin API lists them. Called by the
/// heartbeat, which already says when the store is unreachable.
pub(super) async fn publish(store: &Store, control: &ServerControl, config: &Config) {
    let entries = control.session_entries(&config.node_name);
    let now = crate::store::unix_now_ms();
    let write = store.publish_sessions(&config.node_name, &entries, now);
    match tokio::time::timeout(PUBLISH_WITHIN, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("sessions not published: {e}"),
        Err(_) => tracing::debug!("sessions not published: the store is slow"),
    }
}

/// Ends the sessions queued for this node until `stop`.
pub(super) async fn command_loop(
    store: Store,
    control: Arc<ServerControl>,
    config: Arc<Config>,
    wake: Arc<Wakeups>,
    mut stop: watch::Receiver<bool>,
) {
    let node = config.node_name.as_str();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(COMMANDS_EVERY) => {}
            _ = wake.commands.notified() => {}
            _ = stopped(&mut stop) => return,
        }
        // A store that fails is the heartbeat's to report.
        let Ok(taken) = store.take_session_commands(node).await else {
            continue;
        };
        if taken.len() as i64 == crate::store::fleet_sessions::TAKE_AT_MOST {
            // More may wait: look again without sleeping.
            wake.commands.notify_one();
        }
        for local in taken {
            if control.end_session(&local).await {
                tracing::info!("session {local} ended at the request of the fleet");
            } else {
                tracing::debug!("session {local} to end was gone already");
            }
        }
    }
}
