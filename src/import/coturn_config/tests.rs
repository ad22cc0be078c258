//! The mapping, class by class, on text (no files).

use std::path::Path;

use super::keys::{Arg, Rule, KEYS};
use super::mapping::{map, ConfigImportPlan};
use super::parse::parse;
use super::report::{Line, Status};
use crate::config::Options;

fn plan(text: &str) -> ConfigImportPlan {
    map(
        parse(text),
        Path::new("/etc/coturn"),
        Path::new("/out/turnserver"),
    )
}

fn line<'a>(p: &'a ConfigImportPlan, name: &str) -> &'a Line {
    p.report
        .lines
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no line for {name}: {:#?}", p.report.lines))
}

fn toml(p: &ConfigImportPlan) -> (String, toml::Table) {
    let text = p.settings.render(&["test".into()]);
    let table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    (text, table)
}

/// turnpike's own check of the translated file (secrets inline).
fn passes_check(p: &ConfigImportPlan) {
    let (text, _) = toml(p);
    let mut o = Options::from_toml(&text, "t").unwrap_or_else(|e| panic!("{e}\n{text}"));
    o.static_auth_secret_file.clear();
    o.static_auth_secret = p.secrets.iter().map(|(_, s)| s.clone()).collect();
    if let Err(e) = o.resolve() {
        panic!("{e}\n{text}");
    }
}

fn strings(t: &toml::Table, key: &str) -> Vec<String> {
    t[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn listening_ip_times_listening_port_is_listen_and_tls_listen() {
    let p = plan(
        "listening-ip=127.0.0.1\nlistening-ip=::1\nlistening-port=3500\ntls-listening-port=5400\n\
         cert=certs/c.pem\npkey=/abs/k.pem\naux-server=10.0.0.1:3600\n",
    );
    let (_, t) = toml(&p);
    assert_eq!(
        strings(&t, "listen"),
        ["127.0.0.1:3500", "[::1]:3500", "10.0.0.1:3600"]
    );
    assert_eq!(strings(&t, "tls_listen"), ["127.0.0.1:5400", "[::1]:5400"]);
    assert_eq!(t["cert"].as_str(), Some("/etc/coturn/certs/c.pem"));
    assert_eq!(t["key"].as_str(), Some("/abs/k.pem"));
    for name in [
        "listening-ip",
        "listening-port",
        "tls-listening-port",
        "cert",
        "pkey",
        "aux-server",
    ] {
        assert_eq!(line(&p, name).status, Status::Mapped, "{name}");
    }
    assert!(line(&p, "listening-ip")
        .detail
        .contains("listen = [\"127.0.0.1:3500\""));
    assert_eq!(p.report.exit_code(), 0);
    passes_check(&p);
}

#[test]
fn a_port_alone_listens_on_both_wildcards_and_no_port_keeps_the_default() {
    let (_, t) = toml(&plan("listening-port=3900\n"));
    assert_eq!(strings(&t, "listen"), ["0.0.0.0:3900", "[::]:3900"]);
    let (_, t) = toml(&plan("realm=r\n"));
    assert!(!t.contains_key("listen"));
}

#[test]
fn no_tls_drops_the_certificate_unless_dtls_needs_it() {
    let p = plan("cert=/c\npkey=/k\nno-tls\n");
    let (_, t) = toml(&p);
    assert!(!t.contains_key("cert") && !t.contains_key("tls_listen"));
    assert_eq!(line(&p, "no-tls").status, Status::Mapped);
    assert_eq!(line(&p, "cert").status, Status::Ignored);

    let p = plan("cert=/c\npkey=/k\nno-tls\ndtls\n");
    let (_, t) = toml(&p);
    assert_eq!(t["dtls"].as_bool(), Some(true));
    assert!(t.contains_key("cert") && !t.contains_key("tls_listen"));
    assert_eq!(
        line(&p, "no-tls").status,
        Status::Unsupported { security: false }
    );

    let p = plan("cert=/c\n");
    assert_eq!(line(&p, "cert").status, Status::Invalid);
    assert!(!toml(&p).1.contains_key("cert"));
    passes_check(&p);
}

#[test]
fn users_become_md5_keys_and_no_password_is_written_or_reported() {
    let p = plan(
        "realm=example.org\nuser=alice:wonderland\nuser=ninefingers:0xBC807EE29DF3C9FFA736523FB2C4E8EE\n\
         user=alice:looking-glass\nuser=broken:0x1234\nuser=nocolon\n",
    );
    let (text, t) = toml(&p);
    let md5 = |s: &str| {
        use md5::Digest as _;
        md5::Md5::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(
        strings(&t, "user"),
        [
            "ninefingers:0xbc807ee29df3c9ffa736523fb2c4e8ee".to_string(),
            format!("alice:0x{}", md5("alice:example.org:looking-glass")),
        ]
    );
    let report = p.report.render("");
    for secret in ["wonderland", "looking-glass", "nocolon", "1234"] {
        assert!(!text.contains(secret), "{secret} in the TOML");
        assert!(!report.contains(secret), "{secret} in the report");
    }
    let user = line(&p, "user");
    assert_eq!(user.status, Status::Invalid);
    assert_eq!(user.count, 5);
    assert!(user.detail.contains("`broken`"), "{}", user.detail);
    assert!(p.holds_user_keys);
    assert_eq!(p.report.exit_code(), 1);
    passes_check(&p);
}

#[test]
fn a_user_without_a_realm_is_keyed_for_turnpikes_default_realm() {
    let p = plan("user=bob:pw\n");
    let (_, t) = toml(&p);
    let key = strings(&t, "user")[0].clone();
    let mut c = crate::auth::Credentials::new("turnpike");
    c.add_spec("bob:pw").unwrap();
    let want: String = c
        .get("bob")
        .unwrap()
        .md5
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(key, format!("bob:0x{want}"));
    assert!(p
        .report
        .notes
        .iter()
        .any(|n| n.contains("realm is not set")));
}

#[test]
fn static_users_are_left_out_under_rest_secrets_as_coturn_ignores_them() {
    for rest in ["use-auth-secret", "static-auth-secret=north"] {
        let p = plan(&format!("user=alice:pw\n{rest}\n"));
        assert_eq!(line(&p, "user").status, Status::Ignored, "{rest}");
        assert!(!toml(&p).1.contains_key("user"));
        assert!(!p.holds_user_keys);
    }
}

#[test]
fn the_rest_secret_goes_to_a_file_never_into_the_toml_or_report() {
    let p = plan("use-auth-secret\nstatic-auth-secret=north-wind\nstatic-auth-secret=\"south wind\"\nstatic-auth-secret=north-wind\n");
    let (text, t) = toml(&p);
    assert_eq!(
        strings(&t, "static_auth_secret_file"),
        [
            "/out/turnserver.static_auth_secret",
            "/out/turnserver.static_auth_secret.2"
        ]
    );
    assert_eq!(
        p.secrets
            .iter()
            .map(|(f, s)| (f.display().to_string(), s.as_str()))
            .collect::<Vec<_>>(),
        [
            (
                "/out/turnserver.static_auth_secret".to_string(),
                "north-wind"
            ),
            (
                "/out/turnserver.static_auth_secret.2".to_string(),
                "south wind"
            ),
        ]
    );
    let report = p.report.render("");
    for secret in ["north", "south"] {
        assert!(
            !text.contains(secret) && !report.contains(secret),
            "{secret}"
        );
    }
    assert!(line(&p, "static-auth-secret").detail.contains("mode 0600"));
    assert_eq!(line(&p, "use-auth-secret").status, Status::Mapped);
    passes_check(&p);
}

#[test]
fn numbers_keep_coturns_meaning() {
    let p = plan("stale-nonce\nmax-bps=125000\nuser-quota=12\ntotal-quota=300\nmin-port=50000\nmax-port=50100\nmax-allocate-lifetime=60\nrelay-threads=0\n");
    let (_, t) = toml(&p);
    assert_eq!(t["stale_nonce"].as_integer(), Some(600));
    // coturn counts bytes per second, turnpike bits.
    assert_eq!(t["max_bps"].as_integer(), Some(1_000_000));
    assert_eq!(t["user_quota"].as_integer(), Some(12));
    assert_eq!(t["total_quota"].as_integer(), Some(300));
    assert_eq!(t["min_port"].as_integer(), Some(50000));
    assert_eq!(t["max_port"].as_integer(), Some(50100));
    assert_eq!(t["max_allocate_lifetime"].as_integer(), Some(600));
    assert_eq!(t["workers"].as_integer(), Some(1));
    passes_check(&p);
    let (_, t) = toml(&plan("stale-nonce=0\n"));
    assert_eq!(t["stale_nonce"].as_integer(), Some(86_400));
    let p = plan("min-port=60000\nmax-port=50000\n");
    assert_eq!(line(&p, "min-port").status, Status::Invalid);
    assert!(!toml(&p).1.contains_key("min_port"));
}

#[test]
fn external_ip_relay_ip_and_peer_ranges_pass_through() {
    let p = plan(
        "external-ip=60.70.80.91/172.17.19.101\nexternal-ip=60.70.80.92\nrelay-ip=172.17.19.105\nrelay-ip=172.17.19.106\n\
         relay-ip=2001:db8::5\nallowed-peer-ip=10.0.0.5\ndenied-peer-ip=83.166.64.0-83.166.95.255\ndenied-peer-ip=nonsense\n\
         allow-loopback-peers\nno-multicast-peers\n",
    );
    let (_, t) = toml(&p);
    assert_eq!(
        strings(&t, "external_ip"),
        ["60.70.80.91/172.17.19.101", "60.70.80.92"]
    );
    assert_eq!(strings(&t, "relay_ip"), ["172.17.19.105", "2001:db8::5"]);
    assert!(line(&p, "relay-ip").detail.contains("172.17.19.106"));
    assert_eq!(strings(&t, "allowed_peer_ip"), ["10.0.0.5"]);
    assert_eq!(strings(&t, "denied_peer_ip"), ["83.166.64.0-83.166.95.255"]);
    assert_eq!(line(&p, "denied-peer-ip").status, Status::Invalid);
    assert!(line(&p, "denied-peer-ip").detail.contains("`nonsense`"));
    assert_eq!(t["allow_loopback_peers"].as_bool(), Some(true));
    assert_eq!(line(&p, "no-multicast-peers").status, Status::Mapped);
    assert!(line(&p, "no-multicast-peers")
        .detail
        .starts_with("turnpike's default"));
    passes_check(&p);
}

#[test]
fn each_class_has_its_status_and_exit_code() {
    let cases: &[(&str, Status, u8)] = &[
        ("lt-cred-mech", Status::Mapped, 0),
        ("verbose", Status::Ignored, 0),
        ("mobility", Status::Unsupported { security: false }, 0),
        ("web-admin", Status::Mapped, 0),
        (
            "web-admin-port=8080",
            Status::Unsupported { security: false },
            0,
        ),
        (
            "cli-password=qwerty",
            Status::Unsupported { security: false },
            0,
        ),
        ("no-udp", Status::Unsupported { security: true }, 1),
        (
            "psql-userdb=\"host=db password=hunter2\"",
            Status::Unsupported { security: true },
            1,
        ),
        (
            "CA-file=/etc/ca.pem",
            Status::Unsupported { security: true },
            1,
        ),
        ("frobnicate=3", Status::Unknown, 1),
        ("no-udp=false", Status::Ignored, 0),
        ("no-udp=maybe", Status::Invalid, 1),
        ("realm", Status::Invalid, 1),
        ("channel-lifetime=600", Status::Mapped, 0),
        (
            "channel-lifetime=60",
            Status::Unsupported { security: false },
            0,
        ),
        ("bps-capacity=0", Status::Mapped, 0),
        (
            "bps-capacity=1000",
            Status::Unsupported { security: true },
            1,
        ),
    ];
    for (text, status, code) in cases {
        let p = plan(text);
        assert_eq!(p.report.lines.len(), 1, "{text}");
        assert_eq!(&p.report.lines[0].status, status, "{text}");
        assert_eq!(p.report.exit_code(), *code, "{text}");
        let report = p.report.render("");
        for secret in ["qwerty", "hunter2"] {
            assert!(!report.contains(secret), "{text}: {report}");
        }
    }
}

#[test]
fn garbage_lines_are_named_and_words_that_are_no_option_are_not_shown() {
    let p = plan("this is not a key\n===\n--no-cli s3cr3t-word\n\u{1b}[31mred=1\n");
    let names: Vec<&str> = p.report.lines.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        ["this", "line 2", "no-cli", "line 3", "\\u{1b}[31mred"]
    );
    assert_eq!(p.report.lines[0].status, Status::Unknown);
    assert_eq!(p.report.lines[3].status, Status::Unknown);
    assert!(!p.report.render("").contains("s3cr3t"));
    assert_eq!(p.report.exit_code(), 1);
}

#[test]
fn repeated_single_options_count_once_and_the_last_value_wins() {
    let p = plan("realm=a.org\nrealm=b.org\n");
    assert_eq!(toml(&p).1["realm"].as_str(), Some("b.org"));
    assert_eq!(line(&p, "realm").count, 2);
    assert_eq!(p.report.lines.len(), 1);
}

#[test]
fn classic_stun_switches_map_whichever_comes_last() {
    let (_, t) = toml(&plan("no-stun-backward-compatibility\n"));
    assert_eq!(t["stun_backward_compatibility"].as_bool(), Some(false));
    let (_, t) = toml(&plan(
        "no-stun-backward-compatibility\nstun-backward-compatibility\n",
    ));
    assert_eq!(t["stun_backward_compatibility"].as_bool(), Some(true));
    let (_, t) = toml(&plan("no-stun-backward-compatibility=0\n"));
    assert_eq!(t["stun_backward_compatibility"].as_bool(), Some(true));
}

/// A plausible value for every option the table maps.
fn sample(name: &str, arg: Arg) -> Option<&'static str> {
    Some(match name {
        "listening-ip" => "127.0.0.1",
        "aux-server" => "127.0.0.1:3600",
        "relay-ip" => "127.0.0.1",
        "external-ip" => "192.0.2.1",
        "cert" => "/c.pem",
        "pkey" => "/k.pem",
        "user" => "alice:pw",
        "realm" | "server-name" => "example.org",
        "static-auth-secret" => "north",
        "rest-api-separator" => "-",
        "allowed-peer-ip" | "denied-peer-ip" => "10.0.0.1",
        "prometheus-address" => "127.0.0.1",
        "min-port" => "50000",
        "max-port" => "50100",
        "max-allocate-lifetime" => "1200",
        "tls-listening-port" => "5400",
        "listening-port" => "3500",
        "alt-listening-port" | "prometheus-port" => "9700",
        _ if arg == Arg::Flag => return None,
        _ => "7",
    })
}

#[test]
fn every_mapped_option_has_a_handler_and_all_together_pass_the_check() {
    let mut text = String::new();
    for k in KEYS.iter().filter(|k| matches!(k.rule, Rule::Map { .. })) {
        match sample(k.name, k.arg) {
            Some(v) => text += &format!("{}={v}\n", k.name),
            None => text += &format!("{}\n", k.name),
        }
    }
    let p = plan(&text);
    for l in &p.report.lines {
        assert!(
            !l.detail.starts_with("internal"),
            "{}: {}",
            l.name,
            l.detail
        );
    }
    passes_check(&p);
}

#[test]
fn every_option_of_debians_example_file_is_known() {
    // Enable every option line of Debian's turnserver.conf: `#key...`
    // followed by `=`, ` "` or the end, and `# key=value`.
    let example = include_str!("../../../tests/data/coturn/turnserver.conf");
    let mut enabled = String::new();
    for l in example.lines() {
        let body = l.strip_prefix("# ").filter(|b| {
            b.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            })
        });
        let body = body.or_else(|| {
            l.strip_prefix('#').filter(|b| {
                let word_end = b.find([' ', '=']).unwrap_or(b.len());
                let rest = &b[word_end..];
                b.starts_with(|c: char| c.is_ascii_alphabetic())
                    && b[..word_end]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    && (rest.is_empty() || rest.starts_with('=') || rest.starts_with(" \""))
            })
        });
        enabled += body.unwrap_or(l);
        enabled += "\n";
    }
    let p = plan(&enabled);
    let unknown: Vec<&str> = p
        .report
        .lines
        .iter()
        .filter(|l| l.status == Status::Unknown)
        .map(|l| l.name.as_str())
        .collect();
    assert!(unknown.is_empty(), "unknown: {unknown:?}");
    assert!(p.report.lines.len() >= 100, "{}", p.report.lines.len());
    for l in &p.report.lines {
        assert!(!l.detail.is_empty(), "{}", l.name);
    }
}
