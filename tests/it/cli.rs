//! The `turnpike` binary: config validation, defaults, serve and signals.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::free_port;
use turnpike::stun::attributes::{decode_xor_address, AttributeType};
use turnpike::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};

pub(crate) fn turnpike() -> Command {
    Command::new(env!("CARGO_BIN_EXE_turnpike"))
}

fn temp_file(contents: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "turnpike-test-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, contents).unwrap();
    path
}

/// Runs `config check` on `contents`; returns (exit code, stderr).
fn check(contents: &str) -> (i32, String) {
    let path = temp_file(contents);
    let out = turnpike()
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).ok();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn assert_one_line_error(contents: &str, key: &str) {
    let (code, err) = check(contents);
    assert_ne!(code, 0, "{contents:?} was accepted");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.contains(key), "{err:?} does not name {key}");
}

#[test]
fn config_default_prints_a_file_that_checks() {
    let out = turnpike().args(["config", "default"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = [\"0.0.0.0:3478\", \"[::]:3478\"]"));
    let (code, err) = check(&text);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn bad_config_values_exit_non_zero_with_one_line_naming_the_key() {
    assert_one_line_error("min_port = 70000\n", "min_port");
    assert_one_line_error("max_port = 70000\n", "max_port");
    assert_one_line_error("listen = [\"0.0.0.0:70000\"]\n", "listen");
    assert_one_line_error("min_port = 60000\nmax_port = 50000\n", "min_port");
    assert_one_line_error("relay_threads = 4\n", "relay_threads");
    assert_one_line_error("log_level = \"chatty\"\n", "log_level");
    assert_one_line_error("log_format = \"xml\"\n", "log_format");
    assert_one_line_error("listen = 3478\n", "listen");
    assert_one_line_error("this is not toml", "");
}

#[test]
fn unreadable_config_file_exits_non_zero_with_one_line() {
    let out = turnpike()
        .args(["serve", "--config", "/nonexistent/turnserver.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/turnserver.toml"), "{err}");
}

#[test]
fn a_port_another_program_holds_exits_non_zero_with_one_line_naming_it() {
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let db = crate::temp_db();
    let out = turnpike()
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--admin-listen",
            "off",
        ])
        .args(["--db", &db])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    let last = err.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!("error: cannot bind udp {addr}: Address already in use (os error 98)"),
        "{err}"
    );
}

#[test]
fn bad_flag_values_exit_non_zero_naming_the_key() {
    let out = turnpike()
        .args(["serve", "--min-port", "70000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("min_port"), "{err}");
}

fn binding(sock: &UdpSocket, to: std::net::SocketAddr) -> std::net::SocketAddr {
    let mut buf = [0u8; 64];
    let b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId([3; 12]),
    );
    let n = b.finish().unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(&buf[..n], to).unwrap();
    let mut resp = [0u8; 512];
    let (n, _) = sock.recv_from(&mut resp).unwrap();
    let msg = Message::parse(&resp[..n]).unwrap();
    decode_xor_address(
        msg.get(AttributeType::XOR_MAPPED_ADDRESS).unwrap(),
        &msg.transaction_id(),
    )
    .unwrap()
}

/// Starts `turnpike serve ARGS`, returns the child and the addresses its
/// "listening udp" lines name.
pub(crate) fn spawn_serve(
    args: &[&str],
) -> (
    std::process::Child,
    Vec<String>,
    BufReader<std::process::ChildStderr>,
) {
    spawn_serve_env(args, &[])
}

/// [`spawn_serve`] with extra environment variables.
pub(crate) fn spawn_serve_env(
    args: &[&str],
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    Vec<String>,
    BufReader<std::process::ChildStderr>,
) {
    let db = crate::temp_db();
    let mut child = turnpike()
        .arg("serve")
        .args(["--db", &db, "--admin-listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    let mut line = String::new();
    // The two lines per listener come before anything else.
    while lines
        .iter()
        .filter(|l: &&String| l.contains("listening tcp"))
        .count()
        < args.iter().filter(|a| **a == "--listen").count().max(1)
    {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 {
            break;
        }
        lines.push(line.trim_end().to_string());
    }
    (child, lines, err)
}

pub(crate) fn sigterm(child: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn serve_logs_one_line_per_listener_answers_and_stops_on_sigterm() {
    let (mut child, lines, mut rest) =
        spawn_serve(&["--listen", "127.0.0.1:0", "--log-level", "info"]);
    let udp_line = lines
        .iter()
        .find(|l| l.contains("listening udp 127.0.0.1:"))
        .expect("udp line");
    assert!(
        lines.iter().any(|l| l.contains("listening tcp 127.0.0.1:")),
        "{lines:?}"
    );
    let addr: std::net::SocketAddr = udp_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_ne!(addr.port(), 0);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..50 {
        assert_eq!(binding(&sock, addr), sock.local_addr().unwrap());
    }
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut tail = String::new();
    std::io::Read::read_to_string(&mut rest, &mut tail).unwrap();
    // No line per packet: only start-up and shutdown lines follow.
    for line in tail.lines() {
        assert!(
            ["relay ip", "admin api", "SIGTERM", "stopped"]
                .iter()
                .any(|k| line.contains(k)),
            "unexpected log line: {line}"
        );
    }
    assert!(tail.contains("SIGTERM"), "{tail}");
}

/// Issue 16: `--log-format json` makes every line one JSON object with
/// timestamp, level, target and message (and the event's fields), and the
/// lines operators alert on carry a stable `event` name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_the_documented_fields() {
    let (child, lines, rest) = spawn_serve(&["--listen", "127.0.0.1:0", "--log-format", "json"]);
    let udp_line = lines
        .iter()
        .find(|l| l.contains("listening udp 127.0.0.1:"))
        .unwrap_or_else(|| panic!("udp line in {lines:?}"));
    let v: serde_json::Value = serde_json::from_str(udp_line).unwrap();
    let addr: std::net::SocketAddr = v["message"]
        .as_str()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let log = crate::reload::Log::follow(rest);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    binding(&sock, addr);
    // A signed Allocate from an unknown user: one bad credential, which
    // the next summary (every 10 s) reports.
    let mut c = crate::turn_client::TurnClient::connect_as(addr, "nobody", "wrong").await;
    assert_eq!(c.allocate(None).await, Err(401));
    Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    let mut all: Vec<String> = lines.clone();
    all.extend(log.until(|l| l.contains("\"auth_failure\"")));
    sigterm(&child);
    all.extend(log.rest());
    let mut child = child;
    assert!(child.wait().unwrap().success());
    let mut events = std::collections::BTreeSet::new();
    for line in &all {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v[key].is_string(), "{key} missing: {line}");
        }
        if let Some(e) = v.get("event") {
            events.insert(e.as_str().expect("event is a string").to_string());
        }
        if v["event"] == "auth_failure" {
            assert_eq!(v["bad_credentials"], 1, "{line}");
        }
    }
    for e in ["listening", "reload", "auth_failure"] {
        assert!(events.contains(e), "no {e} event in {all:?}");
    }
    assert!(all.iter().any(|l| l.contains("SIGTERM")), "{all:?}");
}

/// `turnpike health --config FILE [extra]`: exit code and stderr.
fn health(file: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let out = turnpike()
        .args(["health", "--config"])
        .arg(file)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Issue 16: `turnpike health` (the image's HEALTHCHECK) says 0 while the
/// server of a config answers /livez, /readyz with --ready, or a Binding
/// when its HTTP listeners are off, and 1 with one line once it is gone.
#[test]
fn health_exits_0_while_the_server_answers_and_1_with_a_reason_after() {
    for admin in [true, false] {
        let port = free_port();
        let admin_line = if admin {
            format!("admin_listen = \"127.0.0.1:{}\"", free_port())
        } else {
            "admin_listen = \"off\"".to_string()
        };
        let file = temp_file(&format!(
            "listen = [\"127.0.0.1:{port}\"]\n{admin_line}\ndb = \"{}\"\n",
            crate::temp_db()
        ));
        let mut child = turnpike()
            .args(["serve", "--config"])
            .arg(&file)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        // The admin line comes last when there is one, else the listeners.
        let started = |l: &str| l.contains(if admin { "admin api" } else { "listening tcp" });
        while !started(&line) {
            line.clear();
            assert_ne!(err.read_line(&mut line).unwrap(), 0, "serve ended");
        }
        // Keep reading so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        assert_eq!(health(&file, &[]), (0, String::new()), "admin {admin}");
        let ready = (0..30).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            health(&file, &["--ready"]).0 == 0
        });
        assert!(ready, "admin {admin}: {:?}", health(&file, &["--ready"]));
        sigterm(&child);
        assert!(child.wait().unwrap().success());
        let (code, why) = health(&file, &[]);
        assert_eq!(code, 1, "admin {admin}: {why}");
        assert_eq!(why.lines().count(), 1, "{why}");
        assert!(why.starts_with("unhealthy: "), "{why}");
        std::fs::remove_file(&file).ok();
    }
}

/// Issue 16: sd_notify with NOTIFY_SOCKET: READY=1 once a Binding can be
/// answered, WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1 then READY=1
/// around SIGHUP, STOPPING=1 on SIGTERM.
#[test]
fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = std::env::temp_dir().join(format!("turnpike-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify");
    let systemd = UnixDatagram::bind(&path).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = systemd.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let port = free_port();
    let mut child = turnpike()
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--db", &crate::temp_db(), "--admin-listen", "off"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "1000000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = next();
    assert!(ready.starts_with("READY=1"), "{ready}");
    // Ready means ready: a Binding is answered at once.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(binding(&sock, to), sock.local_addr().unwrap());
    // Half of one second: about four pings in two seconds.
    let start = std::time::Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_secs(2) {
        let m = next();
        assert!(m.starts_with("WATCHDOG=1\nSTATUS="), "{m}");
        pings += 1;
    }
    assert!((3..=5).contains(&pings), "{pings} pings in 2 s");
    let kill = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    kill("-HUP");
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m == "READY=1") {
        let m = next();
        if !m.starts_with("WATCHDOG=1") {
            seen.push(m);
        }
    }
    assert!(
        seen[0].starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{seen:?}"
    );
    kill("-TERM");
    let stopping = loop {
        let m = next();
        if !m.starts_with("WATCHDOG=1") {
            break m;
        }
    };
    assert_eq!(stopping, "STOPPING=1");
    assert!(child.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 16: a stuck worker stops the watchdog pings within two watchdog
/// periods (systemd would restart the service); they come back when it
/// moves again. The stall is the test-only TURNPIKE_TEST_STALL_WORKER hook.
#[test]
fn a_stalled_worker_stops_the_watchdog_pings() {
    use std::os::unix::net::UnixDatagram;
    use std::time::Instant;
    let dir = std::env::temp_dir().join(format!("turnpike-stall-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify");
    let systemd = UnixDatagram::bind(&path).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut child = turnpike()
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--db", &crate::temp_db(), "--admin-listen", "off"])
        .env("NOTIFY_SOCKET", &path)
        // A 2 s watchdog: a ping every second.
        .env("WATCHDOG_USEC", "2000000")
        .env("TURNPIKE_TEST_STALL_WORKER", "8")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = systemd.recv(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"READY=1"));
    // The worker stalls at most 2 s after READY, for 8 s.
    let stall = Instant::now() + Duration::from_secs(2);
    let mut pings = Vec::new();
    let mut statuses = 0;
    while Instant::now() < stall + Duration::from_secs(11) {
        let n = systemd.recv(&mut buf).expect("the status goes on");
        if buf[..n].starts_with(b"WATCHDOG=1") {
            pings.push(Instant::now());
        } else if buf[..n].starts_with(b"STATUS=") {
            statuses += 1;
        }
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let at = |p: &Instant| p.saturating_duration_since(stall).as_secs_f64();
    let times: Vec<f64> = pings.iter().map(at).collect();
    assert!(pings.iter().any(|p| *p < stall), "pings before: {times:?}");
    // Two periods (4 s) after the stall began, and until it ends: none.
    let during = pings
        .iter()
        .filter(|p| **p > stall + Duration::from_secs(4) && **p < stall + Duration::from_secs(8))
        .count();
    assert_eq!(during, 0, "pings at {times:?} s after the stall began");
    assert!(statuses >= 2, "STATUS= without WATCHDOG=1 meanwhile");
    assert!(
        pings.iter().any(|p| *p > stall + Duration::from_secs(9)),
        "pings again after the stall: {times:?}"
    );
}

#[test]
fn serve_with_no_config_listens_on_3478_for_ipv4_and_ipv6() {
    let (mut child, lines, _rest) = spawn_serve(&[]);
    let text = lines.join("\n");
    assert!(text.contains("listening udp 0.0.0.0:3478"), "{text}");
    assert!(text.contains("listening tcp 0.0.0.0:3478"), "{text}");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(
        binding(&sock, "127.0.0.1:3478".parse().unwrap()),
        sock.local_addr().unwrap()
    );
    if std::net::UdpSocket::bind("[::1]:0").is_ok() {
        // The IPv6 lines follow the IPv4 ones.
        let sock6 = UdpSocket::bind("[::1]:0").unwrap();
        assert_eq!(
            binding(&sock6, "[::1]:3478".parse().unwrap()),
            sock6.local_addr().unwrap()
        );
    }
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

/// `turnpike bench` must keep working: every mode, briefly, against an
/// in-process server, with numbers that show work was done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_modes_run_against_a_live_server() {
    let server = crate::start_turn(|c| {
        c.allow_loopback_peers = true;
        c.auth_reply_rate = 0;
    })
    .await;
    let addr = server.addrs(turnpike::Transport::Udp)[0].to_string();
    let pid = std::process::id().to_string();
    let modes: [&[&str]; 5] = [
        &["relay", "--clients", "4", "--window", "2"],
        &[
            "relay",
            "--clients",
            "4",
            "--window",
            "2",
            "--send-indications",
        ],
        &["binding", "--concurrency", "2"],
        &["allocate", "--concurrency", "2"],
        &["idle", "--allocations", "20"],
    ];
    for mode in modes {
        let args: Vec<String> = mode
            .iter()
            .map(|s| s.to_string())
            .chain(
                [
                    "--server",
                    &addr,
                    "--user",
                    crate::USER,
                    "--password",
                    crate::PASSWORD,
                    "--duration",
                    "0.5",
                    "--server-pid",
                    &pid,
                ]
                .iter()
                .map(|s| s.to_string()),
            )
            .collect();
        // The idle mode takes no --duration: drop it there.
        let args: Vec<String> = if mode[0] == "idle" {
            args.iter()
                .filter(|a| *a != "--duration" && *a != "0.5")
                .cloned()
                .collect()
        } else {
            args
        };
        let out = tokio::task::spawn_blocking(move || {
            turnpike().arg("bench").args(&args).output().unwrap()
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "bench {mode:?}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let counted = match mode[0] {
            "relay" => text.split("\"received\":").nth(1),
            "binding" => text.split("\"answered\":").nth(1),
            "allocate" => text.split("\"allocations\":").nth(1),
            _ => text.split("\"rss_after\":").nth(1),
        }
        .and_then(|s| s.split([',', '}']).next())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
        assert!(counted > 0, "bench {mode:?} did nothing: {text}");
        assert!(text.contains("cpu_s\":") || mode[0] == "idle", "{text}");
    }
    assert_eq!(server.allocations(), 0, "the bench frees what it allocates");
    server.stop().await;
}
