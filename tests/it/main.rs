//! Integration tests, one binary so the suite links once.

mod cli;
mod coturn;
mod differential;
mod props;
mod wire;

use std::net::SocketAddr;

use turnpike::{Config, Running, Transport};

/// A server on 127.0.0.1 with an OS-chosen port (UDP and TCP share it).
pub async fn start_server() -> (Running, SocketAddr, SocketAddr) {
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..Config::default()
    };
    let running = turnpike::serve(config, std::future::pending())
        .await
        .expect("server starts");
    let udp = running.addrs(Transport::Udp)[0];
    let tcp = running.addrs(Transport::Tcp)[0];
    (running, udp, tcp)
}
