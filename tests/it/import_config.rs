//! `turnpike import coturn-config` end to end: Debian's coturn example with
//! a dozen options enabled becomes a turnserver.toml that passes `config
//! check`, and the server started from it answers `turnutils_uclient` as
//! the coturn it replaces would (realm, users or REST secret, port range);
//! bad input; and the README's table is the importer's own.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::coturn::{turnutils_peer, uclient_relays_all, Child};
use crate::free_port;

/// Debian's /etc/turnserver.conf (coturn 4.6.1-1, BSD-3; see LICENSE there).
const DEBIAN_EXAMPLE: &str = include_str!("../data/coturn/turnserver.conf");

fn turnpike() -> Command {
    Command::new(env!("CARGO_BIN_EXE_turnpike"))
}

/// A fresh folder for one test.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "turnpike-import-config-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Enables `key` in coturn's example: its first commented-out line
/// (`#key`, `#key=...` or `# key=...`) becomes `key=value` (bare when
/// `value` is empty). Panics if the example has no such line, so each
/// enabled option is one Debian documents.
fn enable(text: &mut String, key: &str, value: &str) {
    let set = if value.is_empty() {
        key.to_string()
    } else {
        format!("{key}={value}")
    };
    let mut out = Vec::new();
    let mut done = false;
    for line in text.lines() {
        let body = line.strip_prefix("# ").or_else(|| line.strip_prefix('#'));
        let hit = !done
            && body.is_some_and(|b| {
                b == key || b.starts_with(&format!("{key}=")) || b.starts_with(&format!("{key} "))
            });
        if hit {
            out.push(set.clone());
            done = true;
        } else {
            out.push(line.to_string());
        }
    }
    assert!(done, "the example has no commented-out {key}");
    *text = out.join("\n") + "\n";
}

/// `turnpike ARGS`: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = turnpike()
        .args(args)
        .output()
        .expect("the turnpike binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn import(conf: &Path, out: &Path) -> (i32, String, String) {
    run(&[
        "import",
        "coturn-config",
        conf.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

/// The report's line for `key`: exactly one, starting with its name.
fn report_line<'a>(report: &'a str, key: &str) -> &'a str {
    let lines: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with(&format!("{key} ")))
        .collect();
    assert_eq!(lines.len(), 1, "want one report line for {key}:\n{report}");
    lines[0]
}

fn status(line: &str) -> &str {
    let after_name = line
        .split_once("  ")
        .map_or("", |(_, rest)| rest.trim_start());
    after_name.split_whitespace().next().unwrap_or("")
}

/// `turnpike serve --config FILE` on a throwaway store; its log is read
/// on a thread so it never blocks.
fn serve(config: &Path) -> (Child, crate::reload::Log) {
    let (child, _lines, err) = crate::cli::spawn_serve(&["--config", config.to_str().unwrap()]);
    (Child(child), crate::reload::Log::follow(err))
}

/// `turnpike probe turn` as `user`: (exit code, realm, relayed address,
/// everything it printed).
async fn probe(port: u16, user: &str, password: &str) -> (i32, String, String, String) {
    let (url, user, password) = (
        format!("turn:127.0.0.1:{port}"),
        user.to_string(),
        password.to_string(),
    );
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run(&[
            "probe",
            "turn",
            &url,
            "--user",
            &user,
            "--password",
            &password,
            "--timeout",
            "2",
        ])
    })
    .await
    .unwrap();
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let (realm, relayed) = (field("realm:"), field("relayed:"));
    (code, realm, relayed, out + &err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debians_example_with_static_users_serves_uclient_like_coturn() {
    let dir = folder("users");
    let port = free_port();
    let (min, max) = (43000, 43499);
    // bob comes as coturn's turnadmin -k key: MD5 of name:realm:password.
    let bob_key: String =
        turnpike::stun::integrity::long_term_key_md5("bob", "import.test", "bob-pw")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    let mut conf = DEBIAN_EXAMPLE.to_string();
    for (key, value) in [
        ("listening-port", port.to_string()),
        ("listening-ip", "127.0.0.1".into()),
        ("min-port", min.to_string()),
        ("max-port", max.to_string()),
        ("realm", "import.test".into()),
        ("user", "alice:alice-pw".into()),
        ("user", format!("bob:0x{bob_key}")),
        ("lt-cred-mech", String::new()),
        ("fingerprint", String::new()),
        ("no-multicast-peers", String::new()),
        ("allow-loopback-peers", String::new()),
        ("user-quota", "10".into()),
        ("total-quota", "100".into()),
        ("stale-nonce", String::new()),
        ("no-tcp-relay", String::new()),
        ("no-cli", String::new()),
        ("mobility", String::new()),
        ("web-admin", String::new()),
        ("cli-password", "qwerty-cli".into()),
    ] {
        enable(&mut conf, key, &value);
    }
    let conf_path = dir.join("turnserver.conf");
    std::fs::write(&conf_path, &conf).unwrap();
    let out = dir.join("turnserver.toml");

    let (code, report, err) = import(&conf_path, &out);
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(err, "");
    // One line per option present, the example's own enabled ones included.
    for key in [
        "listening-port",
        "listening-ip",
        "min-port",
        "max-port",
        "realm",
        "user",
        "lt-cred-mech",
        "fingerprint",
        "no-multicast-peers",
        "allow-loopback-peers",
        "user-quota",
        "total-quota",
        "stale-nonce",
        "no-tcp-relay",
        "no-cli",
        "syslog",
        "no-rfc5780",
        "no-stun-backward-compatibility",
        "response-origin-only-with-rfc5780",
    ] {
        let line = report_line(&report, key);
        let want = if key == "fingerprint" || key == "syslog" {
            "ignored"
        } else {
            "mapped"
        };
        assert_eq!(status(line), want, "{line}");
    }
    for key in ["mobility", "cli-password"] {
        assert_eq!(status(report_line(&report, key)), "unsupported", "{report}");
    }
    // coturn's web admin has its counterpart: the console on admin_listen.
    let line = report_line(&report, "web-admin");
    assert_eq!(status(line), "mapped", "{line}");
    assert!(line.contains("/console/"), "{line}");
    assert!(
        report_line(&report, "user (x2)").contains("alice, bob"),
        "{report}"
    );
    let toml = std::fs::read_to_string(&out).unwrap();
    for secret in ["alice-pw", "qwerty-cli"] {
        assert!(
            !toml.contains(secret) && !report.contains(secret),
            "{secret} leaked"
        );
    }
    assert!(toml.contains(&format!("bob:0x{bob_key}")), "{toml}");
    // User keys authenticate: the file is the owner's alone.
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (code, said, err) = run(&["config", "check", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{said}{err}");

    let (_server, _log) = serve(&out);
    let (code, realm, relayed, said) = probe(port, "alice", "alice-pw").await;
    assert_eq!(code, 0, "{said}");
    assert_eq!(realm, "import.test");
    let relayed: std::net::SocketAddr = relayed.parse().unwrap();
    assert_eq!(relayed.ip().to_string(), "127.0.0.1");
    assert!(
        (min..=max).contains(&relayed.port()),
        "relayed port {relayed} outside {min}-{max}"
    );
    let (code, _, _, said) = probe(port, "alice", "wrong").await;
    assert_ne!(code, 0, "a wrong password allocated: {said}");
    assert!(said.contains("401"), "{said}");

    let (_peer, peer_port) = turnutils_peer();
    uclient_relays_all(
        port,
        "127.0.0.1",
        peer_port,
        &["-u", "alice", "-w", "alice-pw"],
        4,
    )
    .await;
    uclient_relays_all(
        port,
        "127.0.0.1",
        peer_port,
        &["-u", "bob", "-w", "bob-pw"],
        2,
    )
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_secret_moves_to_a_0600_file_and_serves_uclient() {
    let dir = folder("rest");
    let port = free_port();
    let secret = "import-test-rest-secret";
    let mut conf = DEBIAN_EXAMPLE.to_string();
    for (key, value) in [
        ("listening-port", port.to_string()),
        ("listening-ip", "127.0.0.1".into()),
        ("min-port", "43500".into()),
        ("max-port", "43999".into()),
        ("realm", "rest.test".into()),
        ("use-auth-secret", String::new()),
        ("static-auth-secret", secret.into()),
        // coturn checks no static user under use-auth-secret: left out.
        ("user", "static:static-pw".into()),
        ("allow-loopback-peers", String::new()),
    ] {
        enable(&mut conf, key, &value);
    }
    let conf_path = dir.join("turnserver.conf");
    std::fs::write(&conf_path, &conf).unwrap();
    let out = dir.join("turnserver.toml");

    let (code, report, err) = import(&conf_path, &out);
    assert_eq!(code, 0, "{report}\n{err}");
    let secret_file = dir.join("turnserver.static_auth_secret");
    assert_eq!(
        std::fs::read_to_string(&secret_file).unwrap(),
        format!("{secret}\n")
    );
    assert_eq!(
        std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let line = report_line(&report, "static-auth-secret");
    assert!(
        line.contains(secret_file.to_str().unwrap()) && line.contains("0600"),
        "{line}"
    );
    assert_eq!(status(report_line(&report, "user")), "ignored");
    let toml = std::fs::read_to_string(&out).unwrap();
    for leak in [secret, "static-pw"] {
        assert!(
            !toml.contains(leak) && !report.contains(leak),
            "{leak} leaked:\n{toml}\n{report}"
        );
    }
    assert!(toml.contains("static_auth_secret_file"), "{toml}");
    // No user keys: the config itself may be world-readable.
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let (code, said, err) = run(&["config", "check", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{said}{err}");

    let (_server, _log) = serve(&out);
    let (code, _, _, said) = probe(port, "static", "static-pw").await;
    assert_ne!(
        code, 0,
        "a static user allocated under use-auth-secret: {said}"
    );
    assert!(said.contains("401"), "{said}");
    let (_peer, peer_port) = turnutils_peer();
    uclient_relays_all(
        port,
        "127.0.0.1",
        peer_port,
        &["-u", "webuser", "-W", secret],
        4,
    )
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unreadable_input_is_one_line_exit_2_and_nothing_written() {
    let dir = folder("bad");
    let out = dir.join("turnserver.toml");
    // A missing file, and a folder where a file should be.
    for input in [dir.join("missing.conf"), dir.clone()] {
        let (code, stdout, err) = import(&input, &out);
        assert_eq!(code, 2, "{stdout}{err}");
        assert_eq!(stdout, "");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: cannot read "), "{err}");
    }
    // A secret with nowhere to go but stdout.
    let conf = dir.join("secret.conf");
    std::fs::write(&conf, "use-auth-secret\nstatic-auth-secret=hush-hush\n").unwrap();
    let (code, stdout, err) = run(&["import", "coturn-config", conf.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--out") && !err.contains("hush-hush"), "{err}");
    // An output folder that does not exist.
    let (code, stdout, err) = import(&conf, &dir.join("no/such/turnserver.toml"));
    assert_eq!(
        (code, stdout.as_str(), err.lines().count()),
        (2, "", 1),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["secret.conf"], "something was written");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn garbage_lines_are_reported_by_name_and_exit_1() {
    let dir = folder("garbage");
    let conf = dir.join("turnserver.conf");
    std::fs::write(
        &conf,
        "listening-port=3478\nthis line is garbage\n%%%%\nlistening-ipp=127.0.0.1\nrealm=ok.test\n",
    )
    .unwrap();
    let out = dir.join("turnserver.toml");
    let (code, report, err) = import(&conf, &out);
    assert_eq!(code, 1, "{report}\n{err}");
    for name in ["this", "%%%%", "listening-ipp"] {
        assert_eq!(status(report_line(&report, name)), "unknown", "{report}");
    }
    assert_eq!(status(report_line(&report, "realm")), "mapped");
    // What could be mapped is written, and valid.
    let (code, said, err) = run(&["config", "check", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{said}{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_readme_table_is_the_importers_own() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = "<!-- coturn-mapping:start -->\n";
    let end = "<!-- coturn-mapping:end -->";
    let from = readme.find(start).expect("the start marker") + start.len();
    let to = readme[from..].find(end).expect("the end marker") + from;
    let table = turnpike::import::coturn_config::mapping_table();
    assert!(
        readme[from..to] == table,
        "README's table differs from the importer's: run `turnpike import coturn-config --mapping-table` and paste it between the markers"
    );
    let (code, printed, _) = run(&["import", "coturn-config", "--mapping-table"]);
    assert_eq!((code, printed.as_str()), (0, table.as_str()));
}
