//! Config tests: the example file, every key's validation, the layers.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Options::from_toml(text, "test.toml")?.resolve()
}

/// Found by the `config` fuzz target (fuzz/artifacts/config/
/// crash-ef824977…): a quoted key holding a newline made the error two
/// lines. A value with one does the same through `resolve`.
#[test]
fn errors_about_keys_and_values_with_control_characters_stay_on_one_line() {
    let crash = b"\"\\n\"= 702#er,,,,,$,,,,,,\t\t\t\t\t\t\t\tTI";
    let e = parse(std::str::from_utf8(crash).unwrap()).unwrap_err();
    let shown = e.to_string();
    assert!(!shown.contains('\n'), "{shown}");
    assert!(
        shown.starts_with("test.toml: \\n: unknown field"),
        "{shown}"
    );
    let e = parse("listen = [\"a\\nb\\u001b[31m\"]").unwrap_err();
    assert_eq!(
        e.to_string(),
        "listen: `a\\nb\\u{1b}[31m` is not IP:PORT (IPv6 as [ADDR]:PORT, port 0-65535)"
    );
}

#[test]
fn a_user_key_with_multi_byte_characters_is_an_error_not_a_panic() {
    let text = format!("user = [\"u:0xa{}a\"]", "\u{e9}".repeat(15));
    let e = parse(&text).unwrap_err();
    assert!(matches!(e, ConfigError::Invalid { key: "user", .. }), "{e}");
}

#[test]
fn the_example_file_documents_exactly_the_defaults() {
    assert_eq!(parse(EXAMPLE_TOML), Ok(Config::default()));
}

#[test]
fn every_flag_is_a_key_in_the_example_file() {
    use clap::CommandFactory;
    #[derive(clap::Parser)]
    struct Probe {
        #[command(flatten)]
        o: Options,
    }
    for arg in Probe::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let key = long.replace('-', "_");
        assert!(
            EXAMPLE_TOML
                .lines()
                .any(|l| l.starts_with(&format!("{key} = "))
                    || l.starts_with(&format!("# {key} = "))),
            "turnserver.toml does not document `{key}`"
        );
    }
}

#[test]
fn no_file_means_defaults() {
    assert_eq!(
        Config::load(None, Options::default()),
        Ok(Config::default())
    );
}

#[test]
fn rfc5780_without_a_second_address_refuses_to_start_with_a_clear_message() {
    let e = parse("rfc5780 = true").unwrap_err().to_string();
    assert!(e.starts_with("rfc5780:") && e.contains("alt_ip"), "{e}");
    let e = parse("rfc5780 = true\nalt_ip = \"127.0.0.2\"")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("rfc5780:") && e.contains("wildcard"), "{e}");
    let ok = "rfc5780 = true\nalt_ip = \"127.0.0.2\"\nlisten = [\"127.0.0.1:3478\"]";
    let c = parse(ok).unwrap();
    assert_eq!(
        (c.rfc5780, c.alt_ip),
        (true, Some("127.0.0.2".parse().unwrap()))
    );
    let e = parse("rfc5780 = true\nalt_ip = \"127.0.0.1\"\nlisten = [\"127.0.0.1:3478\"]")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("alt_ip:"), "{e}");
    let e = parse("alt_ip = \"nope\"").unwrap_err().to_string();
    assert!(e.starts_with("alt_ip:"), "{e}");
    let e = parse("alt_listening_port = 70000").unwrap_err().to_string();
    assert!(e.starts_with("alt_listening_port:"), "{e}");
}

#[test]
fn dtls_needs_a_certificate_and_a_positive_handshake_cap() {
    let e = parse("dtls = true").unwrap_err().to_string();
    assert!(e.starts_with("tls_listen:"), "{e}");
    let c = parse("dtls = true\ncert = \"c.pem\"\nkey = \"k.pem\"").unwrap();
    assert!(c.dtls);
    assert_eq!(c.max_dtls_handshakes, 1024);
    let e = parse("max_dtls_handshakes = 0").unwrap_err().to_string();
    assert!(e.starts_with("max_dtls_handshakes:"), "{e}");
}

#[test]
fn tls_needs_cert_and_key_and_the_port_defaults_to_5349() {
    let e = parse("tls_listen = [\"127.0.0.1\"]").unwrap_err();
    assert!(e.to_string().starts_with("tls_listen:"), "{e}");
    let e = parse("cert = \"a.pem\"").unwrap_err();
    assert!(e.to_string().starts_with("cert:"), "{e}");
    let c = parse("tls_listen = [\"127.0.0.1\", \"[::1]:443\"]\ncert = \"c.pem\"\nkey = \"k.pem\"")
        .unwrap();
    assert_eq!(
        c.tls_listen,
        vec![
            "127.0.0.1:5349".parse::<SocketAddr>().unwrap(),
            "[::1]:443".parse().unwrap()
        ]
    );
}

#[test]
fn unknown_key_is_named() {
    let e = parse("listen = [\"127.0.0.1:3478\"]\nrelay_magic = 1\n").unwrap_err();
    let s = e.to_string();
    assert!(s.contains("relay_magic"), "{s}");
    assert!(!s.contains('\n'));
}

#[test]
fn port_70000_is_refused_naming_the_key() {
    let e = parse("min_port = 70000").unwrap_err();
    assert!(e.to_string().starts_with("min_port:"), "{e}");
    let e = parse("listen = [\"0.0.0.0:70000\"]").unwrap_err();
    assert!(e.to_string().starts_with("listen:"), "{e}");
}

#[test]
fn min_port_above_max_port_is_refused() {
    let e = parse("min_port = 60000\nmax_port = 50000").unwrap_err();
    assert!(e.to_string().starts_with("min_port:"), "{e}");
}

#[test]
fn wrong_type_names_the_key() {
    let e = parse("log_level = 3").unwrap_err();
    assert!(e.to_string().contains("log_level"), "{e}");
    let e = parse("log_level = \"loud\"").unwrap_err();
    assert!(e.to_string().starts_with("log_level:"), "{e}");
}

#[test]
fn flags_override_the_file() {
    let file = Options::from_toml("listen = [\"127.0.0.1:1\"]\nmin_port = 1000", "f").unwrap();
    let flags = Options {
        listen: vec!["127.0.0.1:2".into()],
        ..Default::default()
    };
    let c = file.overlay(flags).resolve().unwrap();
    assert_eq!(c.listen, vec!["127.0.0.1:2".parse().unwrap()]);
    assert_eq!(c.min_port, 1000);
}

/// Issue 13: on by default; coturn's negative key and flag turn it
/// off; the later layer wins; one layer saying both ways is an error.
#[test]
fn stun_backward_compatibility_has_coturns_off_switch() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        o: Options,
    }
    let flags = |args: &[&str]| {
        let mut argv = vec!["turnpike"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).unwrap().o
    };
    assert!(parse("").unwrap().stun_backward_compatibility);
    assert!(
        !parse("stun_backward_compatibility = false")
            .unwrap()
            .stun_backward_compatibility
    );
    assert!(
        !parse("no_stun_backward_compatibility = true")
            .unwrap()
            .stun_backward_compatibility
    );
    let off = flags(&["--no-stun-backward-compatibility"]);
    assert!(!off.resolve().unwrap().stun_backward_compatibility);
    let file = Options::from_toml("stun_backward_compatibility = true", "f").unwrap();
    let c = file
        .overlay(flags(&["--no-stun-backward-compatibility"]))
        .resolve();
    assert!(!c.unwrap().stun_backward_compatibility);
    let file = Options::from_toml("no_stun_backward_compatibility = true", "f").unwrap();
    let c = file
        .overlay(flags(&["--stun-backward-compatibility"]))
        .resolve();
    assert!(c.unwrap().stun_backward_compatibility);
    let e = parse("stun_backward_compatibility = true\nno_stun_backward_compatibility = true")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("no_stun_backward_compatibility:"), "{e}");
}

fn secret_file(name: &str, contents: &str) -> String {
    let dir = std::env::temp_dir().join(format!("turnpike-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p.display().to_string()
}

/// F15: secrets need not go on the command line.
#[test]
fn secrets_come_from_files_and_a_bad_file_is_named() {
    let rest = secret_file("rest", "rest-from-file\n");
    let jwt = secret_file("jwt", "jwt-from-file-0123456789\n");
    let c = parse(&format!(
        "static_auth_secret = [\"inline\"]\nstatic_auth_secret_file = [\"{rest}\"]\nadmin_jwt_secret_file = \"{jwt}\""
    ))
    .unwrap();
    assert_eq!(
        c.static_auth_secrets,
        vec![
            Secret(b"inline".to_vec()),
            Secret(b"rest-from-file".to_vec())
        ]
    );
    assert_eq!(
        c.admin_jwt_secret,
        Some(Secret(b"jwt-from-file-0123456789".to_vec()))
    );
    let e = parse("admin_jwt_secret_file = \"/nonexistent/jwt\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("admin_jwt_secret_file:") && e.contains("/nonexistent/jwt"),
        "{e}"
    );
    let e = parse("static_auth_secret_file = [\"/nonexistent/rest\"]")
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/rest"), "{e}");
    let short = secret_file("short", "short\n");
    let e = parse(&format!("admin_jwt_secret_file = \"{short}\""))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("admin_jwt_secret:"), "{e}");
    let e = parse(&format!(
        "admin_jwt_secret = \"0123456789abcdef\"\nadmin_jwt_secret_file = \"{jwt}\""
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("not both"), "{e}");
    // A flag (or the environment) replaces the file's secret setting.
    let file = Options::from_toml(&format!("admin_jwt_secret_file = \"{jwt}\""), "f").unwrap();
    let flags = Options {
        admin_jwt_secret: Some("from-the-environment-0123".into()),
        ..Default::default()
    };
    let c = file.overlay(flags).resolve().unwrap();
    assert_eq!(
        c.admin_jwt_secret,
        Some(Secret(b"from-the-environment-0123".to_vec()))
    );
}

#[test]
fn unreadable_file_is_reported() {
    let e = Config::load(
        Some(Path::new("/nonexistent/turnpike.toml")),
        Options::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ConfigError::Unreadable { .. }), "{e}");
}

/// The overlay works on the serialized form: an empty layer changes
/// nothing, and a layer setting keys replaces exactly those.
#[test]
fn overlay_keeps_what_a_layer_leaves_unset_and_takes_what_it_sets() {
    let json = |o: &Options| serde_json::to_value(o).unwrap();
    let file = Options::from_toml(EXAMPLE_TOML, "example").unwrap();
    assert_eq!(json(&file.clone().overlay(Options::default())), json(&file));
    assert_eq!(json(&Options::default().overlay(file.clone())), json(&file));
    let flags = Options::from_toml("realm = \"flags\"\nrelay_ip = [\"192.0.2.9\"]", "f").unwrap();
    let merged = Options::from_toml(
        "realm = \"file\"\nmin_port = 1000\nrelay_ip = [\"192.0.2.1\"]\nuser = [\"a:b\"]",
        "f",
    )
    .unwrap()
    .overlay(flags);
    assert_eq!(merged.realm.as_deref(), Some("flags"));
    assert_eq!(merged.relay_ip, vec!["192.0.2.9".to_string()]);
    assert_eq!(merged.min_port, Some(1000));
    assert_eq!(merged.user, vec!["a:b".to_string()]);
}

#[test]
fn acme_stands_in_for_cert_and_key_and_its_keys_are_checked() {
    let base = "tls_listen = [\"127.0.0.1:443\"]\nacme_directory = \"https://ca.test/dir\"\n";
    let c = parse(&format!(
        "{base}acme_domains = [\"Turn.Example.org.\"]\ndtls = true"
    ))
    .unwrap();
    let a = c.acme.expect("acme");
    assert_eq!(a.domains, vec!["turn.example.org".to_string()]);
    assert_eq!(a.dir, std::path::PathBuf::from(DEFAULT_ACME_DIR));
    assert_eq!(a.account_key, a.dir.join("account.key"));
    assert_eq!(a.http_listen, None);
    let e = parse(base).unwrap_err().to_string();
    assert!(e.starts_with("acme_domains:"), "{e}");
    let e = parse(&format!("{base}acme_domains = [\"a b\"]"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("acme_domains:"), "{e}");
    let e = parse(&format!(
        "{base}acme_domains = [\"a.test\"]\ncert = \"c.pem\"\nkey = \"k.pem\""
    ))
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("acme_directory:"), "{e}");
    let e = parse(&format!(
        "{base}acme_domains = [\"a.test\"]\nacme_http_listen = \"80\""
    ))
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("acme_http_listen:"), "{e}");
    let e = parse("acme_domains = [\"a.test\"]")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("acme_directory:"), "{e}");
    let e = parse("acme_directory = \"http://ca.test/dir\"\nacme_domains = [\"a.test\"]")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("acme_directory:"), "{e}");
}

#[test]
fn selftest_keys_are_read_checked_and_off_by_default() {
    let c = parse("").unwrap();
    assert!(!c.selftest.enabled());
    assert_eq!((c.selftest.rate_per_ip, c.selftest.rate_total), (10, 120));
    let c = parse("selftest = true\nselftest_rate_per_ip = 2\nselftest_rate_total = 5").unwrap();
    assert!(c.selftest.on_admin && c.selftest.enabled());
    assert_eq!((c.selftest.rate_per_ip, c.selftest.rate_total), (2, 5));
    // A listener of its own turns the page on there alone.
    let c = parse("selftest_listen = \"0.0.0.0:8443\"").unwrap();
    assert!(!c.selftest.on_admin && c.selftest.enabled());
    assert_eq!(c.selftest.listen, Some("0.0.0.0:8443".parse().unwrap()));
    for (text, key) in [
        ("selftest_listen = \"nowhere\"", "selftest_listen"),
        ("selftest_rate_per_ip = 0", "selftest_rate_per_ip"),
        ("selftest_rate_total = -1", "selftest_rate_total"),
        ("selftest = true\nadmin_listen = \"off\"", "selftest"),
    ] {
        let e = parse(text).unwrap_err();
        assert!(
            matches!(e, ConfigError::Invalid { key: k, .. } if k == key),
            "{text}: {e}"
        );
    }
    // The flag spells it --selftest.
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Probe {
        #[command(flatten)]
        o: Options,
    }
    let p = Probe::try_parse_from(["t", "--selftest", "--selftest-rate-total", "7"]).unwrap();
    let c = p.o.resolve().unwrap();
    assert!(c.selftest.on_admin);
    assert_eq!(c.selftest.rate_total, 7);
}

#[test]
fn a_public_admin_listener_without_admin_tls_is_warned_about() {
    let warned = |text: &str| {
        parse(text)
            .unwrap()
            .warnings
            .iter()
            .any(|w| w.contains("admin_listen") && w.contains("admin_tls = true"))
    };
    assert!(warned("admin_listen = \"0.0.0.0:9641\""));
    assert!(warned("admin_listen = \"192.0.2.1:9641\""));
    assert!(!warned("admin_listen = \"127.0.0.1:9641\""));
    assert!(!warned("admin_listen = \"[::1]:9641\""));
    assert!(!warned("admin_listen = \"off\""));
    let dir = std::env::temp_dir().join(format!("turnpike-admin-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
    std::fs::write(&cert, "x").unwrap();
    std::fs::write(&key, "x").unwrap();
    let with_tls = format!(
        "admin_listen = \"0.0.0.0:9641\"\nadmin_tls = true\ncert = \"{}\"\nkey = \"{}\"",
        cert.display(),
        key.display()
    );
    assert!(!warned(&with_tls));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_passthrough_idle_timeout_is_ten_minutes_unless_set_and_never_zero() {
    let c = parse("").unwrap();
    assert_eq!(c.tls_passthrough_idle_timeout, Duration::from_secs(600));
    let c = parse("tls_passthrough_idle_timeout = 30").unwrap();
    assert_eq!(c.tls_passthrough_idle_timeout, Duration::from_secs(30));
    for text in [
        "tls_passthrough_idle_timeout = 0",
        "tls_passthrough_idle_timeout = -5",
        "tls_passthrough_idle_timeout = 86401",
    ] {
        let e = parse(text).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    key: "tls_passthrough_idle_timeout",
                    ..
                }
            ),
            "{text}: {e}"
        );
    }
}
