//! Reloading a running server (SIGHUP and `POST /api/v1/reload`): the
//! config file is read again under the same flags, validated whole, and
//! what may change without rebinding goes to the parts that hold it. An
//! invalid file, or a certificate that does not load, changes nothing.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::sync::CredentialHalves;
use super::tls::Tls;
use super::{assemble, worker, Transport};
use crate::admin::ReloadReport;
use crate::config::reload::reload;
use crate::config::{Config, Options};
use crate::turn::Shared;

/// Sets the log level and format ("text" or "json"); given by the binary,
/// which owns the log subscriber.
pub type LogSetter = Box<dyn Fn(&str, &str) -> Result<(), String> + Send + Sync>;

/// Where the running config came from, and the parts a reload reaches.
pub struct Reloader {
    pub(super) source: Mutex<Source>,
    pub(super) shared: Arc<Shared>,
    pub(super) streams: Arc<worker::StreamSetup>,
    pub(super) tls: Option<Arc<Tls>>,
    pub(super) credentials: Arc<CredentialHalves>,
    pub(super) listeners: Vec<(Transport, SocketAddr)>,
    pub(super) relay_ips: Vec<IpAddr>,
    pub(super) log: Mutex<Option<LogSetter>>,
}

pub(super) struct Source {
    /// Where the config came from; `None` when it was built in code (a
    /// library caller, a test): a reload then reads the certificate only.
    origin: Option<Origin>,
    config: Arc<Config>,
}

impl Source {
    /// A config built in code: until [`Reloader::set_source`] says where it
    /// came from, a reload reads the certificate only.
    pub(super) fn built(config: Arc<Config>) -> Mutex<Source> {
        Mutex::new(Source {
            origin: None,
            config,
        })
    }
}

struct Origin {
    /// `None`: started from flags alone.
    file: Option<PathBuf>,
    flags: Options,
    /// What the running config was made from.
    options: Options,
}

impl Reloader {
    /// The file and flags the running config was loaded from, and the
    /// options they layered into, so that a reload reads the same file
    /// with the same flags on top and compares with what is running.
    pub fn set_source(&self, file: Option<PathBuf>, flags: Options, layered: Options) {
        self.lock().origin = Some(Origin {
            options: layered,
            file,
            flags,
        });
    }

    /// How a reload changes the log level and format.
    pub fn set_log(&self, setter: LogSetter) {
        *self.log.lock().unwrap_or_else(|e| e.into_inner()) = Some(setter);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Source> {
        self.source.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the file again and applies it. The error is one line naming
    /// the key or file at fault; then nothing changed.
    pub(crate) fn reload(&self) -> Result<ReloadReport, String> {
        // One reload at a time: the lock is held throughout.
        let mut s = self.lock();
        let r = match &s.origin {
            Some(o) => Some(
                reload(&s.config, &o.options, o.file.as_deref(), &o.flags)
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        // The certificate next: it may still refuse the whole reload.
        let tls = match &self.tls {
            None => "not configured",
            Some(tls) => {
                tls.reload()
                    .map_err(|e| format!("kept the old certificate: {e}"))?;
                "reloaded"
            }
        };
        let Some(r) = r else {
            return Ok(ReloadReport {
                tls,
                ..ReloadReport::default()
            });
        };
        let config = Arc::new(r.config);
        if let Some(set) = &*self.log.lock().unwrap_or_else(|e| e.into_inner()) {
            set(&config.log_level, &config.log_format)?;
        }
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        self.apply(&config);
        if let Some(o) = &mut s.origin {
            o.options = r.options;
        }
        s.config = config;
        Ok(ReloadReport {
            applied: r.applied,
            needs_restart: r.needs_restart,
            tls,
        })
    }

    /// Hands each part its new settings.
    fn apply(&self, config: &Arc<Config>) {
        self.shared.reconfigure(assemble::turn_config(
            config,
            &self.listeners,
            &self.relay_ips,
        ));
        self.shared.quotas.set_limits(
            config.user_quota,
            config.total_quota,
            config.max_allocations_per_ip,
        );
        self.streams
            .limits
            .set(config.max_tcp_per_ip, config.max_tcp_connections);
        self.streams
            .proxies
            .store(Arc::new(config.proxy_protocol_from.clone()));
        self.credentials.set_config(config.clone());
    }
}

// By hand: the log setter is a closure; the config holds secrets.
impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("file", &self.lock().origin.as_ref().map(|o| o.file.clone()))
            .finish_non_exhaustive()
    }
}
