//! ACME (RFC 8555, issue 19): the TLS certificate from a CA.
//!
//! At start [`prepare`] makes the state directory and, unless a stored
//! certificate the CA issued is still valid for every domain, writes a
//! self-signed placeholder there; TLS (and DTLS) serve those files as if
//! they were `cert` and `key`. [`Acme::start`] then runs the renewal
//! task: an order when there is no issued certificate, else at two-thirds
//! of its lifetime, or at once when asked (`POST /api/v1/acme/renew`).
//! A new pair is written (key 0600) and swapped in through the TLS
//! reload path, so connections keep the keys they negotiated. A failure
//! is retried after one minute, doubling to an hour.
//!
//! Challenges: tls-alpn-01 is answered on the TLS listeners themselves
//! ([`challenge`]); with `acme_http_listen`, http-01 is used instead and
//! answered there ([`http01`]).

pub mod challenge;
pub mod files;
pub mod http01;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, Key, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::{mpsc, oneshot, watch};

use super::tls::Tls;
use crate::config::AcmeConfig;
use challenge::Challenges;
use files::Stored;

/// The first retry after a failure; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(60);
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// The longest the task sleeps before looking at the due time again.
const RECHECK: Duration = Duration::from_secs(86_400);
/// How long one order may take, challenges and issuance together.
const ORDER_TIMEOUT: Duration = Duration::from_secs(90);

/// A certificate just issued and served.
#[derive(Debug, Clone)]
pub struct Renewed {
    pub serial: String,
    pub not_after: SystemTime,
}

type Reply = oneshot::Sender<Result<Renewed, String>>;

/// What the admin API reaches: forced renewal and the outcome counts.
#[derive(Debug)]
pub struct Handle {
    force: mpsc::Sender<Reply>,
    pub successes: AtomicU64,
    pub failures: AtomicU64,
}

impl Handle {
    /// Runs an order now and answers how it went.
    pub async fn renew(&self) -> Result<Renewed, String> {
        let (tx, rx) = oneshot::channel();
        self.force
            .try_send(tx)
            .map_err(|_| "a renewal is already queued".to_string())?;
        rx.await
            .map_err(|_| "the renewal task has stopped".to_string())?
    }
}

/// The renewal task, not yet started.
#[derive(Debug)]
pub struct Acme {
    config: AcmeConfig,
    handle: Arc<Handle>,
    requests: mpsc::Receiver<Reply>,
    stored: Option<Stored>,
}

/// Makes the state directory and what TLS will serve first; the error is
/// one line naming the key or file.
pub fn prepare(config: &AcmeConfig) -> Result<Acme, String> {
    files::ensure_dir(&config.dir)?;
    let stored = files::stored(&config.dir, &config.domains, SystemTime::now());
    match &stored {
        Some(s) => tracing::info!(
            event = "acme",
            "serving the stored certificate {} (renewal due at {})",
            s.serial,
            humantime(s.renew_at())
        ),
        None => {
            files::write_placeholder(&config.dir, &config.domains)?;
            tracing::info!(
                event = "acme",
                "no valid stored certificate: serving a self-signed placeholder until the CA issues one"
            );
        }
    }
    // Bounded: one forced renewal queued behind the one running.
    let (force, requests) = mpsc::channel(1);
    Ok(Acme {
        config: config.clone(),
        handle: Arc::new(Handle {
            force,
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }),
        requests,
        stored,
    })
}

impl Acme {
    pub fn handle(&self) -> Arc<Handle> {
        self.handle.clone()
    }

    /// Starts the http-01 responder (when configured) and the renewal
    /// task; both end with `stop`.
    pub async fn start(self, tls: Arc<Tls>, stop: watch::Receiver<bool>) -> Result<(), String> {
        let challenges = tls.challenges();
        if let Some(addr) = self.config.http_listen {
            let (bound, task) = http01::bind(addr, challenges.clone(), stop.clone())
                .await
                .map_err(|e| format!("cannot bind acme_http_listen {addr}: {e}"))?;
            tracing::info!(event = "listening", "acme http-01 http://{bound}");
            tokio::spawn(task);
        }
        let task = Task {
            config: self.config,
            handle: self.handle,
            tls,
            challenges,
            account: None,
            stored: self.stored,
        };
        tokio::spawn(task.run(self.requests, stop));
        Ok(())
    }
}

struct Task {
    config: AcmeConfig,
    handle: Arc<Handle>,
    tls: Arc<Tls>,
    challenges: Arc<Challenges>,
    account: Option<Account>,
    stored: Option<Stored>,
}

impl Task {
    async fn run(mut self, mut requests: mpsc::Receiver<Reply>, mut stop: watch::Receiver<bool>) {
        let mut backoff = MIN_BACKOFF;
        let mut retry_at: Option<SystemTime> = None;
        loop {
            let due = match (&self.stored, retry_at) {
                (Some(s), Some(r)) => s.renew_at().max(r),
                (Some(s), None) => s.renew_at(),
                (None, Some(r)) => r,
                (None, None) => SystemTime::now(),
            };
            // Woken at least daily to look again: the due time is wall
            // clock time, and tokio caps how far a timer can reach.
            let wait = due
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .min(RECHECK);
            let reply = tokio::select! {
                _ = tokio::time::sleep(wait) => None,
                r = requests.recv() => match r {
                    Some(r) => Some(r),
                    None => return,
                },
                _ = super::stopped(&mut stop) => return,
            };
            if reply.is_none() && SystemTime::now() < due {
                continue;
            }
            let outcome = tokio::select! {
                r = tokio::time::timeout(ORDER_TIMEOUT, self.order()) => {
                    r.unwrap_or_else(|_| Err("the order timed out".into()))
                }
                _ = super::stopped(&mut stop) => return,
            };
            self.challenges.clear();
            match &outcome {
                Ok(r) => {
                    self.handle.successes.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        event = "acme",
                        outcome = "success",
                        "certificate {} issued for {} (valid until {})",
                        r.serial,
                        self.config.domains.join(", "),
                        humantime(r.not_after)
                    );
                    backoff = MIN_BACKOFF;
                    retry_at = None;
                }
                Err(e) => {
                    self.handle.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        event = "acme",
                        outcome = "failure",
                        "certificate order failed, next try in {} s: {e}",
                        backoff.as_secs()
                    );
                    retry_at = Some(SystemTime::now() + backoff);
                    backoff = next_backoff(backoff);
                }
            }
            if let Some(reply) = reply {
                let _ = reply.send(outcome);
            }
        }
    }

    async fn account(&mut self) -> Result<Account, String> {
        if let Some(a) = &self.account {
            return Ok(a.clone());
        }
        let key = account_key(&self.config)?;
        let builder = match &self.config.ca_file {
            Some(ca) => Account::builder_with_root(ca)
                .map_err(|e| format!("acme_ca_file {}: {e}", ca.display()))?,
            None => Account::builder().map_err(|e| e.to_string())?,
        };
        let (account, _) = builder
            .create_from_key(key, self.config.directory.clone())
            .await
            .map_err(|e| format!("account at {}: {e}", self.config.directory))?;
        if let Some(email) = &self.config.email {
            let contact = format!("mailto:{email}");
            account
                .update_contacts(&[contact.as_str()])
                .await
                .map_err(|e| format!("account contact: {e}"))?;
        }
        self.account = Some(account.clone());
        Ok(account)
    }

    /// One order: challenges, CSR, certificate, written and served.
    async fn order(&mut self) -> Result<Renewed, String> {
        let account = self.account().await?;
        let ids: Vec<Identifier> = self
            .config
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(|e| format!("new order: {e}"))?;
        let kind = match self.config.http_listen {
            Some(_) => ChallengeType::Http01,
            None => ChallengeType::TlsAlpn01,
        };
        let mut authorizations = order.authorizations();
        while let Some(a) = authorizations.next().await {
            let mut a = a.map_err(|e| format!("authorization: {e}"))?;
            match a.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                s => return Err(format!("authorization is {s:?}")),
            }
            let mut ch = a
                .challenge(kind.clone())
                .ok_or_else(|| format!("the CA offers no {kind:?} challenge"))?;
            let domain = ch.identifier().to_string();
            let key_auth = ch.key_authorization();
            match kind {
                ChallengeType::Http01 => self.challenges.set_http(&ch.token, key_auth.as_str()),
                _ => self
                    .challenges
                    .set_alpn(&domain, key_auth.digest().as_ref())?,
            }
            ch.set_ready()
                .await
                .map_err(|e| format!("challenge for {domain}: {e}"))?;
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(Duration::from_secs(60));
        let status = order
            .poll_ready(&retry)
            .await
            .map_err(|e| format!("order: {e}"))?;
        if status != OrderStatus::Ready {
            return Err(format!("order is {status:?}, not ready"));
        }
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = rcgen::CertificateParams::new(self.config.domains.clone())
            .map_err(|e| e.to_string())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| format!("CSR: {e}"))?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|e| format!("finalize: {e}"))?;
        let chain = order
            .poll_certificate(&retry)
            .await
            .map_err(|e| format!("certificate: {e}"))?;
        let info = files::describe_pem(chain.as_bytes())
            .ok_or("the CA sent a certificate that cannot be read")?;
        files::write_pair(&self.config.dir, &chain, &key.serialize_pem())?;
        self.tls
            .reload()
            .map_err(|e| format!("serving the new certificate: {e}"))?;
        self.stored = Some(info.clone());
        Ok(Renewed {
            serial: info.serial,
            not_after: info.not_after,
        })
    }
}

/// The wait after the next failure: double, at most [`MAX_BACKOFF`].
fn next_backoff(d: Duration) -> Duration {
    (d * 2).min(MAX_BACKOFF)
}

/// The account key from `acme_contact_key_file`, created 0600 if absent.
fn account_key(config: &AcmeConfig) -> Result<(Key, PrivateKeyDer<'static>), String> {
    let path = &config.account_key;
    let named =
        |e: &dyn std::fmt::Display| format!("acme_contact_key_file {}: {e}", path.display());
    if path.exists() {
        let der = PrivateKeyDer::from_pem_file(path).map_err(|e| named(&e))?;
        let PrivateKeyDer::Pkcs8(pkcs8) = der else {
            return Err(named(&"not a PKCS#8 PRIVATE KEY"));
        };
        let key = Key::from_pkcs8_der(pkcs8.clone_key()).map_err(|e| named(&e))?;
        return Ok((key, PrivateKeyDer::Pkcs8(pkcs8)));
    }
    let (key, pkcs8): (Key, PrivatePkcs8KeyDer<'static>) =
        Key::generate_pkcs8().map_err(|e| named(&e))?;
    files::create_account_key(path, &files::pkcs8_pem(pkcs8.secret_pkcs8_der()))?;
    tracing::info!(
        event = "acme",
        "created the ACME account key {}",
        path.display()
    );
    Ok((key, PrivateKeyDer::Pkcs8(pkcs8)))
}

/// RFC 3339 in UTC, for log lines.
fn humantime(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_one_minute_doubling_to_an_hour() {
        let mut d = MIN_BACKOFF;
        let mut waits = vec![d.as_secs()];
        for _ in 0..7 {
            d = next_backoff(d);
            waits.push(d.as_secs());
        }
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }
}
