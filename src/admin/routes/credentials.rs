//! `/api/v1/credentials`: time-limited REST credentials and ICE servers
//! for WebRTC backends. In a fleet (issue 15) it picks the nodes: the
//! least-loaded ready one (in the asked region first) and a fallback, or
//! the one pinned; see [`super::select`].

use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::select::{choose, Me, NoNode, Want};
use super::{body, Reply};
use crate::admin::auth::may;
use crate::admin::error::unavailable;
use crate::admin::{ApiError, Caller, State};
use crate::auth::realms::Tenant;
use crate::auth::rest;
use crate::store::unix_now_ms;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialRequest {
    user: String,
    #[serde(default = "default_ttl")]
    ttl: u64,
    /// Prefer ready nodes of this region.
    #[serde(default)]
    region: Option<String>,
    /// Pin one node by name, or `self` for the answering node.
    #[serde(default)]
    node: Option<String>,
    /// Mint with this realm's secrets (issue 19: tenant realms).
    #[serde(default)]
    realm: Option<String>,
}

/// Whether the last answer was made without the store.
static STORE_DOWN: AtomicBool = AtomicBool::new(false);

fn default_ttl() -> u64 {
    86_400
}

pub(super) async fn credentials(Extract(s): Extract<State>, caller: Caller, bytes: Bytes) -> Reply {
    // Authenticate before reading anything the caller sent.
    let (sub, scope) = s.0.authorize(&caller)?;
    let r: CredentialRequest = body(&bytes)?;
    let realm = r.realm.clone().unwrap_or_else(|| s.0.config.realm.clone());
    may(&sub, &scope, Some(&realm))?;
    // 404, not 400: the request is well formed, the realm is what is
    // missing (as for a user or node that does not exist).
    if !s.0.config.realm_names().contains(&realm) {
        return Err(ApiError::not_found(format!(
            "realm {realm} is not served here (realm or realms)"
        )));
    }
    if r.ttl == 0 || r.ttl > 30 * 86_400 {
        return Err(ApiError::bad_request("ttl must be 1 s to 30 days"));
    }
    let me = Me {
        name: s.0.config.node_name.clone(),
        region: s.0.config.region.clone(),
        urls: s.0.control.ice_urls(),
        allocations: i64::from(s.0.control.allocations()),
    };
    // Both at once, so an unreachable store costs one acquire timeout.
    let (stored, rows) = tokio::join!(s.0.store.secret_values(&realm), s.0.store.nodes());
    // Without the store this node answers from what it holds: its
    // snapshot's secrets, and itself as the only node it can vouch for.
    let store_down =
        matches!(&stored, Err(e) if unavailable(e)) || matches!(&rows, Err(e) if unavailable(e));
    // Said once per outage, not once per request.
    if STORE_DOWN.swap(store_down, Ordering::Relaxed) != store_down {
        if store_down {
            tracing::warn!(
                event = "store_unreachable",
                "credentials: store unreachable, answering with this node only"
            );
        } else {
            tracing::info!(
                event = "store_reachable",
                "credentials: store reachable again"
            );
        }
    }
    let (secrets, rows) = if store_down {
        (s.0.control.rest_secrets(&realm), Vec::new())
    } else {
        // Static secrets are the default realm's.
        let mut secrets = Vec::new();
        if realm == s.0.config.realm {
            secrets = s.0.config.static_auth_secrets.clone();
        }
        secrets.extend(stored?);
        (secrets, rows?)
    };
    let want = match r.node.as_deref() {
        Some(name) => {
            if store_down && name != "self" && name != me.name {
                return Err(ApiError::store_unavailable());
            }
            Want::Pin(name)
        }
        None => Want::Least {
            region: r.region.as_deref(),
        },
    };
    // Oldest first, static ones before stored ones: the last is the newest.
    let Some(secret) = secrets.last() else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "no REST secret: set static_auth_secret or add one".into(),
        ));
    };
    let nodes = choose(&rows, &me, want, unix_now_ms()).map_err(|e| match e {
        NoNode::Unknown(name) => ApiError::not_found(format!("no node named {name}")),
        NoNode::NotReady { name, state } => {
            ApiError(StatusCode::CONFLICT, format!("node {name} is {state}"))
        }
        NoNode::NoneReady => ApiError(StatusCode::SERVICE_UNAVAILABLE, "no node is ready".into()),
    })?;
    let (username, password) = rest::mint(
        &secret.0,
        &r.user,
        r.ttl,
        s.0.config.rest_api_separator,
        crate::store::unix_now() as u64,
    );
    let tenant = s.0.config.realms.iter().find(|t| *t.name == *realm);
    let urls: Vec<Vec<String>> = nodes.iter().map(|n| tenant_urls(tenant, &n.urls)).collect();
    let ice_servers: Vec<_> = urls
        .iter()
        .map(|urls| json!({"urls": urls, "username": username, "credential": password}))
        .collect();
    let names: Vec<_> = nodes.iter().map(|n| n.name.as_str()).collect();
    Ok(Json(json!({
        "username": username,
        "password": password,
        "ttl": r.ttl,
        "uris": urls.first().cloned().unwrap_or_default(),
        "iceServers": ice_servers,
        "nodes": names,
    })))
}

/// A node's URLs as a tenant's clients must use them. A tenant picked by
/// its TLS server name is reached over TLS to that name only: `turns:`
/// URLs name its first SNI name (the node's own name would pick the
/// default realm), and without `origins` (only a client sending ORIGIN
/// is served in it over plain TURN) its `turn:` URLs, which would land in
/// the default realm, are left out. STUN needs no realm and stays.
fn tenant_urls(tenant: Option<&Tenant>, urls: &[String]) -> Vec<String> {
    let Some(name) = tenant.and_then(|t| t.sni.first()) else {
        return urls.to_vec();
    };
    let keep_turn = tenant.is_some_and(|t| !t.origins.is_empty());
    let mut out: Vec<String> = Vec::new();
    for url in urls {
        let url = match url.strip_prefix("turns:") {
            Some(rest) => {
                let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
                let Some((_, port)) = hostport.rsplit_once(':') else {
                    continue;
                };
                let query = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                };
                format!("turns:{name}:{port}{query}")
            }
            None if url.starts_with("turn:") && !keep_turn => continue,
            None => url.clone(),
        };
        if !out.contains(&url) {
            out.push(url);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(sni: &[&str], origins: &[&str]) -> Tenant {
        Tenant {
            name: "t.example".into(),
            sni: sni.iter().map(|s| s.to_string()).collect(),
            origins: origins.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_tenant_by_sni_gets_turns_urls_with_its_name_and_no_plain_turn() {
        let urls: Vec<String> = [
            "stun:192.0.2.1:3478",
            "turn:192.0.2.1:3478?transport=udp",
            "turn:192.0.2.1:3478?transport=tcp",
            "turns:turn.example.org:443?transport=tcp",
            "turns:[2001:db8::1]:443?transport=tcp",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(tenant_urls(None, &urls), urls, "the default realm");
        assert_eq!(
            tenant_urls(Some(&tenant(&[], &["https://a.example"])), &urls),
            urls,
            "a tenant by origin only"
        );
        assert_eq!(
            tenant_urls(Some(&tenant(&["b.example", "c.example"], &[])), &urls),
            ["stun:192.0.2.1:3478", "turns:b.example:443?transport=tcp"],
            "by SNI only: both TLS URLs become one"
        );
        assert_eq!(
            tenant_urls(Some(&tenant(&["b.example"], &["https://b.example"])), &urls),
            [
                "stun:192.0.2.1:3478",
                "turn:192.0.2.1:3478?transport=udp",
                "turn:192.0.2.1:3478?transport=tcp",
                "turns:b.example:443?transport=tcp",
            ],
            "with origins too, plain TURN stays for clients that send ORIGIN"
        );
    }
}
