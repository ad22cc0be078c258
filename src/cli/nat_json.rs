//! `probe nat --json`: the [`Report`] as JSON. It lives in the CLI so the
//! sans-IO core needs no serde_json; scripts (and tests/it) parse these
//! keys, so they are stable.

use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::nat::{Outcome, Report, TestRecord};

/// The report as JSON: `mapping`, `filtering`, `classic`, `hairpinning`,
/// `nat`, the addresses, `large_packets`, `alg`, `lifetime` and `tests`.
pub(crate) fn report(r: &Report) -> Value {
    let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string());
    json!({
        "server": r.server.to_string(),
        "local": r.local.to_string(),
        "mapped": r.mapped.to_string(),
        "other_address": r.other_address.to_string(),
        "response_origin": addr(r.response_origin),
        "mapped_alternate_ip": addr(r.mapped_alternate_ip),
        "mapped_alternate_address": addr(r.mapped_alternate_address),
        "nat": r.nat,
        "mapping": r.mapping.as_str(),
        "filtering": r.filtering.as_str(),
        "classic": r.classic_name(),
        "hairpinning": r.hairpinning,
        "large_packets": r.large_packets,
        "alg": r.alg,
        "lifetime": r.lifetime.map(|l| json!({
            "at_least_secs": l.at_least.as_secs_f64(),
            "less_than_secs": l.less_than.map(|d| d.as_secs_f64()),
        })),
        "tests": r.tests.iter().map(test_record).collect::<Vec<_>>(),
    })
}

/// One transaction of the run.
fn test_record(t: &TestRecord) -> Value {
    let mut v = json!({
        "test": t.test.as_str(),
        "socket": t.socket.as_str(),
        "to": t.to.to_string(),
        "requests": t.requests,
    });
    if let Some(idle) = t.idle {
        v["idle_secs"] = json!(idle.as_secs_f64());
    }
    match t.outcome {
        Outcome::Answered {
            received_on,
            from,
            mapped,
            response_origin,
        } => {
            v["outcome"] = json!("answered");
            v["received_on"] = json!(received_on.as_str());
            v["from"] = json!(from.to_string());
            v["mapped"] = json!(mapped.map(|a| a.to_string()));
            v["response_origin"] = json!(response_origin.map(|a| a.to_string()));
        }
        Outcome::ErrorResponse { code } => {
            v["outcome"] = json!("error-response");
            v["code"] = json!(code);
        }
        Outcome::NoAnswer => v["outcome"] = json!("no-answer"),
    }
    v
}

#[cfg(test)]
mod tests {
    use crate::nat::tests::sim::{report, NatConfig, ServerMode, Sim};
    use crate::nat::{report::Behaviour, ProbeOptions};

    #[test]
    fn report_serialises_to_json_with_the_verdict_and_addresses() {
        let mut nat = NatConfig::new(Behaviour::EndpointIndependent, Behaviour::AddressDependent);
        nat.hairpin = true;
        let r = report(
            &mut Sim::new(ServerMode::Full, Some(nat)),
            ProbeOptions::default(),
        );
        let j = super::report(&r);
        assert_eq!(j["mapping"], "endpoint-independent");
        assert_eq!(j["filtering"], "address-dependent");
        assert_eq!(j["classic"], "restricted cone");
        assert_eq!(j["hairpinning"], true);
        assert_eq!(j["nat"], true);
        assert_eq!(j["large_packets"], true);
        assert_eq!(j["lifetime"], serde_json::Value::Null);
        assert_eq!(j["server"], "192.0.2.1:3478");
        assert_eq!(j["local"], "10.0.0.2:50000");
        assert_eq!(j["mapped"], "203.0.113.9:61001");
        assert_eq!(j["other_address"], "198.51.100.2:3479");
        assert_eq!(j["response_origin"], "192.0.2.1:3478");
        assert_eq!(j["tests"][0]["test"], "connectivity");
        assert_eq!(j["tests"][0]["outcome"], "answered");
        assert_eq!(j["tests"][0]["mapped"], "203.0.113.9:61001");
        assert_eq!(j["tests"][1]["outcome"], "no-answer");
        assert_eq!(j["tests"][1]["requests"], 3);
    }
}
