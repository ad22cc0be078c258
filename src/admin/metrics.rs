//! `/metrics` in the Prometheus text format. Counters come from the
//! workers' once-a-second reports; no user names unless
//! `metrics_user_labels` is on.

use axum::extract::State as Extract;
use axum::response::IntoResponse;
use std::collections::BTreeMap;
use std::fmt::Write;

use super::auth::guard;
use super::{ApiError, Caller, State};

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
    if s.0.config.metrics_user_labels {
        let mut per_user: BTreeMap<String, u64> = BTreeMap::new();
        for (_, v) in s.0.control.sessions() {
            *per_user.entry(v.username).or_default() += 1;
        }
        let labels: Vec<(String, u64)> = per_user
            .into_iter()
            .map(|(u, n)| (format!("{{user=\"{}\"}}", escape(&u)), n))
            .collect();
        let samples: Vec<(&str, u64)> = labels.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        metric(
            "turnpike_user_allocations",
            "gauge",
            "Allocations alive now, by user.",
            &samples,
        );
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    ))
}

/// A label value escaped as the text format wants.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
