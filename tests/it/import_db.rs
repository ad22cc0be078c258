//! `turnpike import coturn-db` against databases written by coturn's own
//! `turnadmin` (Debian's coturn package): SQLite here; PostgreSQL, MariaDB
//! and Redis on the servers scripts/test.sh starts (`TURNPIKE_TEST_PG`,
//! `TURNPIKE_TEST_MYSQL`, `TURNPIKE_TEST_REDIS`). turnadmin has no command
//! for OAuth keys or peer ranges: those rows go in as coturn's schema
//! documents them (SQL INSERTs, Redis HSET/SADD), with the three keys that
//! `turnutils_uclient -J` knows (coturn's own test rows).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::Connection;

use crate::turn_client::TurnClient;
use crate::REALM;

const ALICE_PW: &str = "alice-pw";
const BOB_PW: &str = "bob-pw";
const REST_SECRET: &str = "coturn-rest-secret";

/// uclient's `-J` keys, as coturn's turndb/testsqldbsetup.sql has them.
const OAUTH_KEYS: [(&str, &str, &str, &str); 3] = [
    (
        "north",
        "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDEK",
        "A256GCM",
        "crinna.org",
    ),
    ("union", "MTIzNDU2Nzg5MDEyMzQ1Ngo=", "A128GCM", "north.gov"),
    (
        "oldempire",
        "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIK",
        "A256GCM",
        "",
    ),
];

/// A server's URL from `var` (set by scripts/test.sh); None (skip) outside
/// it, a failure in CI, as `crate::test_pg` does.
fn test_env(var: &str) -> Option<String> {
    let url = std::env::var(var).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must set {var} (scripts/test.sh)"
        );
        eprintln!("{var} unset: skipped (scripts/test.sh sets it)");
    }
    url
}

/// A coturn database and how turnadmin reaches it.
enum Coturn {
    Sqlite(PathBuf),
    /// PostgreSQL or MySQL: sqlx's URL, turnadmin's flag and its
    /// connection string.
    Sql {
        url: String,
        flag: &'static str,
        conn: String,
    },
    /// redis:// URL with the database number, turnadmin's connection string.
    Redis {
        url: String,
        conn: String,
    },
}

impl Coturn {
    /// What `import coturn-db` is given.
    fn url(&self) -> String {
        match self {
            Coturn::Sqlite(p) => format!("sqlite:{}", p.display()),
            Coturn::Sql { url, .. } | Coturn::Redis { url, .. } => url.clone(),
        }
    }

    fn turnadmin(&self, args: &[&str]) {
        let (flag, target) = match self {
            Coturn::Sqlite(p) => ("-b", p.display().to_string()),
            Coturn::Sql { flag, conn, .. } => (*flag, conn.clone()),
            Coturn::Redis { conn, .. } => ("-N", conn.clone()),
        };
        let child = Command::new("turnadmin")
            .args(args)
            .arg(flag)
            .arg(&target)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("turnadmin is installed (Debian's coturn, scripts/test.sh)");
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        // turnadmin always logs to /var/log/turn_PID_DATE.log (it has no
        // flag against it): its file goes with it.
        for e in std::fs::read_dir("/var/log")
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("turn_{pid}_"))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "turnadmin {args:?}: {text}");
        // turnadmin exits 0 on a failed connection too.
        assert!(
            !text.contains("Cannot") && !text.contains("rror"),
            "turnadmin {args:?}: {text}"
        );
    }

    /// SQL for SQLite, PostgreSQL or MySQL.
    async fn sql(&self, sql: &str) {
        sqlx::any::install_default_drivers();
        let url = match self {
            Coturn::Sqlite(p) => format!("sqlite://{}", p.display()),
            Coturn::Sql { url, .. } => url.clone(),
            Coturn::Redis { .. } => unreachable!("Redis takes commands"),
        };
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }

    /// A realm, two users, a REST secret, realm options and an origin
    /// through turnadmin; OAuth keys and peer ranges as the schema says.
    async fn fill(&self) {
        self.turnadmin(&["-a", "-u", "alice", "-r", REALM, "-p", ALICE_PW]);
        self.turnadmin(&["-a", "-u", "bob", "-r", REALM, "-p", BOB_PW]);
        self.turnadmin(&["-s", REST_SECRET, "-r", REALM]);
        // total-quota stays above what the relay tests open at once.
        self.turnadmin(&[
            "-g",
            "-r",
            REALM,
            "--user-quota",
            "2",
            "--total-quota",
            "1000",
            "--max-bps",
            "500000",
        ]);
        self.turnadmin(&["-O", "-r", REALM, "-o", "https://app.example"]);
        match self {
            Coturn::Redis { url, .. } => {
                let client = redis::Client::open(url.as_str()).unwrap();
                let mut c = client.get_multiplexed_async_connection().await.unwrap();
                for (kid, key, alg, realm) in OAUTH_KEYS {
                    let () = redis::cmd("HSET")
                        .arg(format!("turn/oauth/kid/{kid}"))
                        .arg(&["ikm_key", key, "as_rs_alg", alg, "realm", realm][..])
                        .arg(&["timestamp", "0", "lifetime", "0"][..])
                        .query_async(&mut c)
                        .await
                        .unwrap();
                }
                let r = format!("turn/realm/{REALM}");
                let () = redis::cmd("SADD")
                    .arg(format!("{r}/allowed-peer-ip"))
                    .arg("172.17.13.200")
                    .query_async(&mut c)
                    .await
                    .unwrap();
                let () = redis::cmd("SADD")
                    .arg(format!("{r}/denied-peer-ip"))
                    .arg("172.17.13.133-172.17.14.56")
                    .query_async(&mut c)
                    .await
                    .unwrap();
            }
            _ => {
                let keys: Vec<String> = OAUTH_KEYS
                    .iter()
                    .map(|(kid, key, alg, realm)| {
                        format!("('{kid}', '{key}', 0, 0, '{alg}', '{realm}')")
                    })
                    .collect();
                self.sql(&format!(
                    "INSERT INTO oauth_key (kid, ikm_key, timestamp, lifetime, as_rs_alg, realm) VALUES {};
                     INSERT INTO allowed_peer_ip (realm, ip_range) VALUES ('{REALM}', '172.17.13.200');
                     INSERT INTO denied_peer_ip (realm, ip_range) VALUES ('{REALM}', '172.17.13.133-172.17.14.56');",
                    keys.join(", ")
                ))
                .await;
            }
        }
    }
}

/// A fresh directory for one test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("turnpike-import-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// coturn's SQLite database made by turnadmin, filled.
async fn coturn_sqlite(dir: &Path) -> Coturn {
    let c = Coturn::Sqlite(dir.join("turndb"));
    c.fill().await;
    c
}

/// `turnpike import coturn-db URL --db STORE EXTRA...`.
fn import(url: &str, store: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_turnpike"))
        .args(["import", "coturn-db", url, "--db", store])
        .args(extra)
        .env_remove("TURNPIKE_DB")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The store's users and keys, secrets, OAuth keys and quotas, sorted.
async fn dump(store: &str) -> Vec<String> {
    let s = turnpike::store::Store::open(store).await.unwrap();
    let d = s.contents().await.unwrap().dump();
    s.close().await;
    d
}

/// What importing the SQLite fixture gives, for the other backends to match.
async fn sqlite_dump(dir: &Path) -> Vec<String> {
    let coturn = coturn_sqlite(dir).await;
    let store = format!("sqlite:{}/from-sqlite.db", dir.display());
    let out = import(&coturn.url(), &store, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    dump(&store).await
}

/// Imports `coturn` into a fresh store twice: the first run writes what
/// the SQLite fixture's import wrote, the second changes nothing.
async fn imports_like_sqlite(coturn: Coturn, dir: &Path) {
    let want = sqlite_dump(dir).await;
    let store = format!("sqlite:{}/store.db", dir.display());
    let out = import(&coturn.url(), &store, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("\n9 changes, 0 unchanged"),
        "{}",
        stdout(&out)
    );
    assert_eq!(dump(&store).await, want);
    let again = import(&coturn.url(), &store, &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("\n0 changes, 9 unchanged"),
        "{}",
        stdout(&again)
    );
    assert_eq!(dump(&store).await, want);
}

/// The audit lines the import wrote: (actor, action, target).
async fn audit(store: &str) -> Vec<(String, String, String)> {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", &store["sqlite:".len()..]))
        .await
        .unwrap();
    let rows: Vec<(String, String, Vec<u8>)> =
        sqlx::query_as("SELECT actor, action, target FROM audit_log ORDER BY id")
            .fetch_all(&mut c)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(a, b, t)| (a, b, String::from_utf8(t).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnadmins_sqlite_users_secret_oauth_keys_and_quota_work_in_turnpike() {
    let dir = temp_dir("relay");
    let coturn = coturn_sqlite(&dir).await;
    let store = format!("sqlite:{}/store.db", dir.display());
    let out = import(&coturn.url(), &store, &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for want in [
        "added: user \"alice\" in realm \"turnpike.test\" (MD5 key only",
        "added: REST secret #1 of realm \"turnpike.test\"",
        "added: OAuth key \"north\" (A256GCM)",
        "added: quota of realm \"turnpike.test\": allocations 1000 (coturn's total-quota), bps 4000000",
        "added: quota of user \"alice\" in realm \"turnpike.test\": allocations 2",
        "set user_quota = 2",
        r#"allowed_peer_ip = ["172.17.13.200"]"#,
        r#"denied_peer_ip = ["172.17.13.133-172.17.14.56"]"#,
        "origin \"https://app.example:443\" maps to realm \"turnpike.test\"",
        "\n9 changes, 0 unchanged, 0 conflicts, 0 skipped, 4 notes\n",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    assert!(!text.contains(REST_SECRET) && !text.contains(OAUTH_KEYS[0].1));
    // One audit line per row and one for the import, all by the importer.
    let lines = audit(&store).await;
    assert_eq!(lines.len(), 10, "{lines:?}");
    assert!(lines
        .iter()
        .all(|(actor, _, _)| actor == "import coturn-db"));
    assert_eq!(
        lines.last().unwrap(),
        &(
            "import coturn-db".to_string(),
            "import.coturn_db".to_string(),
            coturn.url()
        )
    );

    let server = |store: String| {
        crate::start_turn(move |c| {
            c.db = store;
            c.allow_loopback_peers = true;
            c.oauth = true;
            // turnutils_uclient -J's server name.
            c.server_name = "blackdow.carleon.gov".into();
        })
    };
    let s = server(store.clone()).await;
    let port = s.addrs(turnpike::Transport::Udp)[0].port();
    let (_peer, peer_port) = crate::coturn::turnutils_peer();
    // alice with her coturn password (one client and no RTCP allocation,
    // to stay within her quota of 2), a
    // REST name signed with coturn's secret, and the OAuth keys.
    let relay = |flags: &'static [&'static str], clients| {
        crate::coturn::uclient_relays_all(port, "127.0.0.1", peer_port, flags, clients)
    };
    relay(&["-u", "alice", "-w", ALICE_PW, "-c"], 1).await;
    relay(&["-u", "webuser", "-W", REST_SECRET], 20).await;
    relay(&["-J"], 20).await;
    s.stop().await;

    // coturn's user-quota 2: a fresh server (uclient's allocations are
    // gone with the old one) grants alice two and refuses the third.
    let s = server(store.clone()).await;
    let udp = s.addrs(turnpike::Transport::Udp)[0];
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TurnClient::connect_as(udp, "alice", ALICE_PW).await;
        assert!(c.allocate(None).await.is_ok());
        held.push(c);
    }
    let mut third = TurnClient::connect_as(udp, "alice", ALICE_PW).await;
    assert_eq!(third.allocate(None).await, Err(486));
    // bob has the same quota, and a wrong password is still wrong.
    let mut bob = TurnClient::connect_as(udp, "bob", BOB_PW).await;
    assert!(bob.allocate(None).await.is_ok());
    let mut wrong = TurnClient::connect_as(udp, "bob", ALICE_PW).await;
    assert_eq!(wrong.allocate(None).await, Err(401));
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_changes_nothing_and_a_conflict_is_left_as_it_was() {
    let dir = temp_dir("rerun");
    let coturn = coturn_sqlite(&dir).await;
    let store = format!("sqlite:{}/store.db", dir.display());

    // A dry run writes nothing, not even the store file.
    let dry = import(&coturn.url(), &store, &["--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(stdout(&dry).contains("would add: user \"alice\""));
    assert!(stdout(&dry).contains("9 changes (dry run: nothing written)"));
    assert!(!dir.join("store.db").exists());

    assert!(import(&coturn.url(), &store, &[]).status.success());
    let first = dump(&store).await;
    let audited = audit(&store).await.len();
    // The URL may come from the environment (it may hold a password).
    let again = Command::new(env!("CARGO_BIN_EXE_turnpike"))
        .args(["import", "coturn-db", "--db", &store])
        .env("TURNPIKE_COTURN_DB", coturn.url())
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("\n0 changes, 9 unchanged, 0 conflicts"),
        "{}",
        stdout(&again)
    );
    assert_eq!(dump(&store).await, first);
    assert_eq!(audit(&store).await.len(), audited, "nothing audited");

    // alice's password changes in coturn: the import names the conflict,
    // exits 1 and leaves turnpike's alice (and everything else) alone.
    coturn.turnadmin(&["-a", "-u", "alice", "-r", REALM, "-p", "changed-pw"]);
    let clash = import(&coturn.url(), &store, &[]);
    assert_eq!(clash.status.code(), Some(1), "{}", stdout(&clash));
    assert!(
        stdout(&clash).contains(
            "conflict: user \"alice\" in realm \"turnpike.test\": turnpike's key differs from coturn's; left as it was"
        ),
        "{}",
        stdout(&clash)
    );
    // alice's quota goes with her: 7 rows unchanged, 1 conflict.
    assert!(
        stdout(&clash).contains("\n0 changes, 7 unchanged, 1 conflict,"),
        "{}",
        stdout(&clash)
    );
    assert_eq!(stderr(&clash).lines().count(), 1, "{}", stderr(&clash));
    assert_eq!(dump(&store).await, first);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_line_exit_2_and_no_change() {
    let dir = temp_dir("bad");
    let coturn = coturn_sqlite(&dir).await;
    let store = format!("sqlite:{}/store.db", dir.display());
    assert!(import(&coturn.url(), &store, &[]).status.success());
    let before = dump(&store).await;
    std::fs::write(dir.join("junk"), "not a database\n").unwrap();
    let missing = format!("sqlite:{}/nope", dir.display());
    let a_dir = format!("sqlite:{}", dir.display());
    let junk = format!("sqlite:{}/junk", dir.display());
    // turnpike's own store is a SQLite file, but not coturn's schema.
    let cases = [
        (missing.as_str(), "No such file"),
        (a_dir.as_str(), "is a directory"),
        (junk.as_str(), "not coturn's database"),
        (
            store.as_str(),
            "not coturn's database: it has no table turnusers_lt",
        ),
        (
            "mongodb://u:hunter2@127.0.0.1/coturn",
            "not a coturn database URL",
        ),
        ("redis://127.0.0.1:1/0", "cannot connect"),
    ];
    for (url, why) in cases {
        for target in [store.clone(), format!("sqlite:{}/fresh.db", dir.display())] {
            let out = import(url, &target, &[]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{url}: {err}");
            assert_eq!(err.lines().count(), 1, "{url}: {err}");
            assert!(
                err.starts_with("error: ") && err.contains(why),
                "{url}: {err}"
            );
            assert!(!err.contains("hunter2"), "{err}");
            assert!(stdout(&out).is_empty(), "{url}: {}", stdout(&out));
        }
        assert_eq!(dump(&store).await, before, "{url}");
        assert!(!dir.join("fresh.db").exists(), "{url} created a store");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_imports_the_same_store_as_sqlite() {
    let Some(url) = crate::fresh_pg("coturn_import").await else {
        return;
    };
    let schema = std::fs::read_to_string("/usr/share/coturn/schema.sql").unwrap();
    let coturn = Coturn::Sql {
        url: url.clone(),
        flag: "-e",
        conn: url,
    };
    coturn.sql(&schema).await;
    coturn.fill().await;
    imports_like_sqlite(coturn, &temp_dir("pg")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_imports_the_same_store_as_sqlite() {
    let Some(base) = test_env("TURNPIKE_TEST_MYSQL") else {
        return;
    };
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(&base).await.unwrap();
    sqlx::raw_sql("DROP DATABASE IF EXISTS coturn_import; CREATE DATABASE coturn_import")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    // mysql://USER:PASSWORD@HOST:PORT/DB, as turnadmin's key=value string.
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let (creds, host) = prefix["mysql://".len()..].split_once('@').unwrap();
    let (user, password) = creds.split_once(':').unwrap();
    let (host, port) = host.split_once(':').unwrap();
    let coturn = Coturn::Sql {
        url: format!("{prefix}/coturn_import"),
        flag: "-M",
        conn: format!(
            "host={host} port={port} dbname=coturn_import user={user} password={password}"
        ),
    };
    let schema = std::fs::read_to_string("/usr/share/coturn/schema.sql").unwrap();
    coturn.sql(&schema).await;
    coturn.fill().await;
    imports_like_sqlite(coturn, &temp_dir("mysql")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_imports_the_same_store_as_sqlite() {
    let Some(base) = test_env("TURNPIKE_TEST_REDIS") else {
        return;
    };
    // Database 5 is this test's alone.
    let url = format!("{}/5", base.trim_end_matches('/'));
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("FLUSHDB").query_async(&mut c).await.unwrap();
    let (host, port) = base["redis://".len()..]
        .trim_end_matches('/')
        .split_once(':')
        .unwrap();
    let coturn = Coturn::Redis {
        url,
        conn: format!("ip={host} port={port} dbname=5"),
    };
    coturn.fill().await;
    imports_like_sqlite(coturn, &temp_dir("redis")).await;
}
