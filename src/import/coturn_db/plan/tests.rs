use super::super::model::{AdminUser, Origin, PeerRange, RealmOption, Secret};
use super::super::report::render;
use super::*;
use crate::store::{StoredOAuthKey, StoredSecret, StoredUser};

const NOW: i64 = 1_800_000_000;
/// MD5("alice:R:PW"), as turnadmin stored it.
const ALICE: &str = "54424b3ac9bf59303711c69798b45336";
const NORTH: &str = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDEK";

fn user(realm: &str, name: &str, key: &str) -> User {
    User {
        realm: realm.into(),
        name: name.into(),
        hmackey: key.into(),
    }
}

fn key(kid: &str, ikm: &str, timestamp: i64, lifetime: i64, alg: &str) -> OAuthKey {
    OAuthKey {
        kid: kid.into(),
        ikm_key: ikm.into(),
        timestamp,
        lifetime,
        as_rs_alg: alg.into(),
        realm: String::new(),
    }
}

fn option(realm: &str, opt: &str, value: &str) -> RealmOption {
    RealmOption {
        realm: realm.into(),
        opt: opt.into(),
        value: value.into(),
    }
}

/// What `turnadmin` and the acceptance test put in coturn's database.
fn coturn() -> CoturnDb {
    CoturnDb {
        users: vec![user("R", "alice", ALICE)],
        secrets: vec![Secret {
            realm: "R".into(),
            value: "SECRET".into(),
        }],
        oauth_keys: vec![key("north", NORTH, 0, 0, "A256GCM")],
        realm_options: vec![
            option("R", "user-quota", "2"),
            option("R", "total-quota", "10"),
            option("R", "max-bps", "500000"),
        ],
        ..Default::default()
    }
}

/// The store after `additions` were written to `have`.
fn applied(mut have: Contents, additions: &[Addition]) -> Contents {
    for a in additions {
        match a.clone() {
            Addition::User {
                realm,
                name,
                ha1_md5,
            } => have.users.push(StoredUser {
                realm,
                name,
                ha1_md5: hex(&ha1_md5),
                ha1_sha256: None,
            }),
            Addition::Secret { realm, value } => have.secrets.push(StoredSecret {
                realm,
                value: value.into_bytes(),
            }),
            Addition::OAuthKey {
                kid,
                key_b64,
                alg,
                lifetime,
            } => have.oauth_keys.push(StoredOAuthKey {
                kid,
                key_b64,
                alg,
                lifetime,
            }),
            Addition::UserQuota { realm, name, quota } => {
                have.user_quotas
                    .retain(|(r, n, _)| (r, n) != (&realm, &name));
                have.user_quotas.push((realm, name, quota));
            }
            Addition::RealmQuota { realm, quota } => {
                have.realm_quotas.retain(|(r, _)| r != &realm);
                have.realm_quotas.push((realm, quota));
            }
        }
    }
    have
}

fn lines(p: &DbImportPlan, outcome: Outcome) -> Vec<&str> {
    p.lines
        .iter()
        .filter(|l| l.outcome == outcome)
        .map(|l| l.text.as_str())
        .collect()
}

#[test]
fn a_fresh_store_gets_every_user_secret_key_and_quota() {
    let p = plan(&coturn(), &Contents::default(), NOW);
    let mut md5 = [0u8; 16];
    for (i, b) in md5.iter_mut().enumerate() {
        *b = u8::from_str_radix(&ALICE[2 * i..2 * i + 2], 16).unwrap();
    }
    assert_eq!(
        p.additions,
        vec![
            Addition::User {
                realm: "R".into(),
                name: "alice".into(),
                ha1_md5: md5,
            },
            Addition::Secret {
                realm: "R".into(),
                value: "SECRET".into(),
            },
            Addition::OAuthKey {
                kid: "north".into(),
                key_b64: NORTH.into(),
                alg: "A256GCM".into(),
                lifetime: 0,
            },
            // max-bps is bytes per second in coturn, bits in turnpike.
            Addition::RealmQuota {
                realm: "R".into(),
                quota: QuotaRow {
                    allocations: Some(10),
                    bps: Some(4_000_000),
                },
            },
            Addition::UserQuota {
                realm: "R".into(),
                name: "alice".into(),
                quota: QuotaRow {
                    allocations: Some(2),
                    bps: None,
                },
            },
        ]
    );
    assert_eq!(p.count(Outcome::Add), 5);
    assert!(lines(&p, Outcome::Add)[0].contains("MD5 key only"));
    let note = lines(&p, Outcome::Note).join("\n");
    assert!(note.contains("set user_quota = 2"), "{note}");
}

#[test]
fn a_second_run_changes_nothing() {
    let first = plan(&coturn(), &Contents::default(), NOW);
    let have = applied(Contents::default(), &first.additions);
    let second = plan(&coturn(), &have, NOW);
    assert!(second.additions.is_empty(), "{:?}", second.additions);
    assert_eq!(second.count(Outcome::Same), 5);
    assert_eq!(second.count(Outcome::Conflict), 0);
    let report = render(&second, false);
    assert!(
        report
            .last()
            .unwrap()
            .starts_with("0 changes, 5 unchanged, 0 conflicts"),
        "{report:?}"
    );
}

#[test]
fn a_user_with_another_key_is_a_conflict_left_alone_with_its_quota() {
    let mut have = Contents::default();
    have.users.push(StoredUser {
        realm: "R".into(),
        name: "alice".into(),
        ha1_md5: "00".repeat(16),
        ha1_sha256: None,
    });
    let p = plan(&coturn(), &have, NOW);
    assert!(!p
        .additions
        .iter()
        .any(|a| matches!(a, Addition::User { .. } | Addition::UserQuota { .. })));
    let conflicts = lines(&p, Outcome::Conflict);
    assert_eq!(conflicts.len(), 1);
    assert!(conflicts[0].contains("\"alice\"") && conflicts[0].contains("left as it was"));
}

#[test]
fn the_same_user_in_another_realm_is_another_user() {
    let mut have = Contents::default();
    have.users.push(StoredUser {
        realm: "other".into(),
        name: "alice".into(),
        ha1_md5: "00".repeat(16),
        ha1_sha256: None,
    });
    let p = plan(&coturn(), &have, NOW);
    assert!(p
        .additions
        .iter()
        .any(|a| matches!(a, Addition::User { realm, .. } if realm == "R")));
    assert_eq!(p.count(Outcome::Conflict), 0);
}

#[test]
fn keys_turnpike_cannot_use_are_skipped_with_the_reason() {
    let db = CoturnDb {
        users: vec![
            user("R", "sha", &"ab".repeat(32)),
            user("R", "short", "abc"),
            user("", "norealm", ALICE),
            // PostgreSQL's char(128) pads with spaces; the reader trims,
            // and so does the plan.
            user("R", "padded", &format!("{}   ", ALICE.to_uppercase())),
        ],
        oauth_keys: vec![
            key("hs", NORTH, 0, 0, "HS256"),
            key("tiny", "MTIz", 0, 0, "A256GCM"),
            key("old", NORTH, 1000, 3600, "A256GCM"),
            key("later", NORTH, NOW - 10, 3600, ""),
        ],
        ..Default::default()
    };
    let p = plan(&db, &Contents::default(), NOW);
    let skipped = lines(&p, Outcome::Skip).join("\n");
    assert!(
        skipped.contains("\"sha\"") && skipped.contains("SHA-256"),
        "{skipped}"
    );
    assert!(
        skipped.contains("\"short\"") && skipped.contains("32 hex"),
        "{skipped}"
    );
    assert!(
        skipped.contains("\"norealm\"") && skipped.contains("no realm"),
        "{skipped}"
    );
    assert!(
        skipped.contains("\"hs\"") && skipped.contains("HS256"),
        "{skipped}"
    );
    assert!(skipped.contains("\"tiny\""), "{skipped}");
    assert!(
        skipped.contains("\"old\"") && skipped.contains("expired"),
        "{skipped}"
    );
    assert_eq!(p.count(Outcome::Skip), 6);
    // A key that coturn would still take is imported without an end (and
    // an empty algorithm is coturn's default), with the end in the report.
    assert!(p.additions.contains(&Addition::OAuthKey {
        kid: "later".into(),
        key_b64: NORTH.into(),
        alg: "A256GCM".into(),
        lifetime: 0,
    }));
    let added = lines(&p, Outcome::Add).join("\n");
    assert!(
        added.contains(&format!("Unix time {}", NOW - 10 + 3600)),
        "{added}"
    );
    assert!(p.additions.iter().any(
        |a| matches!(a, Addition::User { name, ha1_md5, .. } if name == "padded" && hex(ha1_md5) == ALICE)
    ));
}

#[test]
fn an_oauth_key_with_other_bytes_is_a_conflict() {
    let mut have = Contents::default();
    have.oauth_keys.push(StoredOAuthKey {
        kid: "north".into(),
        key_b64: "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIK".into(),
        alg: "A256GCM".into(),
        lifetime: 0,
    });
    let p = plan(&coturn(), &have, NOW);
    assert!(!p
        .additions
        .iter()
        .any(|a| matches!(a, Addition::OAuthKey { .. })));
    assert!(lines(&p, Outcome::Conflict)[0].contains("\"north\""));
}

#[test]
fn a_realm_quota_keeps_what_turnpike_has_and_fills_what_it_lacks() {
    let mut have = Contents::default();
    have.realm_quotas.push((
        "R".into(),
        QuotaRow {
            allocations: Some(5),
            bps: None,
        },
    ));
    let p = plan(&coturn(), &have, NOW);
    assert!(p.additions.contains(&Addition::RealmQuota {
        realm: "R".into(),
        quota: QuotaRow {
            allocations: Some(5),
            bps: Some(4_000_000),
        },
    }));
    let conflict = lines(&p, Outcome::Conflict).join("\n");
    assert!(
        conflict.contains("5 allocations") && conflict.contains("total-quota 10"),
        "{conflict}"
    );
}

#[test]
fn zero_and_unreadable_realm_options_set_nothing() {
    let db = CoturnDb {
        realm_options: vec![
            option("R", "total-quota", "0"),
            option("R", "max-bps", "lots"),
            option("R", "colour", "blue"),
            option("", "user-quota", "3"),
        ],
        ..Default::default()
    };
    let p = plan(&db, &Contents::default(), NOW);
    assert!(p.additions.is_empty(), "{:?}", p.additions);
    assert_eq!(p.count(Outcome::Skip), 3, "{:?}", p.lines);
}

#[test]
fn peers_origins_and_admins_become_notes_with_what_to_do() {
    let db = CoturnDb {
        allowed_peers: vec![PeerRange {
            realm: "R".into(),
            range: "172.17.13.200".into(),
        }],
        denied_peers: vec![
            PeerRange {
                realm: "R".into(),
                range: "172.17.13.133-172.17.14.56".into(),
            },
            PeerRange {
                realm: "R".into(),
                range: "123::45".into(),
            },
            PeerRange {
                realm: "R".into(),
                range: "not-an-ip".into(),
            },
        ],
        origins: vec![Origin {
            origin: "https://app.example:443".into(),
            realm: "R".into(),
        }],
        admin_users: vec![AdminUser {
            name: "boss".into(),
            realm: "R".into(),
        }],
        absent: vec!["oauth_key"],
        ..Default::default()
    };
    let p = plan(&db, &Contents::default(), NOW);
    assert!(p.additions.is_empty());
    let notes = lines(&p, Outcome::Note).join("\n");
    for want in [
        r#"allowed_peer_ip = ["172.17.13.200"]"#,
        r#"denied_peer_ip = ["123::45", "172.17.13.133-172.17.14.56"]"#,
        r#"realm = "R""#,
        "--scope realm:R",
        "table oauth_key is absent",
    ] {
        assert!(notes.contains(want), "{want} not in {notes}");
    }
    assert!(lines(&p, Outcome::Skip)[0].contains("not-an-ip"));
}

#[test]
fn the_report_never_shows_a_secret_or_a_key() {
    let p = plan(&coturn(), &Contents::default(), NOW);
    for dry_run in [false, true] {
        let text = render(&p, dry_run).join("\n");
        assert!(!text.contains("SECRET") && !text.contains(NORTH), "{text}");
    }
    let dry = render(&p, true);
    assert!(dry[0].starts_with("would add: "));
    assert!(dry.last().unwrap().contains("dry run: nothing written"));
}
