//! Issue 15's acceptance on three hosts: turnpike nodes in three network
//! namespaces sharing one PostgreSQL (the lab in fleet_lab.rs).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use turnpike::stun::Class;

use crate::fleet::{allocate, exchange, nonce_of};
use crate::fleet_lab::{name_of, turn_addr, within, Lab, ROOT_IP};
use crate::turn_client::TurnClient;
use crate::{PASSWORD, USER};

/// A client in the root namespace, speaking from the bridge address.
async fn client(node: char, user: &str, password: &str) -> TurnClient {
    TurnClient::connect_with(turn_addr(node), &format!("{ROOT_IP}:0"), user, password).await
}

/// Creates the test user through `node`'s API.
async fn add_user(lab: &Lab, node: char, user: &str, password: &str) {
    let body = format!(r#"{{"username":"{user}","password":"{password}"}}"#);
    let (status, v) = lab.api(node, "POST", "/api/v1/users", Some(&body)).await;
    assert_eq!(status, 201, "{v}");
}

/// Every node as `from` sees it is `state`.
async fn all_are(lab: &Lab, from: char, state: &str) -> bool {
    let s = lab.states(from).await;
    s.len() == 3 && s.iter().all(|(_, st)| st == state)
}

/// `node`'s state in `from`'s registry view.
async fn state_of(lab: &Lab, from: char, node: char) -> String {
    lab.states(from)
        .await
        .into_iter()
        .find(|(n, _)| *n == name_of(node))
        .map(|(_, s)| s)
        .unwrap_or_default()
}

/// Sends `data` through the client's relay to `peer` and checks it comes
/// out of the relayed address.
async fn relays(c: &mut TurnClient, relayed: SocketAddr, peer: &UdpSocket, data: &[u8]) -> bool {
    c.send_to_peer(peer.local_addr().unwrap(), data).await;
    let mut buf = [0u8; 1500];
    match tokio::time::timeout(Duration::from_secs(2), peer.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => from == relayed && &buf[..n] == data,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_users_and_nonces_and_a_node_cut_from_the_database_keeps_serving() {
    let Some(mut lab) = Lab::up("lab_shared").await else {
        return;
    };
    lab.start('a', "eu", "").await;
    lab.start('b', "eu", "").await;
    lab.start('c', "us", "").await;
    assert!(
        within(Duration::from_secs(8), || all_are(&lab, 'b', "ready"))
            .await
            .is_some(),
        "three ready nodes: {:?}",
        lab.states('b').await
    );

    // A user created through A authenticates on C within 1 s.
    add_user(&lab, 'a', USER, PASSWORD).await;
    let created = Instant::now();
    let mut on_c = loop {
        let mut c = client('c', USER, PASSWORD).await;
        if c.allocate(None).await.is_ok() {
            break c;
        }
        assert!(
            created.elapsed() < Duration::from_secs(1),
            "C did not know the user within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seen = created.elapsed();
    assert!(
        seen <= Duration::from_secs(1),
        "user seen on C after {seen:?}"
    );
    on_c.refresh(0).await.unwrap();

    // A nonce from A is accepted by B.
    let (a, b) = (turn_addr('a'), turn_addr('b'));
    tokio::task::spawn_blocking(move || {
        let sock = std::net::UdpSocket::bind(format!("{ROOT_IP}:0")).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let (_, code, answer) = exchange(&sock, a, &allocate(1, None));
        assert_eq!(code, Some(401));
        let (class, code, _) = exchange(&sock, b, &allocate(2, Some(&nonce_of(&answer))));
        assert_eq!(
            (class, code),
            (Class::SuccessResponse, None),
            "B takes A's nonce"
        );
    })
    .await
    .unwrap();

    // Cut A off from PostgreSQL: it keeps relaying and authenticating
    // known users; the others call it down within 10 s; healed, it is
    // ready again.
    let peer = UdpSocket::bind(format!("{ROOT_IP}:0")).await.unwrap();
    let mut on_a = client('a', USER, PASSWORD).await;
    let relayed = on_a.allocate(None).await.unwrap();
    on_a.create_permission(peer.local_addr().unwrap())
        .await
        .unwrap();
    assert!(relays(&mut on_a, relayed, &peer, b"before the cut").await);
    lab.cut('a');
    let cut = Instant::now();
    assert!(relays(&mut on_a, relayed, &peer, b"during the cut").await);
    let mut again = client('a', USER, PASSWORD).await;
    assert!(again.allocate(None).await.is_ok(), "A still authenticates");
    // A's writes answer 503 and change nothing.
    let asked = Instant::now();
    let (status, v) = lab
        .api(
            'a',
            "POST",
            "/api/v1/users",
            Some(r#"{"username":"late","password":"pw"}"#),
        )
        .await;
    assert_eq!(status, 503, "{v}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    within(Duration::from_secs(12), || async {
        state_of(&lab, 'b', 'a').await == "down"
    })
    .await
    .expect("B calls A down");
    let down = cut.elapsed();
    // 10 s after its last heartbeat, which came before the cut; the
    // rest is this poll's 100 ms step.
    assert!(
        down <= Duration::from_millis(10_500),
        "A down after {down:?}"
    );
    eprintln!("A down in B's view {down:?} after the cut");
    assert!(relays(&mut on_a, relayed, &peer, b"still during the cut").await);
    let a_sessions = |from: char| {
        let lab = &lab;
        async move {
            let (status, v) = lab
                .api(
                    from,
                    "GET",
                    &format!("/api/v1/sessions?node={}", name_of('a')),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{v}");
            v["sessions"].as_array().unwrap().len()
        }
    };
    assert_eq!(
        a_sessions('b').await,
        0,
        "a down node's sessions are not listed"
    );
    lab.heal('a');
    let back = within(Duration::from_secs(10), || async {
        state_of(&lab, 'c', 'a').await == "ready"
    })
    .await;
    assert!(
        back.is_some(),
        "A ready again: {:?}\n{}",
        lab.states('c').await,
        lab.log('a')
    );
    assert!(relays(&mut on_a, relayed, &peer, b"after healing").await);
    // Its sessions reappear in the others' view.
    let listed = within(Duration::from_secs(6), || async {
        a_sessions('b').await == 2
    })
    .await;
    assert!(listed.is_some(), "A's two sessions listed by B again");
    let (status, _) = lab
        .api(
            'a',
            "POST",
            "/api/v1/users",
            Some(r#"{"username":"late","password":"pw"}"#),
        )
        .await;
    assert_eq!(status, 201, "writes work again");
}

/// Session entries `from` lists (optionally `?node=`), as (id, node, user).
async fn sessions(lab: &Lab, from: char, query: &str) -> Vec<(String, String, String)> {
    let (status, v) = lab
        .api(from, "GET", &format!("/api/v1/sessions{query}"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["node"].as_str().unwrap_or_default().to_string(),
                s["user"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The node names `/api/v1/credentials` on `from` chooses for `body`.
async fn chosen(lab: &Lab, from: char, body: &str) -> Vec<String> {
    let (status, v) = lab
        .api(from, "POST", "/api/v1/credentials", Some(body))
        .await;
    assert_eq!(status, 200, "{v}");
    v["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no \"nodes\": {v}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// turnutils_uclient in the root namespace against `node` as
/// "uclient-user" (it holds two allocations): one client,
/// `messages` every 25 ms to the echo peer.
fn uclient(node: char, peer_port: u16, messages: u32) -> crate::coturn::Child {
    let child = std::process::Command::new("turnutils_uclient")
        .args([
            "-u",
            "uclient-user",
            "-w",
            "uclient-pass",
            "-c",
            "-m",
            "1",
            "-z",
            "25",
        ])
        .args(["-n", &messages.to_string(), "-e", ROOT_IP, "-r"])
        .arg(peer_port.to_string())
        .arg(crate::fleet_lab::ip_of(node))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::coturn::Child(child)
}

/// coturn's echo peer on the bridge address.
fn lab_peer() -> (crate::coturn::Child, u16) {
    let port = std::net::UdpSocket::bind(format!("{ROOT_IP}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("turnutils_peer")
        .args(["-L", ROOT_IP, "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    (crate::coturn::Child(child), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_quotas_and_node_choice_hold_across_three_hosts() {
    use crate::fleet_lab::{LabClient, Outcome};
    let Some(mut lab) = Lab::up("lab_view").await else {
        return;
    };
    let secret = lab.secret_file("rest.secret", "lab-rest-secret");
    let extra = format!("user_quota = 2\nstatic_auth_secret_file = [\"{secret}\"]");
    for (node, region) in [('a', "eu"), ('b', "eu"), ('c', "us")] {
        lab.start(node, region, &extra).await;
    }
    assert!(
        within(Duration::from_secs(8), || all_are(&lab, 'a', "ready"))
            .await
            .is_some()
    );
    add_user(&lab, 'a', USER, PASSWORD).await;
    add_user(&lab, 'a', "quota-user", "quota-pass").await;
    add_user(&lab, 'a', "load-user", "load-pass").await;
    add_user(&lab, 'a', "uclient-user", "uclient-pass").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A live turnutils_uclient session on A is listed by B with its node.
    let (_peer, peer_port) = lab_peer();
    let _uclient = uclient('a', peer_port, 600);
    let listed = within(Duration::from_secs(6), || async {
        sessions(&lab, 'b', "")
            .await
            .iter()
            .any(|(_, node, user)| node == &name_of('a') && user == "uclient-user")
    })
    .await;
    assert!(
        listed.is_some(),
        "B lists A's uclient session: {:?}",
        sessions(&lab, 'b', "").await
    );
    assert!(sessions(&lab, 'b', &format!("?node={}", name_of('c')))
        .await
        .is_empty());

    // DELETE through B ends a session on A; the client's next Refresh: 437.
    let mut raw = LabClient::new(turn_addr('a'), USER, PASSWORD).await;
    let got = raw.allocate().await;
    assert!(
        matches!(got, Outcome::Allocated(_)),
        "{got:?} {:?}",
        sessions(&lab, 'a', "").await
    );
    // B lists the raw client's session too (uclient holds two).
    let mine = within(Duration::from_secs(6), || async {
        sessions(&lab, 'b', &format!("?node={}", name_of('a')))
            .await
            .iter()
            .any(|(_, _, user)| user == USER)
    })
    .await;
    assert!(mine.is_some());
    let before: Vec<String> = sessions(&lab, 'a', "")
        .await
        .into_iter()
        .map(|s| s.0)
        .collect();
    // The raw client's session is the newest of A's two.
    let listed_b = sessions(&lab, 'b', &format!("?node={}", name_of('a'))).await;
    let ids: Vec<&String> = listed_b.iter().map(|s| &s.0).collect();
    assert!(
        before.iter().all(|id| ids.contains(&id)),
        "same ids fleet-wide: {before:?} {ids:?}"
    );
    for id in &before {
        let (status, v) = lab
            .api('b', "DELETE", &format!("/api/v1/sessions/{id}"), None)
            .await;
        assert_eq!(status, 204, "{v}");
    }
    let deleted = Instant::now();
    let ended = within(Duration::from_secs(3), || async {
        sessions(&lab, 'a', &format!("?node={}", name_of('a')))
            .await
            .is_empty()
    })
    .await;
    assert!(
        ended.is_some() && deleted.elapsed() <= Duration::from_secs(3),
        "deleted {before:?}, A still lists {:?}",
        sessions(&lab, 'a', "").await
    );
    assert_eq!(
        raw.refresh(600).await,
        Err(437),
        "the next Refresh after the DELETE"
    );

    // Node choice: A loaded, B idle: B first; region us: C first.
    let mut load = Vec::new();
    for _ in 0..2 {
        let mut c = LabClient::new(turn_addr('a'), "load-user", "load-pass").await;
        assert!(matches!(c.allocate().await, Outcome::Allocated(_)));
        load.push(c);
    }
    let b_first = within(Duration::from_secs(6), || async {
        chosen(&lab, 'c', r#"{"user":"web","ttl":600,"region":"eu"}"#)
            .await
            .first()
            == Some(&name_of('b'))
    })
    .await;
    assert!(
        b_first.is_some(),
        "{:?}",
        chosen(&lab, 'c', r#"{"user":"web","ttl":600,"region":"eu"}"#).await
    );
    let us = chosen(&lab, 'a', r#"{"user":"web","ttl":600,"region":"us"}"#).await;
    assert_eq!(us.first(), Some(&name_of('c')), "{us:?}");
    assert_eq!(us.len(), 2, "a fallback node: {us:?}");
    let me = chosen(&lab, 'a', r#"{"user":"web","ttl":600,"node":"self"}"#).await;
    assert_eq!(me.first(), Some(&name_of('a')));

    // user_quota = 2 holds fleet-wide.
    let mut q: Vec<LabClient> = Vec::new();
    for node in ['a', 'b'] {
        let mut c = LabClient::new(turn_addr(node), "quota-user", "quota-pass").await;
        assert!(
            matches!(c.allocate().await, Outcome::Allocated(_)),
            "on {node}"
        );
        q.push(c);
    }
    for node in ['a', 'b', 'c'] {
        let mut c = LabClient::new(turn_addr(node), "quota-user", "quota-pass").await;
        match c.allocate().await {
            Outcome::Refused(486, _) => {}
            other => panic!("the third allocation on {node}: {other:?}"),
        }
    }
    q[0].refresh(0).await.unwrap();
    // The release is written just after the Refresh is answered.
    let deleted = Instant::now();
    let mut on_c = LabClient::new(turn_addr('c'), "quota-user", "quota-pass").await;
    let mut got = on_c.allocate().await;
    while matches!(got, Outcome::Refused(486, _)) && deleted.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        got = on_c.allocate().await;
    }
    assert!(
        matches!(got, Outcome::Allocated(_)),
        "after a delete: {got:?}"
    );

    // A killed node releases its quota within 15 s: C holds one of
    // quota-user's two (B the other).
    lab.signal('c', "KILL");
    let killed = Instant::now();
    let freed = within(Duration::from_secs(16), || async {
        let mut c = LabClient::new(turn_addr('a'), "quota-user", "quota-pass").await;
        matches!(c.allocate().await, Outcome::Allocated(_))
    })
    .await;
    assert!(freed.is_some(), "quota freed after a SIGKILL");
    assert!(
        killed.elapsed() <= Duration::from_secs(15),
        "{:?}",
        killed.elapsed()
    );
}

/// The TURN address of the first `turn:` UDP URL of the first iceServers
/// entry of a credentials answer.
fn first_turn_addr(v: &serde_json::Value) -> SocketAddr {
    let urls = v["iceServers"][0]["urls"].as_array().unwrap();
    urls.iter()
        .filter_map(|u| u.as_str())
        .filter_map(|u| u.strip_prefix("turn:"))
        .find(|u| !u.contains("transport=tcp"))
        .map(|u| u.split('?').next().unwrap().parse().unwrap())
        .unwrap_or_else(|| panic!("no turn: UDP URL in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_sends_new_clients_elsewhere_and_a_rolling_restart_fails_no_allocate() {
    use crate::fleet_lab::{admin_addr, try_http, LabClient, Outcome};
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    let Some(mut lab) = Lab::up("lab_drain").await else {
        return;
    };
    let secret = lab.secret_file("rest.secret", "lab-rest-secret");
    let extra = format!("static_auth_secret_file = [\"{secret}\"]");
    for node in ['a', 'b', 'c'] {
        lab.start(node, "eu", &extra).await;
    }
    assert!(
        within(Duration::from_secs(8), || all_are(&lab, 'a', "ready"))
            .await
            .is_some()
    );
    add_user(&lab, 'a', USER, PASSWORD).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // B's existing allocation, then B drains.
    let peer = UdpSocket::bind(format!("{ROOT_IP}:0")).await.unwrap();
    let mut held = client('b', USER, PASSWORD).await;
    let relayed = held.allocate(None).await.unwrap();
    held.create_permission(peer.local_addr().unwrap())
        .await
        .unwrap();
    let (status, v) = lab.api('b', "POST", "/api/v1/drain", Some("{}")).await;
    assert!(status < 300, "{status} {v}");
    let mut fresh = LabClient::new(turn_addr('b'), USER, PASSWORD).await;
    match fresh.allocate().await {
        Outcome::Alternate(to) => assert!(to == turn_addr('a') || to == turn_addr('c'), "{to}"),
        other => panic!("a new Allocate on a draining node: {other:?}"),
    }
    // Headless Chromium given only B's URL follows the 300 and ends
    // relay/relay through the alternate.
    let line = crate::browser::run_page(format!(
        r#"[{{"urls":["turn:{}?transport=udp"],"username":"{USER}","credential":"{PASSWORD}"}}]"#,
        turn_addr('b')
    ))
    .await;
    let page: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(page["ok"], true, "{line}");
    let relay = page["localAddress"].as_str().unwrap_or_default();
    assert!(
        relay.starts_with("10.88.0.11:") || relay.starts_with("10.88.0.13:"),
        "Chromium's relay is on A or C: {line}"
    );
    let (status, body) = crate::admin::http(admin_addr('b'), "GET", "/readyz", None, None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    held.refresh(600).await.unwrap();
    assert!(relays(&mut held, relayed, &peer, b"while draining").await);
    // The credential API avoids B now.
    let picked = within(Duration::from_secs(5), || async {
        !chosen(&lab, 'a', r#"{"user":"web","ttl":600}"#)
            .await
            .contains(&name_of('b'))
    })
    .await;
    assert!(picked.is_some());
    // B exits 0 when its last allocation goes.
    held.refresh(0).await.unwrap();
    assert_eq!(
        lab.exited('b', Duration::from_secs(10)).await,
        Some(0),
        "{}",
        lab.log('b')
    );
    lab.start('b', "eu", &extra).await;
    assert!(
        within(Duration::from_secs(8), || all_are(&lab, 'a', "ready"))
            .await
            .is_some()
    );

    // A rolling restart under 20 clients allocating through the credential
    // API: each retries once on 300, as browsers do; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU32::new(0));
    let mut clients = Vec::new();
    for i in 0..20u32 {
        let (stop, ok) = (stop.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut round = 0u32;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                // Any node whose API answers hands out credentials.
                let mut creds = None;
                for k in 0..3 {
                    let node = (b'a' + ((i + round + k) % 3) as u8) as char;
                    let body = format!(r#"{{"user":"rolling{i}","ttl":600}}"#);
                    let answer =
                        try_http(admin_addr(node), "POST", "/api/v1/credentials", &body).await;
                    if let Some((200, text)) = answer {
                        creds = serde_json::from_str::<serde_json::Value>(&text).ok();
                        break;
                    }
                }
                let Some(v) = creds else {
                    failures.push("no node handed out credentials".to_string());
                    continue;
                };
                let (user, pass) = (
                    v["username"].as_str().unwrap(),
                    v["password"].as_str().unwrap(),
                );
                let mut c = LabClient::new(first_turn_addr(&v), user, pass).await;
                let mut outcome = c.allocate().await;
                if let Outcome::Alternate(to) = outcome {
                    c = LabClient::new(to, user, pass).await;
                    outcome = c.allocate().await;
                }
                match outcome {
                    Outcome::Allocated(_) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        let _ = c.refresh(0).await;
                    }
                    other => failures.push(format!("{other:?} from {}", first_turn_addr(&v))),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            failures
        }));
    }
    for node in ['a', 'b', 'c'] {
        let (status, v) = lab
            .api(node, "POST", "/api/v1/drain", Some(r#"{"deadline_s": 30}"#))
            .await;
        assert!(status < 300, "{status} {v}");
        assert_eq!(
            lab.exited(node, Duration::from_secs(40)).await,
            Some(0),
            "{node} exits after its drain:\n{}",
            lab.log(node)
        );
        lab.start(node, "eu", &extra).await;
        let ready = within(Duration::from_secs(8), || async {
            state_of(&lab, node, node).await == "ready"
        })
        .await;
        assert!(ready.is_some(), "{node} back");
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    let ok = ok.load(Ordering::Relaxed);
    eprintln!(
        "rolling restart: {ok} allocations, {} failures",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert!(ok >= 60, "clients kept allocating: {ok}");
}
