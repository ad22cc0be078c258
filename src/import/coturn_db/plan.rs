//! What an import would do: coturn's rows against turnpike's store. Pure
//! (no I/O, the time is an argument), so every rule is a unit test.
//!
//! | coturn | turnpike |
//! |---|---|
//! | `turnusers_lt` (realm, name, hmackey) | a stored user with that MD5 key (no SHA-256 key: no password to make one from) |
//! | `turn_secret` (realm, value) | a REST secret of the realm |
//! | `oauth_key` | an OAuth key (key ids are global in both) |
//! | `turn_realm_option` total-quota, max-bps | the realm's quota: allocations, and bps = max-bps × 8 (coturn counts bytes) |
//! | `turn_realm_option` user-quota | each imported user's quota, and a note: `user_quota` in the config |
//! | `allowed_peer_ip`, `denied_peer_ip` | notes: the config lines (peer policy lives in the config) |
//! | `turn_origin_to_realm`, `admin_user` | notes: what to do instead |
//!
//! Rows are matched by realm and name (key id for OAuth keys, realm and
//! value for secrets). A row already there with the same value is
//! unchanged; one with a different value is a conflict and stays as it was.

use std::collections::BTreeMap;

use crate::auth::oauth::{Alg, CLOCK_SLACK};
use crate::store::{Addition, Contents, QuotaRow};

use super::model::{CoturnDb, OAuthKey, User};

/// What happens to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Written (or, in a dry run, would be).
    Add,
    /// Already in the store with the same value.
    Same,
    /// In the store with another value: left as it was.
    Conflict,
    /// Cannot be imported (the line says why).
    Skip,
    /// Not the store's business: what to do instead.
    Note,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Line {
    pub outcome: Outcome,
    pub text: String,
}

/// The additions and the report.
#[derive(Debug, Default)]
pub(super) struct DbImportPlan {
    pub additions: Vec<Addition>,
    pub lines: Vec<Line>,
}

impl DbImportPlan {
    fn line(&mut self, outcome: Outcome, text: String) {
        self.lines.push(Line { outcome, text });
    }

    pub(super) fn count(&self, outcome: Outcome) -> usize {
        self.lines.iter().filter(|l| l.outcome == outcome).count()
    }
}

/// A name as the report shows it: quoted, control characters escaped, so
/// every item stays on one line.
fn q(s: &str) -> String {
    format!("{s:?}")
}

fn user_label(realm: &str, name: &str) -> String {
    format!("user {} in realm {}", q(name), q(realm))
}

/// The config file's spelling of a list of strings.
fn toml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// What to do with coturn's database, given the store's `have` at Unix
/// time `now`.
pub(super) fn plan(db: &CoturnDb, have: &Contents, now: i64) -> DbImportPlan {
    let mut p = DbImportPlan::default();
    for table in &db.absent {
        p.line(
            Outcome::Note,
            format!("table {table} is absent (an older coturn schema): nothing read from it"),
        );
    }
    let imported = users(db, have, &mut p);
    secrets(db, have, &mut p);
    oauth_keys(db, have, now, &mut p);
    realm_options(db, have, &imported, &mut p);
    peers(db, &mut p);
    for o in sorted(&db.origins, |o| (o.origin.clone(), o.realm.clone())) {
        p.line(
            Outcome::Note,
            format!(
                "origin {} maps to realm {} in coturn; turnpike ignores ORIGIN and serves one realm per node: send that origin's clients to a node with realm = {}",
                q(&o.origin),
                q(&o.realm),
                q(&o.realm)
            ),
        );
    }
    for a in sorted(&db.admin_users, |a| (a.name.clone(), a.realm.clone())) {
        let scope = if a.realm.is_empty() {
            "admin".to_string()
        } else {
            format!("realm:{}", a.realm)
        };
        p.line(
            Outcome::Note,
            format!(
                "web admin user {} is not imported: turnpike's admin API takes bearer tokens (turnpike admin-token --scope {scope})",
                q(&a.name)
            ),
        );
    }
    p
}

fn sorted<T: Clone, K: Ord>(items: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
    let mut v = items.to_vec();
    v.sort_by_key(|t| key(t));
    v
}

/// A coturn key as the 16 bytes of an MD5 HA1, if it is one.
fn md5_key(hmackey: &str) -> Option<[u8; 16]> {
    let k = hmackey.trim();
    if k.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(k.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Users; returns the (realm, name) of those the store will have with
/// coturn's key (added or unchanged), which the realm's user-quota covers.
fn users(db: &CoturnDb, have: &Contents, p: &mut DbImportPlan) -> Vec<(String, String)> {
    let mut imported = Vec::new();
    for User {
        realm,
        name,
        hmackey,
    } in sorted(&db.users, |u| (u.realm.clone(), u.name.clone()))
    {
        let label = user_label(&realm, &name);
        if realm.is_empty() {
            p.line(
                Outcome::Skip,
                format!("{label}: no realm; add the user with turnpike user add --realm"),
            );
            continue;
        }
        let Some(md5) = md5_key(&hmackey) else {
            let why = if hmackey.trim().len() == 64 {
                "its key is SHA-256 only (coturn's old --sha256); turnpike needs the MD5 key: set a password with turnpike user add"
            } else {
                "its key is not 32 hex digits (MD5 of name:realm:password)"
            };
            p.line(Outcome::Skip, format!("{label}: {why}"));
            continue;
        };
        match have.user(&realm, &name) {
            Some(u) if u.ha1_md5 == hex(&md5) => {
                p.line(Outcome::Same, label);
                imported.push((realm, name));
            }
            Some(_) => p.line(
                Outcome::Conflict,
                format!("{label}: turnpike's key differs from coturn's; left as it was (turnpike user passwd to change it)"),
            ),
            None => {
                let a = Addition::User {
                    realm: realm.clone(),
                    name: name.clone(),
                    ha1_md5: md5,
                };
                if let Err(e) = a.check() {
                    p.line(Outcome::Skip, format!("{label}: {e}"));
                    continue;
                }
                p.additions.push(a);
                p.line(
                    Outcome::Add,
                    format!("{label} (MD5 key only: clients must sign with MD5)"),
                );
                imported.push((realm, name));
            }
        }
    }
    imported
}

fn secrets(db: &CoturnDb, have: &Contents, p: &mut DbImportPlan) {
    let mut n_in_realm: BTreeMap<String, usize> = BTreeMap::new();
    for s in sorted(&db.secrets, |s| (s.realm.clone(), s.value.clone())) {
        let n = n_in_realm.entry(s.realm.clone()).or_default();
        *n += 1;
        // The value is never shown: its rank in the realm names it.
        let label = format!("REST secret #{n} of realm {}", q(&s.realm));
        if s.realm.is_empty() {
            p.line(
                Outcome::Skip,
                format!("{label}: no realm; add it with turnpike secret add --realm"),
            );
            continue;
        }
        if have.has_secret(&s.realm, s.value.as_bytes()) {
            p.line(Outcome::Same, label);
            continue;
        }
        let a = Addition::Secret {
            realm: s.realm.clone(),
            value: s.value.clone(),
        };
        if let Err(e) = a.check() {
            p.line(Outcome::Skip, format!("{label}: {e}"));
            continue;
        }
        p.additions.push(a);
        p.line(Outcome::Add, label);
    }
}

fn oauth_keys(db: &CoturnDb, have: &Contents, now: i64, p: &mut DbImportPlan) {
    for k in sorted(&db.oauth_keys, |k| k.kid.clone()) {
        let OAuthKey {
            kid,
            ikm_key,
            timestamp,
            lifetime,
            as_rs_alg,
            realm,
        } = &k;
        let label = format!("OAuth key {}", q(kid));
        // coturn's default algorithm when none is stored.
        let alg_name = if as_rs_alg.is_empty() {
            "A256GCM"
        } else {
            as_rs_alg
        };
        let Some(alg) = Alg::parse(alg_name) else {
            p.line(
                Outcome::Skip,
                format!(
                    "{label}: as_rs_alg {} is not A256GCM or A128GCM",
                    q(alg_name)
                ),
            );
            continue;
        };
        // coturn refuses a key after timestamp + lifetime (and its slack);
        // turnpike's keys have no end, so the report says when to remove it.
        let ends = (*lifetime > 0).then(|| timestamp.saturating_add(*lifetime));
        if let Some(end) = ends {
            if end.saturating_add(CLOCK_SLACK as i64) <= now {
                p.line(
                    Outcome::Skip,
                    format!("{label}: expired in coturn (timestamp {timestamp} + lifetime {lifetime} s)"),
                );
                continue;
            }
        }
        let a = Addition::OAuthKey {
            kid: kid.clone(),
            key_b64: ikm_key.clone(),
            alg: alg.name().to_string(),
            lifetime: 0,
        };
        if let Err(e) = a.check() {
            p.line(Outcome::Skip, format!("{label}: {e}"));
            continue;
        }
        let mut notes = Vec::new();
        if let Some(end) = ends {
            notes.push(format!(
                "coturn stops accepting it at Unix time {end}; turnpike keys do not expire: remove it then (turnpike oauth-key remove {kid})"
            ));
        }
        if !realm.is_empty() {
            notes.push(format!(
                "coturn puts its users in realm {}; in turnpike they belong to the realm of the node they use",
                q(realm)
            ));
        }
        match have.oauth_key(kid) {
            Some(h) => {
                let theirs = crate::store::keys::parse_oauth_key(&h.key_b64, &h.alg, h.lifetime);
                let ours = crate::store::keys::parse_oauth_key(ikm_key, alg.name(), 0);
                match (theirs, ours) {
                    (Ok(t), Ok(o)) if t == o => p.line(Outcome::Same, label),
                    _ => p.line(
                        Outcome::Conflict,
                        format!("{label}: turnpike's key (or its algorithm or lifetime) differs from coturn's; left as it was"),
                    ),
                }
            }
            None => {
                p.additions.push(a);
                let mut text = format!("{label} ({})", alg.name());
                for n in notes {
                    text.push_str("; ");
                    text.push_str(&n);
                }
                p.line(Outcome::Add, text);
            }
        }
    }
}

/// A realm option's value: a count, or why not.
fn count(opt: &str, value: &str) -> Result<i64, String> {
    value
        .trim()
        .parse::<u32>()
        .map(i64::from)
        .map_err(|_| format!("{opt} {} is not a number from 0 to {}", q(value), u32::MAX))
}

/// One quota field against the store's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// The store has none: coturn's is set.
    Set,
    /// The store has the same.
    Same,
    /// The store has another: kept.
    Conflict(i64),
}

fn field(have: Option<i64>, want: i64, into: &mut Option<i64>) -> Field {
    match have {
        None => {
            *into = Some(want);
            Field::Set
        }
        Some(h) if h == want => Field::Same,
        Some(h) => Field::Conflict(h),
    }
}

const NO_QUOTA: QuotaRow = QuotaRow {
    allocations: None,
    bps: None,
};

/// The realm's quota from total-quota and max-bps (bytes per second).
fn realm_quota(
    realm: &str,
    allocations: Option<i64>,
    bytes_per_sec: Option<i64>,
    have: &Contents,
    p: &mut DbImportPlan,
) {
    let rl = format!("realm {}", q(realm));
    let current = have.realm_quota(realm).cloned().unwrap_or(NO_QUOTA);
    let mut next = current.clone();
    let mut fields = Vec::new();
    let mut said = Vec::new();
    if let Some(n) = allocations {
        said.push(format!("allocations {n} (coturn's total-quota)"));
        let f = field(current.allocations, n, &mut next.allocations);
        if let Field::Conflict(h) = f {
            p.line(
                Outcome::Conflict,
                format!("quota of {rl}: turnpike allows {h} allocations, coturn's total-quota {n}; left as it was"),
            );
        }
        fields.push(f);
    }
    if let Some(b) = bytes_per_sec {
        let bits = b.saturating_mul(8);
        said.push(format!("bps {bits} (coturn's max-bps, {b} bytes/s, × 8)"));
        let f = field(current.bps, bits, &mut next.bps);
        if let Field::Conflict(h) = f {
            p.line(
                Outcome::Conflict,
                format!("quota of {rl}: turnpike allows {h} bps, coturn's max-bps {b} bytes/s is {bits} bps; left as it was"),
            );
        }
        fields.push(f);
    }
    let text = format!("quota of {rl}: {}", said.join(", "));
    if fields.contains(&Field::Set) {
        p.additions.push(Addition::RealmQuota {
            realm: realm.to_string(),
            quota: next,
        });
        p.line(Outcome::Add, text);
    } else if fields.iter().all(|f| *f == Field::Same) {
        p.line(Outcome::Same, text);
    }
}

/// coturn's user-quota of a realm, on each user imported into it.
fn user_quotas(
    realm: &str,
    n: i64,
    imported: &[(String, String)],
    have: &Contents,
    p: &mut DbImportPlan,
) {
    for (_, name) in imported.iter().filter(|(r, _)| r == realm) {
        let label = format!("quota of {}", user_label(realm, name));
        let current = have.user_quota(realm, name).cloned().unwrap_or(NO_QUOTA);
        let mut next = current.clone();
        let text = format!("{label}: allocations {n} (coturn's user-quota of the realm)");
        match field(current.allocations, n, &mut next.allocations) {
            Field::Set => {
                p.additions.push(Addition::UserQuota {
                    realm: realm.to_string(),
                    name: name.clone(),
                    quota: next,
                });
                p.line(Outcome::Add, text);
            }
            Field::Same => p.line(Outcome::Same, text),
            Field::Conflict(h) => p.line(
                Outcome::Conflict,
                format!("{label}: turnpike allows {h} allocations, coturn's user-quota {n}; left as it was"),
            ),
        }
    }
    p.line(
        Outcome::Note,
        format!(
            "realm {}: coturn's user-quota {n} also covers REST and OAuth users and users added later: set user_quota = {n} in the turnserver.toml of the node serving it",
            q(realm)
        ),
    );
}

fn realm_options(
    db: &CoturnDb,
    have: &Contents,
    imported: &[(String, String)],
    p: &mut DbImportPlan,
) {
    let mut by_realm: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for o in &db.realm_options {
        by_realm
            .entry(&o.realm)
            .or_default()
            .insert(&o.opt, &o.value);
    }
    for (realm, opts) in by_realm {
        if realm.is_empty() {
            p.line(
                Outcome::Skip,
                "realm options without a realm: set user_quota, total_quota and max_bps in the config instead".into(),
            );
            continue;
        }
        let (mut allocations, mut bytes_per_sec, mut per_user) = (None, None, None);
        for (opt, value) in opts {
            let slot = match opt {
                "total-quota" => &mut allocations,
                "max-bps" => &mut bytes_per_sec,
                "user-quota" => &mut per_user,
                _ => {
                    p.line(
                        Outcome::Skip,
                        format!("realm {}: option {} is not one of coturn's (max-bps, total-quota, user-quota)", q(realm), q(opt)),
                    );
                    continue;
                }
            };
            match count(opt, value) {
                // 0 is "no limit" in coturn and turnpike alike: nothing to set.
                Ok(0) => {}
                Ok(n) => *slot = Some(n),
                Err(e) => p.line(Outcome::Skip, format!("realm {}: {e}", q(realm))),
            }
        }
        if allocations.is_some() || bytes_per_sec.is_some() {
            realm_quota(realm, allocations, bytes_per_sec, have, p);
        }
        if let Some(n) = per_user {
            user_quotas(realm, n, imported, have, p);
        }
    }
}

fn peers(db: &CoturnDb, p: &mut DbImportPlan) {
    for (key, rows) in [
        ("allowed_peer_ip", &db.allowed_peers),
        ("denied_peer_ip", &db.denied_peers),
    ] {
        let mut by_realm: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for r in rows.iter() {
            by_realm.entry(&r.realm).or_default().push(&r.range);
        }
        for (realm, mut ranges) in by_realm {
            ranges.sort();
            ranges.dedup();
            let (good, bad): (Vec<&str>, Vec<&str>) = ranges
                .into_iter()
                .partition(|r| crate::turn::policy::IpRange::parse(r).is_ok());
            let whose = if realm.is_empty() {
                "every node".to_string()
            } else {
                format!("the node serving realm {}", q(realm))
            };
            if !good.is_empty() {
                p.line(
                    Outcome::Note,
                    format!("peer policy is configuration in turnpike: add {key} = {} to the turnserver.toml of {whose}", toml_list(&good)),
                );
            }
            for r in bad {
                p.line(
                    Outcome::Skip,
                    format!(
                        "{key} {} of {whose}: not an IP, IP/PREFIX or FIRST-LAST range",
                        q(r)
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
