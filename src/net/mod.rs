//! The I/O shell: tokio listeners feeding the sans-IO core.
//!
//! [`serve`] binds every listener before it returns, so callers (tests
//! especially, on port 0) learn the real addresses from [`Running`]. The
//! server stops when the `shutdown` future completes.

mod socket;
mod tcp;
mod udp;

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;

/// Transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// Could not start the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot bind {transport} {addr}: {source}")]
    Bind {
        transport: Transport,
        addr: SocketAddr,
        source: io::Error,
    },
}

/// A started server.
pub struct Running {
    listeners: Vec<(Transport, SocketAddr)>,
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
}

impl Running {
    /// Every bound listener, in bind order.
    pub fn listeners(&self) -> &[(Transport, SocketAddr)] {
        &self.listeners
    }

    /// Bound addresses of one transport.
    pub fn addrs(&self, transport: Transport) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|(t, _)| *t == transport)
            .map(|(_, a)| *a)
            .collect()
    }

    /// Waits until the server has stopped (after `shutdown` completes).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops the server now and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.wait().await
    }
}

/// Completes once the stop flag is set (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Binds the configured listeners and serves until `shutdown` completes.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, ServeError> {
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut listeners = Vec::new();

    for want in &config.listen {
        let udp = match socket::bind_udp(*want) {
            Ok(s) => s,
            Err(e) if socket::is_optional_ipv6(want, &e) => {
                tracing::warn!("skipping {want}: no IPv6 on this host ({e})");
                continue;
            }
            Err(source) => {
                return Err(ServeError::Bind {
                    transport: Transport::Udp,
                    addr: *want,
                    source,
                })
            }
        };
        let udp_addr = udp.local_addr().map_err(|source| ServeError::Bind {
            transport: Transport::Udp,
            addr: *want,
            source,
        })?;
        // On port 0, give TCP the port UDP got, as operators expect one port.
        let tcp = if want.port() == 0 {
            socket::bind_tcp(udp_addr).or_else(|_| socket::bind_tcp(*want))
        } else {
            socket::bind_tcp(*want)
        }
        .map_err(|source| ServeError::Bind {
            transport: Transport::Tcp,
            addr: *want,
            source,
        })?;
        let tcp_addr = tcp.local_addr().map_err(|source| ServeError::Bind {
            transport: Transport::Tcp,
            addr: *want,
            source,
        })?;
        tracing::info!("listening udp {udp_addr}");
        tracing::info!("listening tcp {tcp_addr}");
        listeners.push((Transport::Udp, udp_addr));
        listeners.push((Transport::Tcp, tcp_addr));
        tasks.spawn(udp::run(udp, stop_rx.clone()));
        tasks.spawn(tcp::run(tcp, stop_rx.clone()));
    }

    let stop_on_shutdown = stop.clone();
    let mut stop_seen = stop_rx.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = shutdown => {}
            _ = stopped(&mut stop_seen) => {}
        }
        let _ = stop_on_shutdown.send(true);
    });
    Ok(Running {
        listeners,
        tasks,
        stop,
    })
}
