//! Fleet quotas on the worker (issue 15): the core's `ReserveQuota` goes
//! to the node's [`FleetQuota`] (a task on the server's runtime, never on
//! this thread), and its answer comes back on this worker's channel as
//! one more input to the core.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::Worker;
use crate::net::fleet_quota::FleetQuota;
use crate::turn::quota::{FleetLimits, QuotaAnswer, QuotaKey};

type Answers = mpsc::UnboundedReceiver<(QuotaKey, QuotaAnswer)>;

/// A worker's link to the node's fleet quotas. The channel is unbounded
/// but what is in it is bounded by the reservations in flight.
pub(super) struct WorkerQuota {
    fleet: Arc<FleetQuota>,
    answers: mpsc::UnboundedSender<(QuotaKey, QuotaAnswer)>,
    /// The node-wide id of each allocation asked for.
    ids: RefCell<HashMap<QuotaKey, i64>>,
}

/// The link and the receiving end of its answers, with fleet quotas on.
pub(super) fn link(fleet: Option<Arc<FleetQuota>>) -> (Option<WorkerQuota>, Option<Answers>) {
    match fleet {
        None => (None, None),
        Some(fleet) => {
            let (answers, rx) = mpsc::unbounded_channel();
            let link = WorkerQuota {
                fleet,
                answers,
                ids: RefCell::default(),
            };
            (Some(link), Some(rx))
        }
    }
}

impl Worker {
    /// Carries out `Request::ReserveQuota`.
    pub(super) fn reserve_quota(
        &self,
        now: Instant,
        key: QuotaKey,
        user: String,
        realm: String,
        limits: FleetLimits,
    ) {
        let Some(q) = &self.quota else {
            // No fleet here (cannot happen: the core asks only when the
            // shell turned fleet quotas on): the local count stands.
            self.core
                .borrow_mut()
                .quota_answered(now, key, QuotaAnswer::Granted);
            return;
        };
        let id = q.fleet.new_id();
        q.ids.borrow_mut().insert(key, id);
        let answers = q.answers.clone();
        q.fleet.reserve(id, user, realm, limits, move |answer| {
            let _ = answers.send((key, answer));
        });
    }

    /// Carries out `Request::ReleaseQuota`.
    pub(super) fn release_quota(&self, key: QuotaKey) {
        if let Some(q) = &self.quota {
            if let Some(id) = q.ids.borrow_mut().remove(&key) {
                q.fleet.release(id);
            }
        }
    }
}

/// Feeds the fleet's answers to the core.
pub(super) async fn answer_loop(w: Rc<Worker>, mut answers: Answers) {
    while let Some((key, answer)) = answers.recv().await {
        let now = Instant::now();
        w.step(now, |core| core.quota_answered(now, key, answer));
    }
}
