//! Start-up phase two: from the configuration and what was bound, the
//! state every worker shares: the TURN settings and peer policy, the nonce
//! issuer, the authenticator over the credential directory, and the stream
//! limits.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use super::tls::Tls;
use super::{limits, worker, ServeError, Transport};
use crate::auth::nonce::{NonceIssuer, FEATURE_PASSWORD_ALGORITHMS, FEATURE_USERNAME_ANONYMITY};
use crate::auth::rest::Secret;
use crate::auth::{Authenticator, Credentials, Directory};
use crate::config::Config;
use crate::store::{Snapshot, Snapshots};
use crate::turn::clients::ClientList;
use crate::turn::policy::PeerPolicy;
use crate::turn::ports::PortPool;
use crate::turn::quota::Quotas;
use crate::turn::{Shared, SharedKeys, TurnConfig, DEFAULT_LIFETIME};

/// What TCP, TLS and DTLS connections of every worker share.
pub(super) fn streams(config: &Config, tls: Option<Arc<Tls>>) -> Arc<worker::StreamSetup> {
    Arc::new(worker::StreamSetup {
        tls,
        limits: limits::ConnLimits::new(config.max_tcp_per_ip, config.max_tcp_connections),
        handshake_timeout: config.handshake_timeout,
        // A DTLS client with an allocation sends at least once per
        // lifetime (its Refresh); one without is dropped after
        // handshake_timeout of silence (dtls.rs).
        dtls_idle: config.max_allocate_lifetime + std::time::Duration::from_secs(60),
        passthrough: config
            .tls_passthrough_to
            .clone()
            .map(|to| super::passthrough::Passthrough {
                to,
                sni: config.tls_passthrough_sni.clone(),
                proxy_protocol: config.tls_passthrough_proxy_protocol,
                idle: config.tls_passthrough_idle_timeout,
            }),
        proxies: arc_swap::ArcSwap::from_pointee(config.proxy_protocol_from.clone()),
    })
}

/// The keys every node of one store shares (issue 15): a nonce from one
/// node is good at another, and so is a RESERVATION-TOKEN's derivation.
pub(super) struct FleetKeys {
    pub(super) nonce: [u8; 32],
    pub(super) reservation_token: [u8; 32],
}

/// The state shared by every worker's TURN core.
pub(super) fn shared(
    config: &Config,
    listeners: &[(Transport, SocketAddr)],
    relay_ips: &[IpAddr],
    snapshot: Snapshots,
    fleet: FleetKeys,
) -> Result<Arc<Shared>, ServeError> {
    let turn = turn_config(config, listeners, relay_ips);
    // Nonce times count in Unix seconds, so every node reads every
    // node's nonces the same way.
    let nonces = NonceIssuer::new(
        fleet.nonce,
        Instant::now(),
        config.stale_nonce,
        FEATURE_PASSWORD_ALGORITHMS | FEATURE_USERNAME_ANONYMITY,
    )
    .with_unix_epoch(crate::store::unix_now() as u64);
    // The self-test secret (issue 20) is this process's alone and never
    // stored: a restart voids every self-test credential, which live 60 s.
    let selftest = match config.selftest.enabled() {
        true => Some(Secret(random_bytes::<32>()?.to_vec())),
        false => None,
    };
    Ok(Arc::new(Shared::new(
        turn,
        authenticator(config, nonces, snapshot, selftest),
        Quotas::new(config.user_quota, config.total_quota)
            .with_per_source(config.max_allocations_per_ip),
        PortPool::new(config.min_port, config.max_port).with_key(random_bytes()?),
        SharedKeys {
            reservation_token: fleet.reservation_token,
            // The reply budget is this node's own table.
            reply_budget: random_bytes()?,
        },
    )))
}

/// Config -> TurnConfig, with the peer policy that knows this host.
pub(super) fn turn_config(
    config: &Config,
    listeners: &[(Transport, SocketAddr)],
    relay_ips: &[IpAddr],
) -> TurnConfig {
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
    policy.add_own_ips(own_ips(listeners, relay_ips, &external_ips));
    TurnConfig {
        relay_ips: relay_ips.to_vec(),
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
        clients: ClientList::new(
            config.allowed_client_ips.clone(),
            config.denied_client_ips.clone(),
        ),
        auth_reply_rate: config.auth_reply_rate,
        strict_expiry: config.strict_expiry,
        tcp_relay: config.tcp_relay,
        max_peer_connections: config.max_peer_connections,
        max_peer_connections_per_user: config.max_peer_connections_per_user,
        stun_backward_compatibility: config.stun_backward_compatibility,
    }
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

fn random_bytes<const N: usize>() -> Result<[u8; N], ServeError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| ServeError::Random(e.to_string()))?;
    Ok(b)
}

/// The credentials the server checks against: the configuration's static
/// users and secrets, then the store's (a static user wins a name clash).
pub fn directory(config: &Config, stored: Snapshot) -> Directory {
    directory_in(config, &config.realm, stored)
}

/// Every served realm's credentials, from the store's snapshots; static
/// users and secrets are the default realm's only.
pub(super) fn directories(config: &Config, stored: &Snapshots) -> Vec<Directory> {
    stored
        .iter()
        .map(|(realm, snapshot)| directory_in(config, realm, snapshot.clone()))
        .collect()
}

fn directory_in(config: &Config, realm: &str, stored: Snapshot) -> Directory {
    let mut statics = Directory::new(Credentials::new(realm));
    if realm == config.realm {
        statics = Directory::new(Credentials::from_users(realm, config.users.clone()));
        statics.secrets = config.static_auth_secrets.clone();
    }
    let mut d = Directory::new(Credentials::from_users(realm, stored.users));
    d.secrets = stored.secrets;
    d.oauth_keys = stored.oauth_keys.into_iter().collect();
    d.user_quotas = stored.user_quotas.into_iter().collect();
    d.realm_quota = stored.realm_quota;
    d.revoked = stored.revoked.into_iter().collect();
    Directory::merge(statics, d)
}

fn authenticator(
    config: &Config,
    nonces: NonceIssuer,
    stored: Snapshots,
    selftest: Option<Secret>,
) -> Authenticator {
    let default = Directory::new(Credentials::new(&config.realm));
    // The core reads no clock: the Unix time comes in anchored to now.
    let mut a = Authenticator::new(default, nonces);
    if let Some(secret) = selftest {
        a = a.with_selftest_secret(secret);
    }
    let a = a
        .with_realms(config.realms.clone())
        .with_clock(Instant::now(), crate::store::unix_now() as u64)
        .with_rest_separator(config.rest_api_separator);
    a.replace_all(directories(config, &stored));
    if config.oauth {
        a.with_oauth(&config.server_name)
    } else {
        a
    }
}
