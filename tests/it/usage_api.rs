//! Issue 18: `GET /api/v1/usage` on a running server and `turnpike usage`
//! on its store, over records written through the store.

use std::process::Command;

use serde_json::Value;
use turnpike::store::Store;
use turnpike::usage::UsageRecord;

use crate::admin::{http, server, token};

/// 2026-12-01T00:00:00Z.
const T0: i64 = 1_796_083_200_000;
const DAY: i64 = 86_400_000;
const WINDOW: &str = "from=2026-12-01&to=2026-12-10";

fn rec(id: &str, user: &str, realm: &str, start_ms: i64, secs: i64) -> UsageRecord {
    UsageRecord {
        id: format!("{id:0>32}"),
        node: "turn-a".into(),
        user: user.into(),
        realm: realm.into(),
        credential: "rest".into(),
        label: Some(user.into()),
        client: "192.0.2.1:5000".into(),
        transport: "udp".into(),
        relayed: vec!["198.51.100.1:40000".into()],
        start_ms,
        end_ms: start_ms + secs * 1000,
        end_reason: Some("deleted".into()),
        bytes_to_peer: 1000 * secs as u64,
        packets_to_peer: 10,
        bytes_to_client: 2000,
        packets_to_client: 20,
        peers: 1,
    }
}

fn records() -> Vec<UsageRecord> {
    vec![
        rec("1", "alice", "a.example", T0, 60),
        rec("2", "alice", "a.example", T0 + DAY, 30),
        rec("3", "bob", "a.example", T0 + DAY + 1, 10),
        rec("4", "carol", "b.example", T0 + 2 * DAY, 5),
        rec("5", "dave", "b.example", T0 + 2 * DAY, 1),
        // Outside the window.
        rec("6", "alice", "a.example", T0 - 1, 1000),
        rec("7", "alice", "a.example", T0 + 9 * DAY, 1000),
    ]
}

/// A server whose store holds [`records`]; its admin address and db URL.
async fn serve_with_records() -> (turnpike::Running, std::net::SocketAddr, String) {
    let mut db = String::new();
    let (running, _, admin) = server(|c| db = c.db.clone()).await;
    let store = Store::open(&db).await.unwrap();
    store.write_usage(&records()).await.unwrap();
    store.close().await;
    (running, admin, db)
}

async fn get(admin: std::net::SocketAddr, query: &str, scope: &str) -> (u16, Value) {
    let (code, body) = http(
        admin,
        "GET",
        &format!("/api/v1/usage?{query}"),
        Some(&token(scope)),
        None,
    )
    .await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (code, v)
}

fn keys(v: &Value, what: &str) -> Vec<String> {
    v[what]
        .as_array()
        .unwrap_or_else(|| panic!("no {what}: {v}"))
        .iter()
        .map(|g| {
            g.get("key")
                .or_else(|| g.get("id"))
                .and_then(Value::as_str)
                .unwrap()
                .trim_start_matches('0')
                .to_string()
        })
        .collect()
}

/// Unix seconds of an RFC 3339 time.
fn time_of(s: &str) -> i64 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

fn turnpike(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_turnpike"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn usage_api_sums_groups_and_pages_the_window() {
    let (_s, admin, _db) = serve_with_records().await;
    let (code, v) = get(admin, &format!("{WINDOW}&group_by=user"), "admin").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["group_by"], "user");
    assert_eq!(
        (v["from"].as_str(), v["to"].as_str()),
        (Some("2026-12-01T00:00:00Z"), Some("2026-12-10T00:00:00Z"))
    );
    let t = &v["totals"];
    assert_eq!(t["allocations"], 5);
    assert_eq!(t["seconds"], 106.0);
    assert_eq!(t["bytes_to_peer"], 106_000);
    assert_eq!(t["packets_to_peer"], 50);
    assert_eq!(t["bytes_to_client"], 10_000);
    assert_eq!(t["packets_to_client"], 100);
    assert_eq!(keys(&v, "groups"), ["alice", "bob", "carol", "dave"]);
    assert_eq!(v["groups"][0]["allocations"], 2);
    assert_eq!(v["groups"][0]["seconds"], 90.0);
    assert_eq!(v["next_cursor"], Value::Null);
    assert!(v.get("records").is_none());

    let (_, v) = get(admin, &format!("{WINDOW}&group_by=day"), "admin").await;
    assert_eq!(
        keys(&v, "groups"),
        ["2026-12-01", "2026-12-02", "2026-12-03"]
    );
    let (_, v) = get(admin, &format!("{WINDOW}&group_by=realm"), "admin").await;
    assert_eq!(keys(&v, "groups"), ["a.example", "b.example"]);
    assert_eq!(v["groups"][1]["seconds"], 6.0);
    let (_, v) = get(admin, &format!("{WINDOW}&group_by=node&user=bob"), "admin").await;
    assert_eq!(keys(&v, "groups"), ["turn-a"]);
    assert_eq!(v["totals"]["allocations"], 1);

    // The records, two a page, in start order (4 and 5 share a start).
    let mut ids = Vec::new();
    let mut cursor = String::new();
    for page in 0.. {
        let (code, v) = get(admin, &format!("{WINDOW}&limit=2{cursor}"), "admin").await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["group_by"], "none");
        assert_eq!(v["totals"]["allocations"], 5, "totals cover every page");
        ids.extend(keys(&v, "records"));
        if page == 0 {
            let r = &v["records"][0];
            assert_eq!(r["start"], "2026-12-01T00:00:00Z");
            assert_eq!(r["end"], "2026-12-01T00:01:00Z");
            assert_eq!(
                (r["start_ms"].as_i64(), r["seconds"].as_f64()),
                (Some(T0), Some(60.0))
            );
            assert_eq!(r["relayed"][0], "198.51.100.1:40000");
            assert_eq!(
                (&r["label"], &r["end_reason"]),
                (&Value::from("alice"), &Value::from("deleted"))
            );
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => {
                assert_eq!(page, 2);
                break;
            }
        }
    }
    assert_eq!(ids, ["1", "2", "3", "4", "5"]);
}

#[tokio::test]
async fn a_realm_token_sees_its_realm_only() {
    let (_s, admin, _db) = serve_with_records().await;
    // Without realm, the filter is its own.
    let (code, v) = get(
        admin,
        &format!("{WINDOW}&group_by=realm"),
        "realm:b.example",
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(keys(&v, "groups"), ["b.example"]);
    assert_eq!(v["totals"]["allocations"], 2);
    let (code, v) = get(
        admin,
        &format!("{WINDOW}&realm=b.example"),
        "realm:b.example",
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(keys(&v, "records"), ["4", "5"]);
    // Another realm is refused, as on every realm-scoped route.
    let (code, v) = get(
        admin,
        &format!("{WINDOW}&realm=a.example"),
        "realm:b.example",
    )
    .await;
    assert_eq!((code, v["status"].as_u64()), (403, Some(403)), "{v}");
    // The admin sees every realm, or the one asked for.
    let (_, v) = get(admin, WINDOW, "admin").await;
    assert_eq!(v["totals"]["allocations"], 5);
    let (_, v) = get(admin, &format!("{WINDOW}&realm=a.example"), "admin").await;
    assert_eq!(v["totals"]["allocations"], 3);
    // No token: 401.
    let (code, _) = http(admin, "GET", "/api/v1/usage", None, None).await;
    assert_eq!(code, 401);
}

#[tokio::test]
async fn bad_usage_parameters_are_json_400s() {
    let (_s, admin, _db) = serve_with_records().await;
    let (_, by_user) = get(admin, &format!("{WINDOW}&group_by=user&limit=1"), "admin").await;
    let user_cursor = by_user["next_cursor"].as_str().unwrap().to_string();
    for (query, field) in [
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
        ("from=2026-12-01T25:00:00Z", "from"),
        ("group_by=week", "group_by"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%21%21", "cursor"),
        // A cursor of another grouping.
        (&format!("cursor={user_cursor}") as &str, "cursor"),
    ] {
        let (code, v) = get(admin, query, "admin").await;
        assert_eq!(
            (code, v["status"].as_u64()),
            (400, Some(400)),
            "{query}: {v}"
        );
        let e = v["error"].as_str().unwrap();
        assert!(e.starts_with(&format!("{field} `")), "{query}: {e}");
    }
    // The forms the document promises all read.
    for from in [
        "2026-12-01",
        "2026-12-01T00:00:00Z",
        "2026-12-01T01:00:00%2B01:00",
        "1796083200",
    ] {
        let (code, v) = get(admin, &format!("from={from}&to=2026-12-10"), "admin").await;
        assert_eq!(code, 200, "{from}: {v}");
        assert_eq!(v["totals"]["allocations"], 5, "{from}");
    }
    // An age counts back from now.
    let (code, v) = get(admin, "from=30d", "admin").await;
    assert_eq!(code, 200, "{v}");
    let from = v["from"].as_str().unwrap();
    let want = crate::unix_now() as i64 - 30 * 86_400;
    let got = time_of(from);
    assert!((got - want).abs() <= 5, "{from}");
    // A window that ends before it starts is empty, not an error.
    let (code, v) = get(admin, "from=2026-12-10&to=2026-12-01", "admin").await;
    assert_eq!((code, v["totals"]["allocations"].as_u64()), (200, Some(0)));
}

#[tokio::test]
async fn the_cli_gives_the_apis_answer_and_totals() {
    let (_s, admin, db) = serve_with_records().await;
    let window = ["--since", "2026-12-01", "--until", "2026-12-10"];
    // JSON: the API's answer, every page at once.
    let out = turnpike(
        &[
            &[
                "usage",
                "--db",
                &db,
                "--group-by",
                "user",
                "--format",
                "json",
            ],
            &window[..],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (_, api) = get(admin, &format!("{WINDOW}&group_by=user"), "admin").await;
    assert_eq!(cli, api);
    // CSV: a header, a row per group, and the API's totals in the last row.
    let out = turnpike(
        &[
            &["usage", "--db", &db, "--group-by", "day", "--format", "csv"],
            &window[..],
        ]
        .concat(),
    );
    assert!(out.status.success());
    let csv = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "day,allocations,seconds,bytes_to_peer,packets_to_peer,bytes_to_client,packets_to_client"
    );
    assert_eq!(lines.len(), 5, "{csv}");
    let t = &api["totals"];
    let want = format!(
        "total,{},{:.3},{},{},{},{}",
        t["allocations"],
        t["seconds"].as_f64().unwrap(),
        t["bytes_to_peer"],
        t["packets_to_peer"],
        t["bytes_to_client"],
        t["packets_to_client"]
    );
    assert_eq!(lines[4], want);
    // Records: one per line, the same total.
    let out = turnpike(&[&["usage", "--db", &db, "--format", "csv"], &window[..]].concat());
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(csv.lines().count(), 1 + 5 + 1, "{csv}");
    assert!(
        csv.lines()
            .last()
            .unwrap()
            .ends_with(",5,106.000,106000,50,10000,100"),
        "{csv}"
    );
    // The defaults agree too (the last 30 days, up to now).
    let out = turnpike(&[
        "usage",
        "--db",
        &db,
        "--group-by",
        "realm",
        "--format",
        "json",
    ]);
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (_, api) = get(admin, "group_by=realm", "admin").await;
    assert_eq!(cli["totals"], api["totals"]);
    // A table ends with the total.
    let out = turnpike(&[&["usage", "--db", &db, "--group-by", "realm"], &window[..]].concat());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.lines().last().unwrap().starts_with("total "),
        "{table}"
    );
}

#[tokio::test]
async fn bad_cli_input_is_one_line_and_exit_2() {
    let (_s, _admin, db) = serve_with_records().await;
    for (args, flag) in [
        (&["--since", "yesterday"][..], "--since `yesterday`"),
        (&["--until", "2026-02-30"][..], "--until `2026-02-30`"),
        (&["--group-by", "week"][..], "--group-by `week`"),
        (&["--format", "xml"][..], "--format `xml`"),
    ] {
        let out = turnpike(&[&["usage", "--db", &db][..], args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("error: {flag}: expected")),
            "{err}"
        );
    }
}
