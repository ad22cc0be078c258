//! Peer policy and quotas on the wire, with real sockets.

use std::net::SocketAddr;

use crate::start_turn;
use crate::turn_client::TurnClient;
use turnpike::turn::policy::IpRange;

/// Every default-denied form named by the security checklist and issue 3.
const DENIED: &[&str] = &[
    "127.0.0.1",
    "::ffff:127.0.0.1",
    "::127.0.0.1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::1",
    "169.254.169.254",
    "::ffff:169.254.169.254",
    "10.0.0.1",
    "::ffff:10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "2001::1",
    "2001:db8::1",
    "64:ff9b::a00:1",
];

fn peer(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_permission_to_every_denied_address_gets_403_from_ipv4_and_ipv6_allocations() {
    let server = start_turn(|_| {}).await;
    let addr = server.addrs(turnpike::Transport::Udp)[0];
    for family in [1u8, 2] {
        let mut c = TurnClient::connect(addr).await;
        let relayed = c.allocate(Some(family)).await.expect("allocation");
        assert_eq!(relayed.is_ipv4(), family == 1);
        for ip in DENIED {
            assert_eq!(
                c.create_permission(peer(ip)).await,
                Err(403),
                "{ip} from family {family}"
            );
        }
        // The server's own listener is never a peer.
        assert_eq!(c.create_permission(addr).await, Err(403));
        // A public address of the allocation's family is fine: a permission
        // only, no datagram leaves the machine.
        let public = if family == 1 {
            "8.8.8.8"
        } else {
            "2606:4700:4700::1111"
        };
        assert_eq!(c.create_permission(peer(public)).await, Ok(()), "{public}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_loopback_peers_opens_loopback_only() {
    let server = start_turn(|c| c.allow_loopback_peers = true).await;
    let addr = server.addrs(turnpike::Transport::Udp)[0];
    let mut c = TurnClient::connect(addr).await;
    c.allocate(None).await.unwrap();
    assert_eq!(c.create_permission(peer("127.0.0.1")).await, Ok(()));
    assert_eq!(c.create_permission(peer("10.0.0.1")).await, Err(403));
    assert_eq!(c.create_permission(peer("0.0.0.0")).await, Err(403));
    assert_eq!(
        c.create_permission(addr).await,
        Err(403),
        "the TURN loop stays closed"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_allocation_over_user_quota_gets_486_until_one_is_freed() {
    let server = start_turn(|c| c.user_quota = 2).await;
    let addr = server.addrs(turnpike::Transport::Udp)[0];
    let mut first = TurnClient::connect(addr).await;
    let mut second = TurnClient::connect(addr).await;
    let mut third = TurnClient::connect(addr).await;
    first.allocate(None).await.unwrap();
    second.allocate(None).await.unwrap();
    assert_eq!(third.allocate(None).await, Err(486));
    assert_eq!(server.allocations(), 2);
    first.refresh(0).await.unwrap();
    assert!(third.allocate(None).await.is_ok());
    assert_eq!(server.allocations(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowing_every_address_still_refuses_loopback_link_local_and_metadata() {
    let server = start_turn(|c| {
        c.allowed_peer_ips = vec![
            IpRange::parse("0.0.0.0/0").unwrap(),
            IpRange::parse("::/0").unwrap(),
        ]
    })
    .await;
    let addr = server.addrs(turnpike::Transport::Udp)[0];
    for family in [1u8, 2] {
        let mut c = TurnClient::connect(addr).await;
        c.allocate(Some(family)).await.unwrap();
        for ip in [
            "127.0.0.1",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "169.254.169.254",
            "::ffff:169.254.169.254",
        ] {
            assert_eq!(
                c.create_permission(peer(ip)).await,
                Err(403),
                "{ip} from family {family}"
            );
        }
    }
    // What the list is for: private space the operator opened.
    let mut c = TurnClient::connect(addr).await;
    c.allocate(None).await.unwrap();
    assert_eq!(c.create_permission(peer("10.0.0.1")).await, Ok(()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_address_gets_max_allocations_per_ip_and_others_still_allocate() {
    let server = start_turn(|c| c.max_allocations_per_ip = 3).await;
    let addr = server.addrs(turnpike::Transport::Udp)[0];
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = TurnClient::connect(addr).await;
        c.allocate(None).await.unwrap();
        held.push(c);
    }
    let mut fourth = TurnClient::connect(addr).await;
    assert_eq!(fourth.allocate(None).await, Err(486));
    let mut other = TurnClient::connect_from(addr, "127.0.0.2:0").await;
    assert!(other.allocate(None).await.is_ok(), "another source");
    held[0].refresh(0).await.unwrap();
    assert!(fourth.allocate(None).await.is_ok(), "freed on delete");
    server.stop().await;
}

/// A network namespace made for one test and removed afterwards.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Self {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .status();
        run(&["ip", "netns", "add", &name]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn run(args: &[&str]) {
    let ok = std::process::Command::new(args[0])
        .args(&args[1..])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{args:?} failed");
}

/// F4: a wildcard listener answers on every local address, so each one,
/// on a listener port, is the server itself (a TURN loop), whatever the
/// allow list. Inside a namespace, an extra interface gives the host a
/// public-looking address of its own. (It is one end of a veth pair: the
/// kernels this runs on may lack the `dummy` driver.)
#[test]
fn wildcard_listener_refuses_its_own_interface_address_as_a_peer_on_a_listener_port() {
    let ns = Netns::new(format!("tpown{}", std::process::id()));
    let ip = |args: &[&str]| {
        let mut all = vec!["ip", "-n", &ns.0];
        all.extend_from_slice(args);
        run(&all);
    };
    ip(&["link", "set", "lo", "up"]);
    ip(&["link", "add", "x0", "type", "veth", "peer", "name", "x1"]);
    ip(&["addr", "add", "8.8.4.4/32", "dev", "x0"]);
    ip(&["link", "set", "x0", "up"]);
    ip(&["link", "set", "x1", "up"]);
    let path = format!("/run/netns/{}", ns.0);
    let outcome = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this thread only; threads it starts (the
        // server's workers) inherit the namespace.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server = start_turn(|c| {
                c.listen = vec!["0.0.0.0:0".parse().unwrap()];
                c.allowed_peer_ips = vec![IpRange::parse("0.0.0.0/0").unwrap()];
            })
            .await;
            let port = server.addrs(turnpike::Transport::Udp)[0].port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let mut c = TurnClient::connect(addr).await;
            c.allocate(Some(1)).await.unwrap();
            let own: SocketAddr = format!("8.8.4.4:{port}").parse().unwrap();
            let own_other_port: SocketAddr = format!("8.8.4.4:{}", port ^ 1).parse().unwrap();
            let stranger: SocketAddr = format!("8.8.8.8:{port}").parse().unwrap();
            let got = (
                c.create_permission(own).await,
                c.create_permission(own_other_port).await,
                c.create_permission(stranger).await,
            );
            server.stop().await;
            got
        })
    })
    .join()
    .unwrap();
    assert_eq!(outcome.0, Err(403), "own address on the listener port");
    assert_eq!(outcome.1, Ok(()), "other ports of the host stay open");
    assert_eq!(outcome.2, Ok(()), "another host on that port is fine");
}
