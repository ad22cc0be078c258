//! Issue 7: RFC 5780 server mode against coturn's turnutils_natdiscovery
//! and turnutils_stunclient, `turnpike probe nat` against coturn and
//! turnpike, the server rules on the wire, and NAT emulation in network
//! namespaces.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use turnpike::nat::ChangeRequest;
use turnpike::stun::attributes::{decode_address, decode_xor_address, AttributeType};
use turnpike::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};
use turnpike::{Running, Transport};

use crate::start_turn;

fn turnpike() -> Command {
    Command::new(env!("CARGO_BIN_EXE_turnpike"))
}

/// A turnpike serving RFC 5780 on 127.0.0.1 with 127.0.0.2 as alt_ip.
pub(crate) async fn rfc5780_turn(
    adjust: impl FnOnce(&mut turnpike::Config),
) -> (Running, SocketAddr) {
    let server = start_turn(|c| {
        c.rfc5780 = true;
        c.alt_ip = Some("127.0.0.2".parse().unwrap());
        adjust(c);
    })
    .await;
    let primary = server.addrs(Transport::Udp)[0];
    (server, primary)
}

/// The alternate address: 127.0.0.2 with the alternate port.
pub(crate) fn alternate(server: &Running, primary: SocketAddr) -> SocketAddr {
    *server
        .addrs(Transport::Udp)
        .iter()
        .find(|a| a.ip() != primary.ip() && a.port() != primary.port())
        .expect("four RFC 5780 sockets")
}

pub(crate) struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// coturn's turnserver with two listening IPs (RFC 5780 on, as Debian's
/// 4.6.1 does then) on 127.0.0.1 and 127.0.0.2 at a free port.
pub(crate) fn coturn_5780() -> (Child, u16) {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!(
        "turnpike-coturn-5780-{}-{port}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new("turnserver")
        .args([
            "-n",
            "--listening-ip",
            "127.0.0.1",
            "--listening-ip",
            "127.0.0.2",
        ])
        .args(["--listening-port", &port.to_string()])
        .args(["--no-tls", "--no-dtls", "--no-tcp", "--no-cli", "--no-auth"])
        .args(["--log-file", "stdout", "--simple-log"])
        .arg("--db")
        .arg(dir.join("turndb"))
        .arg("--pidfile")
        .arg(dir.join("turn.pid"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnserver is installed (scripts/test.sh)");
    // Ready once it logs its listeners; a bounded read.
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut n = 0;
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("IPv4. UDP listener opened on") || line.contains("listener opened on")
            {
                n += 1;
                if n == 2 {
                    let _ = tx.send(());
                }
            }
        }
    });
    let _ = rx.recv_timeout(Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    (Child(child), port)
}

pub(crate) fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// natdiscovery's mapping and filtering verdicts, in RFC 4787's words.
fn natdiscovery(args: &[&str], server: &str, port: u16) -> (String, String, String) {
    let mut cmd = Command::new("timeout");
    cmd.args(["30"]).args(args).arg("turnutils_natdiscovery");
    cmd.args(["-m", "-f", "-p", &port.to_string(), server]);
    let (_, out, err) = output(&mut cmd);
    let text = out + &err;
    let verdict = |kind: &str| {
        for (said, ours) in [
            ("Endpoint Independent", "endpoint-independent"),
            ("Address and Port Dependent", "address-and-port-dependent"),
            ("Address Dependent", "address-dependent"),
        ] {
            if text.contains(&format!("NAT with {said} {kind}!")) {
                return ours.to_string();
            }
        }
        panic!("natdiscovery gave no {kind} verdict:\n{text}");
    };
    (verdict("Mapping"), verdict("Filtering"), text)
}

/// `turnpike probe nat --json`: exit code and the JSON object.
pub(crate) fn probe_json(
    prefix: &[&str],
    url: &str,
    extra: &[&str],
) -> (i32, serde_json::Value, String) {
    let mut cmd = if prefix.is_empty() {
        turnpike()
    } else {
        let mut c = Command::new(prefix[0]);
        c.args(&prefix[1..]).arg(env!("CARGO_BIN_EXE_turnpike"));
        c
    };
    cmd.args(["probe", "nat", url, "--json"]).args(extra);
    let (code, out, err) = output(&mut cmd);
    let v = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, v, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natdiscovery_and_stunclient_find_turnpikes_alternate_address() {
    let (server, primary) = rfc5780_turn(|_| {}).await;
    let alt = alternate(&server, primary);
    let port = primary.port();
    let (mapping, filtering, text) =
        tokio::task::spawn_blocking(move || natdiscovery(&[], "127.0.0.1", port))
            .await
            .unwrap();
    assert!(text.contains(&format!("Other addr: : {alt}")), "{text}");
    assert_eq!(mapping, "endpoint-independent", "{text}");
    assert_eq!(filtering, "endpoint-independent", "{text}");

    let (_, out, err) = tokio::task::spawn_blocking(move || {
        output(Command::new("timeout").args([
            "10",
            "turnutils_stunclient",
            "-p",
            &port.to_string(),
            "127.0.0.1",
        ]))
    })
    .await
    .unwrap();
    let text = out + &err;
    assert!(text.contains(&format!("Other addr: : {alt}")), "{text}");
    assert!(
        text.contains(&format!("Response origin: : {primary}")),
        "{text}"
    );
    assert!(text.contains("UDP reflexive addr: 127.0.0.1:"), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_nat_agrees_with_natdiscovery_against_coturn_and_turnpike() {
    let (server, primary) = rfc5780_turn(|_| {}).await;
    let alt = alternate(&server, primary);
    let ours = primary.port();
    tokio::task::spawn_blocking(move || {
        let (_coturn, theirs) = coturn_5780();
        for (port, other) in [(ours, alt.to_string()), (theirs, String::new())] {
            let (mapping, filtering, text) = natdiscovery(&[], "127.0.0.1", port);
            let (code, v, err) = probe_json(&[], &format!("stun:127.0.0.1:{port}"), &[]);
            assert_eq!(code, 0, "{v}\n{err}");
            assert_eq!(v["ok"], true);
            assert_eq!(v["mapping"], mapping.as_str(), "{v}\n{text}");
            assert_eq!(v["filtering"], filtering.as_str(), "{v}\n{text}");
            assert_eq!(v["mapped"], v["local"], "loopback: no NAT");
            assert!(
                v["other_address"]
                    .as_str()
                    .unwrap()
                    .starts_with("127.0.0.2:"),
                "{v}"
            );
            if !other.is_empty() {
                assert_eq!(v["other_address"], other.as_str());
            }
        }
    })
    .await
    .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_nat_fails_with_the_reason_when_the_server_lacks_rfc5780_or_is_silent() {
    let server = start_turn(|_| {}).await;
    let port = server.addrs(Transport::Udp)[0].port();
    tokio::task::spawn_blocking(move || {
        let (code, v, err) = probe_json(&[], &format!("stun:127.0.0.1:{port}"), &[]);
        assert_ne!(code, 0);
        assert_eq!(v["error"], "no-rfc5780", "{v}");
        assert!(
            err.contains("RFC 5780") && err.lines().count() == 1,
            "{err}"
        );

        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let url = format!("stun:{}", silent.local_addr().unwrap());
        let (code, v, err) = probe_json(&[], &url, &["--timeout", "1"]);
        assert_ne!(code, 0);
        assert_eq!(v["error"], "no-answer", "{v}");
        assert!(
            err.starts_with("error: ") && err.contains("no answer"),
            "{err}"
        );

        let (code, _, err) = output(turnpike().args(["probe", "nat", "turn:127.0.0.1"]));
        assert_eq!(code, 2);
        assert!(err.contains("not a stun: URL"), "{err}");
    })
    .await
    .unwrap();
    server.stop().await;
}

fn binding_request(buf: &mut [u8], txid: u8, attrs: impl FnOnce(&mut MessageBuilder<'_>)) -> usize {
    let mut b = MessageBuilder::new(
        buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId([txid; 12]),
    );
    attrs(&mut b);
    b.finish().unwrap()
}

/// Sends a request from `sock` and returns where the answer came from and
/// its RESPONSE-ORIGIN, OTHER-ADDRESS, XOR-MAPPED-ADDRESS and length.
fn exchange(
    sock: &UdpSocket,
    to: SocketAddr,
    req: &[u8],
) -> (SocketAddr, SocketAddr, SocketAddr, SocketAddr, usize) {
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    sock.send_to(req, to).unwrap();
    let mut buf = [0u8; 4096];
    let (n, from) = sock.recv_from(&mut buf).expect("an answer");
    let m = Message::parse(&buf[..n]).unwrap();
    assert_eq!(m.class(), Class::SuccessResponse);
    let get = |t| decode_address(m.get(t).unwrap()).unwrap();
    let mapped = decode_xor_address(
        m.get(AttributeType::XOR_MAPPED_ADDRESS).unwrap(),
        &m.transaction_id(),
    )
    .unwrap();
    (
        from,
        get(AttributeType::RESPONSE_ORIGIN),
        get(AttributeType::OTHER_ADDRESS),
        mapped,
        n,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_request_response_port_and_padding_are_answered_from_the_right_socket() {
    let (server, primary) = rfc5780_turn(|_| {}).await;
    let alt = alternate(&server, primary);
    tokio::task::spawn_blocking(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let me = sock.local_addr().unwrap();
        let mut req = [0u8; 2048];
        let cases = [
            (ChangeRequest::NONE, primary),
            (ChangeRequest::IP, SocketAddr::new(alt.ip(), primary.port())),
            (
                ChangeRequest::PORT,
                SocketAddr::new(primary.ip(), alt.port()),
            ),
            (ChangeRequest::IP_AND_PORT, alt),
        ];
        for (k, (change, expected)) in cases.into_iter().enumerate() {
            let n = binding_request(&mut req, k as u8, |b| {
                b.add(AttributeType::CHANGE_REQUEST, &change.encode())
            });
            let (from, origin, other, mapped, _) = exchange(&sock, primary, &req[..n]);
            assert_eq!(from, expected, "{change:?}");
            assert_eq!(origin, expected, "RESPONSE-ORIGIN names the sender");
            assert_eq!(other, alt, "OTHER-ADDRESS");
            assert_eq!(mapped, me);
        }
        // Sent to the alternate address, OTHER-ADDRESS is the primary.
        let n = binding_request(&mut req, 9, |_| {});
        let (from, _, other, _, _) = exchange(&sock, alt, &req[..n]);
        assert_eq!((from, other), (alt, primary));

        // RESPONSE-PORT: the answer goes to the source IP at that port.
        let elsewhere = UdpSocket::bind("127.0.0.1:0").unwrap();
        elsewhere
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let port = elsewhere.local_addr().unwrap().port();
        let n = binding_request(&mut req, 10, |b| {
            b.add(
                AttributeType::RESPONSE_PORT,
                &[(port >> 8) as u8, port as u8, 0, 0],
            )
        });
        sock.send_to(&req[..n], primary).unwrap();
        let mut buf = [0u8; 512];
        let (_, from) = elsewhere
            .recv_from(&mut buf)
            .expect("answer at RESPONSE-PORT");
        assert_eq!(from, primary);

        // PADDING: the answer is padded too (large-packet test).
        let n = binding_request(&mut req, 11, |b| {
            b.add(AttributeType::PADDING, &[0u8; 1000])
        });
        let (_, _, _, _, len) = exchange(&sock, primary, &req[..n]);
        assert!(len >= 1000, "padded answer, {len} bytes");
    })
    .await
    .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5780_answers_spend_the_per_source_budget_like_401s() {
    let (server, primary) = rfc5780_turn(|c| c.auth_reply_rate = 5).await;
    let answered = tokio::task::spawn_blocking(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut req = [0u8; 64];
        for k in 0..60u8 {
            let n = binding_request(&mut req, k, |_| {});
            sock.send_to(&req[..n], primary).unwrap();
        }
        sock.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let mut buf = [0u8; 512];
        let mut answered = 0;
        while sock.recv_from(&mut buf).is_ok() {
            answered += 1;
        }
        answered
    })
    .await
    .unwrap();
    // A burst of twice the rate, plus what trickles in meanwhile.
    assert!((8..=14).contains(&answered), "{answered} of 60 answered");
    server.stop().await;
}

#[test]
fn rfc5780_without_a_second_address_refuses_to_start() {
    let (code, _, err) = output(turnpike().args(["serve", "--rfc5780", "--listen", "127.0.0.1:0"]));
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("rfc5780") && err.contains("alt_ip"), "{err}");
}

/// Removes the namespaces even when an assertion fails.
pub(crate) struct Namespaces(&'static str);

impl Namespaces {
    pub(crate) fn up(prefix: &'static str, mode: &str) -> Namespaces {
        let ns = Namespaces(prefix);
        let ok = ns.script(&["up", mode]);
        assert!(
            ok,
            "nat_setup.sh up {mode} failed (root, iproute2 and nftables needed)"
        );
        ns
    }

    fn script(&self, args: &[&str]) -> bool {
        Command::new("sh")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/netns/nat_setup.sh"
            ))
            .args(args)
            .env("TP_PREFIX", self.0)
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.script(&["down"]);
    }
}

/// turnpike in the server namespace on 10.0.2.2, alt_ip 10.0.2.3; returns
/// once its four RFC 5780 sockets are bound.
pub(crate) fn turnpike_in(ns: &str) -> Child {
    let db = crate::temp_db();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_turnpike"), "serve"])
        .args([
            "--listen",
            "10.0.2.2:3478",
            "--rfc5780",
            "--alt-ip",
            "10.0.2.3",
        ])
        .args([
            "--db",
            &db,
            "--admin-listen",
            "127.0.0.1:0",
            "--workers",
            "1",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains("listening udp 10.0.2.3:3479") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("turnpike listens in the namespace");
    Child(child)
}

#[test]
fn nat_emulation_masquerade_and_fully_random_masquerade_are_told_apart() {
    for (mode, mapping) in [
        ("masq", "endpoint-independent"),
        ("random", "address-and-port-dependent"),
    ] {
        let ns = Namespaces::up("tpk", mode);
        let _server = turnpike_in("tpks");
        let client = ["ip", "netns", "exec", "tpkc"];
        let (code, v, err) = probe_json(&client, "stun:10.0.2.2", &["--timeout", "2"]);
        assert_eq!(code, 0, "{mode}: {v}\n{err}");
        assert_eq!(v["nat"], true, "{mode}: {v}");
        assert_eq!(v["mapping"], mapping, "{mode}: {v}");
        assert_eq!(v["filtering"], "address-and-port-dependent", "{mode}: {v}");
        assert!(
            v["mapped"].as_str().unwrap().starts_with("10.0.2.1:"),
            "{v}"
        );
        // coturn's client sees the same NAT the same way.
        let (m, f, text) = natdiscovery(&client, "10.0.2.2", 3478);
        assert_eq!(
            (m.as_str(), f.as_str()),
            (mapping, "address-and-port-dependent"),
            "{text}"
        );
        drop(_server);
        drop(ns);
    }
    let left = output(Command::new("ip").args(["netns", "list"])).1;
    assert!(!left.contains("tpk"), "namespaces removed: {left}");
}
