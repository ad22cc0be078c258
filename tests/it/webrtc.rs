//! The webrtc-rs `turn` client crate against turnpike: allocate, permission
//! (implicit in its send_to), relay to a local UDP echo peer and back.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use turn::client::{Client, ClientConfig};
use webrtc_util::Conn;

use crate::{start_turn, PASSWORD, REALM, USER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_turn_client_relays_to_an_echo_peer() {
    let server = start_turn(|c| c.allow_loopback_peers = true).await;
    let addr = server.addrs(turnpike::Transport::Udp)[0];

    let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    let echo_task = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, from)) = echo.recv_from(&mut buf).await else {
                return;
            };
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });

    let conn = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let client = Client::new(ClientConfig {
        stun_serv_addr: addr.to_string(),
        turn_serv_addr: addr.to_string(),
        username: USER.into(),
        password: PASSWORD.into(),
        realm: REALM.into(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await
    .unwrap();
    client.listen().await.unwrap();
    let relay = client
        .allocate()
        .await
        .expect("allocation through webrtc-rs");
    let relayed = relay.local_addr().unwrap();
    assert_eq!(relayed.ip().to_string(), "127.0.0.1");
    assert_eq!(server.allocations(), 1);

    let mut buf = [0u8; 2048];
    for i in 0..20u32 {
        let msg = format!("hello {i}");
        relay.send_to(msg.as_bytes(), echo_addr).await.unwrap();
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), relay.recv_from(&mut buf))
            .await
            .expect("echo came back through the relay")
            .unwrap();
        assert_eq!(from, echo_addr);
        assert_eq!(&buf[..n], msg.as_bytes());
    }
    relay.close().await.unwrap();
    client.close().await.unwrap();
    echo_task.abort();
    server.stop().await;
}
