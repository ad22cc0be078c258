//! `/metrics` in the Prometheus text format. Counters come from the
//! workers' once-a-second reports; no user names unless
//! `metrics_user_labels` is on.

use axum::extract::State as Extract;
use axum::response::IntoResponse;
use std::collections::BTreeMap;
use std::fmt::Write;

use super::auth::guard;
use super::{ApiError, Caller, State};
use crate::usage::UsageStats;

pub(super) async fn metrics(
    Extract(s): Extract<State>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    guard(&s, &caller, None)?;
    let st = s.0.control.stats();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    metric(
        "turnpike_allocations_active",
        "gauge",
        "Allocations alive now.",
        &[("", s.0.control.allocations() as u64)],
    );
    metric(
        "turnpike_allocations_total",
        "counter",
        "Allocations created.",
        &[("", st.allocations_created)],
    );
    metric(
        "turnpike_relayed_packets_total",
        "counter",
        "Packets relayed, by direction.",
        &[
            ("{direction=\"to_peer\"}", st.to_peer.packets),
            ("{direction=\"to_client\"}", st.to_client.packets),
        ],
    );
    metric(
        "turnpike_relayed_bytes_total",
        "counter",
        "Application bytes relayed, by direction.",
        &[
            ("{direction=\"to_peer\"}", st.to_peer.bytes),
            ("{direction=\"to_client\"}", st.to_client.bytes),
        ],
    );
    metric(
        "turnpike_auth_failures_total",
        "counter",
        "Requests refused authentication, by reason.",
        &[
            ("{reason=\"unauthorized\"}", st.auth_unauthorized),
            ("{reason=\"stale_nonce\"}", st.auth_stale_nonce),
            ("{reason=\"bad_request\"}", st.auth_bad_request),
            ("{reason=\"expired\"}", st.auth_expired),
            ("{reason=\"revoked\"}", st.auth_revoked),
        ],
    );
    metric(
        "turnpike_binding_requests_total",
        "counter",
        "Binding requests answered.",
        &[("", st.binding_requests)],
    );
    metric(
        "turnpike_classic_binding_requests_total",
        "counter",
        "RFC 3489 Binding requests (no magic cookie) on TURN listeners; RFC 5780 sockets answer theirs apart.",
        &[("", st.classic_binding_requests)],
    );
    metric(
        "turnpike_quota_refusals_total",
        "counter",
        "Allocations refused with 486.",
        &[("", st.quota_refusals)],
    );
    let (send_errors, recv_errors) = s.0.control.udp_errors();
    metric(
        "turnpike_udp_errors_total",
        "counter",
        "UDP datagrams the kernel refused to send, and failed UDP reads; the server carries on past both.",
        &[
            ("{op=\"send\"}", send_errors),
            ("{op=\"recv\"}", recv_errors),
        ],
    );
    let fleet = s.0.control.fleet_quota();
    metric(
        "turnpike_fleet_quota_local_fallback",
        "gauge",
        "1 while fleet quotas are counted on this node only (store unreachable), else 0.",
        &[("", u64::from(fleet.local_fallback()))],
    );
    metric(
        "turnpike_fleet_quota_local_fallback_total",
        "counter",
        "Times fleet quotas fell back to counting on this node only.",
        &[("", fleet.fallbacks())],
    );
    let (acme_ok, acme_failed) = s.0.control.acme_counts().unwrap_or((0, 0));
    metric(
        "turnpike_acme_renewals_total",
        "counter",
        "ACME certificate orders, by outcome (0 without ACME).",
        &[
            ("{outcome=\"success\"}", acme_ok),
            ("{outcome=\"failure\"}", acme_failed),
        ],
    );
    let u = s.0.control.usage_stats();
    let get = UsageStats::get;
    metric(
        "turnpike_usage_records_written_total",
        "counter",
        "Usage records (final and interim) written to the store.",
        &[("", get(&u.records_written))],
    );
    metric(
        "turnpike_usage_queued",
        "gauge",
        "Usage records and events waiting in memory for the store.",
        &[("", get(&u.queued))],
    );
    metric(
        "turnpike_usage_spilled_total",
        "counter",
        "Usage records and events written to the spill file while the store was unreachable.",
        &[("", get(&u.spilled))],
    );
    metric(
        "turnpike_usage_lost_total",
        "counter",
        "Usage records and events lost: memory and the spill file were full.",
        &[("", get(&u.lost))],
    );
    metric(
        "turnpike_webhook_deliveries_total",
        "counter",
        "Webhook delivery attempts, by result.",
        &[
            ("{result=\"ok\"}", get(&u.webhook_delivered)),
            ("{result=\"failed\"}", get(&u.webhook_failed)),
        ],
    );
    metric(
        "turnpike_webhook_dropped_total",
        "counter",
        "Webhooks dropped: older than webhook_max_age, or the outbox was full.",
        &[("", get(&u.webhook_dropped))],
    );
    metric(
        "turnpike_webhook_outbox_depth",
        "gauge",
        "Webhook deliveries waiting in the store's outbox (all nodes).",
        &[("", get(&u.outbox_depth))],
    );
    metric(
        "turnpike_webhook_refusals_sampled_out_total",
        "counter",
        "allocation.refused events not sent (at most 10 a second are).",
        &[("", get(&u.refusals_sampled_out))],
    );
    // By realm: one label value per realm this node serves, so bounded.
    let realm = format!("realm=\"{}\"", escape(&s.0.config.realm));
    let one = |extra: &str| format!("{{{realm}{extra}}}");
    metric(
        "turnpike_realm_allocations_active",
        "gauge",
        "Allocations alive now, by realm.",
        &[(&one(""), s.0.control.allocations() as u64)],
    );
    metric(
        "turnpike_realm_allocations_total",
        "counter",
        "Allocations created, by realm.",
        &[(&one(""), st.allocations_created)],
    );
    metric(
        "turnpike_realm_relayed_bytes_total",
        "counter",
        "Application bytes relayed, by realm and direction.",
        &[
            (&one(",direction=\"to_peer\""), st.to_peer.bytes),
            (&one(",direction=\"to_client\""), st.to_client.bytes),
        ],
    );
    if s.0.config.metrics_user_labels {
        user_metrics(&s, &mut metric);
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    ))
}

/// Users labelled at most (those with the most allocations): even when
/// asked for, the label set stays bounded.
const MAX_USER_LABELS: usize = 1000;

/// Per-user gauges over live allocations (`metrics_user_labels`).
fn user_metrics(s: &State, metric: &mut impl FnMut(&str, &str, &str, &[(&str, u64)])) {
    #[derive(Default)]
    struct Live {
        allocations: u64,
        to_peer: u64,
        to_client: u64,
    }
    let mut per_user: BTreeMap<String, Live> = BTreeMap::new();
    for (_, v) in s.0.control.sessions() {
        let e = per_user.entry(v.username).or_default();
        e.allocations += 1;
        e.to_peer += v.to_peer.bytes;
        e.to_client += v.to_client.bytes;
    }
    let mut users: Vec<(String, Live)> = per_user.into_iter().collect();
    users.sort_by(|a, b| b.1.allocations.cmp(&a.1.allocations).then(a.0.cmp(&b.0)));
    users.truncate(MAX_USER_LABELS);
    let mut allocations = Vec::new();
    let mut bytes = Vec::new();
    for (u, live) in &users {
        let user = escape(u);
        allocations.push((format!("{{user=\"{user}\"}}"), live.allocations));
        bytes.push((
            format!("{{user=\"{user}\",direction=\"to_peer\"}}"),
            live.to_peer,
        ));
        bytes.push((
            format!("{{user=\"{user}\",direction=\"to_client\"}}"),
            live.to_client,
        ));
    }
    let a: Vec<(&str, u64)> = allocations.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    metric(
        "turnpike_user_allocations",
        "gauge",
        "Allocations alive now, by user (metrics_user_labels; the 1000 users with the most).",
        &a,
    );
    let b: Vec<(&str, u64)> = bytes.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    metric(
        "turnpike_user_relayed_bytes",
        "gauge",
        "Application bytes relayed by the user's live allocations, by direction.",
        &b,
    );
}

/// A label value escaped as the text format wants.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
