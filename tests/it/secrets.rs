//! Secrets off the command line (review F15) and a private store file
//! (F16): `serve` and the CLI read secrets from files, stdin and the
//! environment; a bad secret file is one line naming it.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::admin::{allocate_within, http};
use crate::turn_client::TurnClient;
use crate::REALM;

fn turnpike() -> Command {
    Command::new(env!("CARGO_BIN_EXE_turnpike"))
}

/// A fresh directory for one test's files.
fn temp_dir() -> std::path::PathBuf {
    let db = crate::temp_db();
    let dir = std::path::PathBuf::from(db.trim_start_matches("sqlite:"))
        .parent()
        .unwrap()
        .to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_secret(dir: &std::path::Path, name: &str, secret: &str, mode: u32) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p.display().to_string()
}

/// Starts `cmd` (a `turnpike serve`), returns the child, its UDP and admin
/// addresses and the log up to the admin line.
fn start(mut cmd: Command) -> (std::process::Child, SocketAddr, SocketAddr, String) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (mut udp, mut admin, mut log) = (None, None, String::new());
    while udp.is_none() || admin.is_none() {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "server ended: {log}");
        if let Some(i) = line.find("listening udp ") {
            udp = line[i + 14..].trim().parse().ok();
        }
        if let Some(i) = line.find("admin api http://") {
            admin = line[i + 17..].trim().parse().ok();
        }
        log += &line;
    }
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (child, udp.unwrap(), admin.unwrap(), log)
}

fn stop(mut child: std::process::Child) {
    crate::cli::sigterm(&child);
    assert!(child.wait().unwrap().success());
}

async fn rest_allocates(udp: SocketAddr, secret: &str) -> bool {
    let user = format!("{}:r", crate::unix_now() + 600);
    let pw = turnpike::auth::rest::password(secret.as_bytes(), &user);
    TurnClient::connect_as(udp, &user, &pw)
        .await
        .allocate(None)
        .await
        .is_ok()
}

fn admin_token(secret: &str) -> String {
    turnpike::admin::token::mint(secret.as_bytes(), "t", "admin", crate::unix_now(), 60).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_secrets_from_files_and_the_environment() {
    const JWT_ENV: &str = "jwt-from-the-environment-0123";
    const REST_ENV: &str = "rest-from-the-environment";
    const JWT_FILE: &str = "jwt-from-a-file-0123456789";
    const REST_FILE: &str = "rest-from-a-file";
    let dir = temp_dir();
    let rest_file = write_secret(&dir, "rest", REST_FILE, 0o600);
    let jwt_file = write_secret(&dir, "jwt", JWT_FILE, 0o644);
    let base = |cmd: &mut Command| {
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--admin-listen"])
            .args(["127.0.0.1:0", "--realm", REALM, "--db", &crate::temp_db()])
            .env_remove("TURNPIKE_ADMIN_JWT_SECRET")
            .env_remove("TURNPIKE_STATIC_AUTH_SECRET");
    };

    // The environment, flags naming files.
    let mut cmd = turnpike();
    base(&mut cmd);
    cmd.args(["--static-auth-secret-file", &rest_file])
        .env("TURNPIKE_ADMIN_JWT_SECRET", JWT_ENV);
    let (child, udp, admin, _) = start(cmd);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(REST_FILE));
    let (code, body) = http(
        admin,
        "GET",
        "/api/v1/users",
        Some(&admin_token(JWT_ENV)),
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(rest_allocates(udp, REST_FILE).await);
    stop(child);

    // The config file's keys; the environment adds a REST secret.
    let toml = dir.join("turnserver.toml");
    std::fs::write(
        &toml,
        format!(
            "admin_jwt_secret_file = \"{jwt_file}\"\nstatic_auth_secret_file = [\"{rest_file}\"]\n"
        ),
    )
    .unwrap();
    let mut cmd = turnpike();
    base(&mut cmd);
    cmd.args(["--config", toml.to_str().unwrap()])
        .env("TURNPIKE_STATIC_AUTH_SECRET", REST_ENV);
    let (child, udp, admin, log) = start(cmd);
    assert!(
        log.contains(&format!("secret file {jwt_file} has mode 644")),
        "a world-readable secret file gets a warning: {log}"
    );
    let (code, body) = http(admin, "GET", "/metrics", Some(&admin_token(JWT_FILE)), None).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        rest_allocates(udp, REST_ENV).await,
        "the environment's secret"
    );
    assert!(
        !rest_allocates(udp, REST_FILE).await,
        "the environment replaces the file's REST secrets, as a flag would"
    );
    stop(child);
}

/// Runs `turnpike ARGS` with `env` and `stdin`; returns (ok, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (bool, String, String) {
    let mut cmd = turnpike();
    cmd.args(args)
        .env_remove("TURNPIKE_ADMIN_JWT_SECRET")
        .env_remove("TURNPIKE_STATIC_AUTH_SECRET")
        .env_remove("TURNPIKE_PASSWORD")
        .env_remove("TURNPIKE_OAUTH_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_takes_secrets_from_files_stdin_and_the_environment() {
    let dir = temp_dir();
    let db = crate::temp_db();
    let (s, udp, _) = crate::admin::server({
        let db = db.clone();
        move |c| c.db = db
    })
    .await;
    let db = db.as_str();
    // user add from stdin, user passwd from the environment, then a file.
    let (ok, _, e) = run(
        &[
            "user",
            "add",
            "ann",
            "--password-file",
            "-",
            "--realm",
            REALM,
            "--db",
            db,
        ],
        &[],
        "from-stdin\n",
    );
    assert!(ok, "{e}");
    allocate_within(udp, "ann", "from-stdin", true)
        .await
        .unwrap();
    let (ok, _, e) = run(
        &["user", "passwd", "ann", "--realm", REALM, "--db", db],
        &[("TURNPIKE_PASSWORD", "from-env")],
        "",
    );
    assert!(ok, "{e}");
    allocate_within(udp, "ann", "from-env", true).await.unwrap();
    let pw_file = write_secret(&dir, "pw", "from-file", 0o600);
    let (ok, _, e) = run(
        &[
            "user",
            "passwd",
            "ann",
            "--password-file",
            &pw_file,
            "--realm",
            REALM,
            "--db",
            db,
        ],
        &[],
        "",
    );
    assert!(ok, "{e}");
    allocate_within(udp, "ann", "from-file", true)
        .await
        .unwrap();
    // No password at all: refused, one line.
    let (ok, _, e) = run(
        &["user", "add", "bob", "--realm", REALM, "--db", db],
        &[],
        "",
    );
    assert!(!ok && e.trim().lines().count() == 1, "{e}");

    // secret add from a file; credentials from the environment.
    let secret_file = write_secret(&dir, "rest", "rest-secret-x", 0o600);
    let (ok, out, e) = run(
        &[
            "secret",
            "add",
            "--secret-file",
            &secret_file,
            "--realm",
            REALM,
            "--db",
            db,
        ],
        &[],
        "",
    );
    assert!(ok, "{e}");
    out.trim().parse::<i64>().expect("an id");
    let (ok, out, e) = run(
        &["credentials", "--user", "u", "--uri", "turn:h:3478"],
        &[("TURNPIKE_STATIC_AUTH_SECRET", "rest-secret-x")],
        "",
    );
    assert!(ok, "{e}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let user = v["username"].as_str().unwrap();
    let credential = v["credential"].as_str().unwrap();
    assert_eq!(
        credential,
        turnpike::auth::rest::password(b"rest-secret-x", user)
    );
    allocate_within(udp, user, credential, true)
        .await
        .expect("the stored secret from the file is live");
    // oauth-key add from stdin.
    let (ok, _, e) = run(
        &[
            "oauth-key",
            "add",
            "k1",
            "--key-file",
            "-",
            "--alg",
            "A128GCM",
            "--db",
            db,
        ],
        &[],
        "MTIzNDU2Nzg5MDEyMzQ1Ngo=\n",
    );
    assert!(ok, "{e}");
    let (_, listed, _) = run(&["oauth-key", "list", "--db", db], &[], "");
    assert!(listed.starts_with("k1\tA128GCM"), "{listed}");

    // admin-token signs with the file's secret, or the environment's.
    let jwt_file = write_secret(&dir, "jwt", "jwt-secret-from-file-0123", 0o600);
    for (args, env, secret) in [
        (
            vec!["admin-token", "--admin-jwt-secret-file", jwt_file.as_str()],
            vec![],
            "jwt-secret-from-file-0123",
        ),
        (
            vec!["admin-token"],
            vec![("TURNPIKE_ADMIN_JWT_SECRET", "jwt-secret-from-env-4567")],
            "jwt-secret-from-env-4567",
        ),
    ] {
        let (ok, out, e) = run(&args, &env, "");
        assert!(ok, "{e}");
        turnpike::admin::token::verify(secret.as_bytes(), out.trim())
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
    s.stop().await;
}

#[test]
fn a_missing_secret_file_is_one_line_naming_it() {
    let f = "/nonexistent/turnpike-secret";
    let db = crate::temp_db();
    let cases: [&[&str]; 7] = [
        &["serve", "--admin-jwt-secret-file", f, "--db", &db],
        &["serve", "--static-auth-secret-file", f, "--db", &db],
        &["user", "add", "x", "--password-file", f, "--db", &db],
        &["secret", "add", "--secret-file", f, "--db", &db],
        &["credentials", "--secret-file", f, "--uri", "turn:h"],
        &["admin-token", "--admin-jwt-secret-file", f],
        &["oauth-key", "add", "k", "--key-file", f, "--db", &db],
    ];
    for args in cases {
        let (ok, _, e) = run(args, &[], "");
        assert!(!ok, "{args:?} succeeded");
        assert_eq!(e.trim().lines().count(), 1, "{args:?}: {e}");
        assert!(e.contains(f), "{args:?} does not name the file: {e}");
    }
    assert!(
        !std::path::Path::new(db.trim_start_matches("sqlite:")).exists(),
        "nothing was created"
    );
}

/// F16: the store holds REST secrets, OAuth keys and the admin token
/// secret; its files are private even under `umask 000`.
#[test]
fn store_files_are_private_whatever_the_umask() {
    let db = crate::temp_db();
    let path = db.trim_start_matches("sqlite:").to_string();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 000; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_turnpike"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--db", &db]);
    let (child, _, _, _) = start(cmd);
    let modes: Vec<_> = [path.clone(), format!("{path}-wal"), format!("{path}-shm")]
        .into_iter()
        .map(|f| {
            let mode = std::fs::metadata(&f).map(|m| m.permissions().mode() & 0o777);
            (f, mode.ok())
        })
        .collect();
    // Stop the server before asserting, so a failure leaves no process.
    stop(child);
    for (f, mode) in modes {
        assert_eq!(
            mode,
            Some(0o600),
            "{f} has mode {:?}",
            mode.map(|m| format!("{m:o}"))
        );
    }
}
