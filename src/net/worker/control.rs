//! The worker's own tasks besides I/O: the core's timers, the once-a-second
//! report to the registry, and the admin API's commands.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Worker;
use crate::net::control::{Command, Registry, Report};

/// Longest sleep of the timer task (allocation expiry granularity).
const TICK: Duration = Duration::from_secs(1);
/// How often sessions and counters are copied out for the admin API.
const REPORT_EVERY: Duration = Duration::from_secs(1);

pub(super) async fn timer_loop(w: Rc<Worker>) {
    loop {
        let now = Instant::now();
        let next = w
            .core
            .borrow()
            .poll_timeout()
            .unwrap_or(now + TICK)
            .min(now + TICK);
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        w.step(now, |core| core.handle_timeout(now));
    }
}

/// Copies sessions and counters to the registry once a second.
pub(super) async fn report_loop(w: Rc<Worker>, registry: Arc<Registry>, index: usize) {
    loop {
        publish(&w, &registry, index);
        tokio::time::sleep(REPORT_EVERY).await;
    }
}

fn publish(w: &Worker, registry: &Registry, index: usize) {
    let core = w.core.borrow();
    registry.publish(
        index,
        Report {
            sessions: core.sessions(),
            stats: core.stats(),
        },
    );
}

/// A test-only hook (issue 16's watchdog test): with
/// `TURNPIKE_TEST_STALL_WORKER=SECS` set, worker 0 blocks its thread for
/// SECS seconds, two seconds after it starts, as a stuck worker would.
/// Without the variable, nothing.
pub(super) fn test_stall() -> Option<impl std::future::Future<Output = ()>> {
    let secs: u64 = std::env::var("TURNPIKE_TEST_STALL_WORKER")
        .ok()?
        .parse()
        .ok()?;
    Some(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        tracing::warn!("TURNPIKE_TEST_STALL_WORKER: worker 0 stalls for {secs} s");
        std::thread::sleep(Duration::from_secs(secs));
    })
}

/// Carries out the admin API's requests on this worker's thread.
pub(super) async fn command_loop(
    w: Rc<Worker>,
    registry: Arc<Registry>,
    index: usize,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    while let Some(cmd) = commands.recv().await {
        match cmd {
            Command::End { session, done } => {
                let now = Instant::now();
                let ended = w.step(now, |core| core.end_session(now, session));
                publish(&w, &registry, index);
                let _ = done.send(ended.is_ok());
            }
        }
    }
}
