//! Revoked names (issue 19): a REST username, a long-term user or an OAuth
//! kid that every node refuses from the next snapshot on, and whose
//! allocations end. The server matches the name alone, whatever the
//! credential: `kind` is what the name looks like, for people.
//!
//! * A REST revocation ends when its credential would have (the expiry
//!   its username carries), but no sooner than [`REST_FLOOR_SECS`] from
//!   now: an allocation may outlive its REST credential (coturn's lax
//!   expiry), and every node must see the revocation to end it.
//! * A user or kid revocation lasts until removed.
//! * Live revocations are capped per realm ([`MAX_PER_REALM`]) and in total
//!   ([`MAX_TOTAL`]); expired rows are pruned by the next revocation and
//!   never loaded.

use sqlx::Row;

use super::users::check_name;
use super::{row_key, text, Store, StoreError};
use crate::stun::attributes::MAX_USERNAME_BYTES;

/// Live revocations one realm may hold.
pub(crate) const MAX_PER_REALM: i64 = 10_000;
/// Live revocations all realms together may hold.
pub(crate) const MAX_TOTAL: i64 = 100_000;
/// The shortest life of a REST revocation, seconds.
pub(crate) const REST_FLOOR_SECS: i64 = 300;

/// One revocation, as the API and the CLI show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RevocationRow {
    pub realm: String,
    pub username: String,
    /// `rest`, `user` or `oauth`: what the name looks like.
    pub kind: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds the name is accepted again; `None`: until removed.
    pub expires_at: Option<i64>,
}

/// What a revoked name looks like: a REST username (it carries an expiry
/// with `separator`), else an OAuth kid the store holds, else a user.
fn kind_of(name: &str, separator: char, is_kid: bool) -> (&'static str, Option<i64>) {
    match crate::auth::rest::expiry(name, separator) {
        Some(expiry) => ("rest", Some(i64::try_from(expiry).unwrap_or(i64::MAX))),
        None if is_kid => ("oauth", None),
        None => ("user", None),
    }
}

/// Characters a revoked name may have: a STUN USERNAME's limit (512
/// bytes), counted in characters as the API document's `maxLength` is (a
/// longer name in bytes never matches a request; it only costs its row).
pub(crate) const MAX_NAME_CHARS: usize = MAX_USERNAME_BYTES;

fn check_username(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(StoreError::Invalid {
            field: "username",
            reason: format!("must be 1-{MAX_NAME_CHARS} characters (a STUN USERNAME's limit)"),
        });
    }
    Ok(())
}

/// The live-revocation caps, apart so that tests can use small ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    pub(crate) per_realm: i64,
    pub(crate) total: i64,
}

pub(crate) const CAPS: Caps = Caps {
    per_realm: MAX_PER_REALM,
    total: MAX_TOTAL,
};

impl Store {
    /// Revokes `name` in `realm` at Unix second `now`; `separator` is the
    /// server's REST separator. Answers the revocation and whether it is
    /// new (revoking a revoked name changes nothing).
    pub(crate) async fn revoke(
        &self,
        actor: &str,
        realm: &str,
        name: &str,
        separator: char,
        now: i64,
    ) -> Result<(RevocationRow, bool), StoreError> {
        self.revoke_capped(actor, realm, name, separator, now, CAPS)
            .await
    }

    pub(crate) async fn revoke_capped(
        &self,
        actor: &str,
        realm: &str,
        name: &str,
        separator: char,
        now: i64,
        caps: Caps,
    ) -> Result<(RevocationRow, bool), StoreError> {
        check_name("realm", realm)?;
        check_username(name)?;
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM revocations WHERE expires_at IS NOT NULL AND expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let rkey = row_key(&[realm, name]);
        let existing = sqlx::query(
            "SELECT realm, name, kind, created, expires_at FROM revocations WHERE rkey = $1",
        )
        .bind(&rkey)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = existing {
            return Ok((revocation_row(&r)?, false));
        }
        let realm_key = row_key(&[realm]);
        let in_realm: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM revocations WHERE realm_key = $1")
                .bind(&realm_key)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM revocations")
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if in_realm >= caps.per_realm || total >= caps.total {
            return Err(StoreError::Full {
                what: format!(
                    "revocations ({in_realm} live in this realm, at most {}; {total} in all, at most {})",
                    caps.per_realm, caps.total
                ),
            });
        }
        let kid = sqlx::query("SELECT 1 AS one FROM oauth_keys WHERE kkey = $1")
            .bind(row_key(&[name]))
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        let (kind, expiry) = kind_of(name, separator, kid);
        let expires_at = expiry.map(|e| e.max(now.saturating_add(REST_FLOOR_SECS)));
        sqlx::query(
            "INSERT INTO revocations (rkey, realm_key, realm, name, kind, created, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&rkey)
        .bind(&realm_key)
        .bind(realm.as_bytes().to_vec())
        .bind(name.as_bytes().to_vec())
        .bind(kind)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        self.commit(tx, actor, "credential.revoke", name).await?;
        let row = RevocationRow {
            realm: realm.to_string(),
            username: name.to_string(),
            kind: kind.to_string(),
            created: now,
            expires_at,
        };
        Ok((row, true))
    }

    /// Removes a revocation: the name is accepted again.
    pub(crate) async fn unrevoke(
        &self,
        actor: &str,
        realm: &str,
        name: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query("DELETE FROM revocations WHERE rkey = $1")
            .bind(row_key(&[realm, name]))
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "revocation".into(),
            });
        }
        self.commit(tx, actor, "credential.unrevoke", name).await
    }

    /// Live revocations of `realm`, or of every realm, at Unix second
    /// `now`; by realm and name.
    pub(crate) async fn revocations(
        &self,
        realm: Option<&str>,
        now: i64,
    ) -> Result<Vec<RevocationRow>, StoreError> {
        const COLUMNS: &str = "SELECT realm, name, kind, created, expires_at FROM revocations \
             WHERE (expires_at IS NULL OR expires_at > $1)";
        let rows = match realm {
            Some(realm) => {
                sqlx::query(&format!("{COLUMNS} AND realm_key = $2"))
                    .bind(now)
                    .bind(row_key(&[realm]))
                    .fetch_all(&self.pool)
                    .await?
            }
            None => sqlx::query(COLUMNS).bind(now).fetch_all(&self.pool).await?,
        };
        let mut out = rows
            .iter()
            .map(revocation_row)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| (&a.realm, &a.username).cmp(&(&b.realm, &b.username)));
        Ok(out)
    }

    /// The snapshot's part: each live revoked name of `realm` with the
    /// Unix second it is accepted again.
    pub(crate) async fn revoked_names(
        &self,
        realm: &str,
        now: i64,
    ) -> Result<Vec<(String, Option<u64>)>, StoreError> {
        Ok(self
            .revocations(Some(realm), now)
            .await?
            .into_iter()
            .map(|r| (r.username, r.expires_at.map(|t| t.max(0) as u64)))
            .collect())
    }
}

fn revocation_row(r: &sqlx::any::AnyRow) -> Result<RevocationRow, StoreError> {
    Ok(RevocationRow {
        realm: text(r, "realm")?,
        username: text(r, "name")?,
        kind: r.try_get("kind")?,
        created: r.try_get("created")?,
        expires_at: r.try_get("expires_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{pg_url, sqlite};

    #[test]
    fn a_name_is_rest_when_it_carries_an_expiry_else_a_kid_the_store_holds_else_a_user() {
        assert_eq!(
            kind_of("1767225600:alice", ':', false),
            ("rest", Some(1_767_225_600))
        );
        assert_eq!(kind_of("alice-1767225600", '-', true).0, "rest");
        assert_eq!(kind_of("north", ':', true), ("oauth", None));
        assert_eq!(kind_of("alice", ':', false), ("user", None));
        assert_eq!(kind_of("alice:bob", ':', false), ("user", None));
    }

    const NOW: i64 = 1_767_000_000;
    const REST: &str = "1767225600:alice";

    /// Revoke, repeat, list, expire, cap, prune, remove: in `realm`, which
    /// no other test uses (the PostgreSQL database is shared).
    async fn exercise(s: &Store, realm: &str) {
        let r0 = s.revision().await.unwrap();
        let (row, new) = s.revoke("t", realm, REST, ':', NOW).await.unwrap();
        assert!(new);
        assert_eq!(s.revision().await.unwrap(), r0 + 1, "nodes reload");
        let want = RevocationRow {
            realm: realm.into(),
            username: REST.into(),
            kind: "rest".into(),
            created: NOW,
            expires_at: Some(1_767_225_600),
        };
        assert_eq!(row, want);
        // Again: the same revocation, nothing written.
        let (again, new) = s.revoke("t", realm, REST, ':', NOW + 5).await.unwrap();
        assert_eq!((again, new), (want.clone(), false));
        assert_eq!(s.revision().await.unwrap(), r0 + 1);
        // A user's lasts until removed; an expired REST name's gets the floor.
        let (carol, _) = s.revoke("t", realm, "carol", ':', NOW).await.unwrap();
        assert_eq!((carol.kind.as_str(), carol.expires_at), ("user", None));
        let (old, _) = s.revoke("t", realm, "1700000000", ':', NOW).await.unwrap();
        assert_eq!(old.expires_at, Some(NOW + REST_FLOOR_SECS));
        for bad in [String::new(), "x".repeat(MAX_NAME_CHARS + 1)] {
            assert!(matches!(
                s.revoke("t", realm, &bad, ':', NOW).await,
                Err(StoreError::Invalid { .. })
            ));
        }
        let names = |rows: Vec<RevocationRow>| -> Vec<String> {
            rows.into_iter().map(|r| r.username).collect()
        };
        assert_eq!(
            names(s.revocations(Some(realm), NOW).await.unwrap()),
            ["1700000000", REST, "carol"]
        );
        // Expired ones are neither listed nor loaded.
        let later = 1_767_225_600;
        assert_eq!(
            names(s.revocations(Some(realm), later).await.unwrap()),
            ["carol"]
        );
        assert_eq!(
            s.revoked_names(realm, later).await.unwrap(),
            [("carol".to_string(), None)]
        );
        // Full at three live ones: a 507 with nothing written...
        let caps = Caps {
            per_realm: 3,
            total: i64::MAX,
        };
        let full = s.revoke_capped("t", realm, "dave", ':', NOW, caps).await;
        assert!(matches!(full, Err(StoreError::Full { .. })), "{full:?}");
        // ...until the REST ones expire and are pruned.
        let (dave, new) = s
            .revoke_capped("t", realm, "dave", ':', later, caps)
            .await
            .unwrap();
        assert!(new && dave.kind == "user");
        assert_eq!(
            names(s.revocations(Some(realm), NOW).await.unwrap()),
            ["carol", "dave"],
            "the expired rows are gone, whatever time one asks at"
        );
        // The snapshot carries the live names.
        let snap = s.snapshot(realm).await.unwrap();
        let mut loaded: Vec<_> = snap.revoked.iter().map(|(n, _)| n.as_str()).collect();
        loaded.sort();
        assert_eq!(loaded, ["carol", "dave"]);
        s.unrevoke("t", realm, "carol").await.unwrap();
        assert!(matches!(
            s.unrevoke("t", realm, "carol").await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(
            names(s.revocations(Some(realm), NOW).await.unwrap()),
            ["dave"]
        );
        let audit = s.audit(1).await.unwrap();
        assert_eq!(
            (audit[0].2.as_str(), audit[0].3.as_str()),
            ("credential.unrevoke", "carol")
        );
    }

    #[tokio::test]
    async fn sqlite_revocations_are_kept_bounded_and_survive_a_reopen() {
        let (s, dir) = sqlite().await;
        exercise(&s, "r.example").await;
        // A kid the store holds is an OAuth revocation.
        s.add_oauth_key("t", "north", &format!("{}=", "A".repeat(43)), "A256GCM", 0)
            .await
            .unwrap();
        let (kid, _) = s.revoke("t", "r.example", "north", ':', NOW).await.unwrap();
        assert_eq!(kid.kind, "oauth");
        // The total cap counts every realm.
        let caps = Caps {
            per_realm: 100,
            total: 2,
        };
        let full = s.revoke_capped("t", "other", "erin", ':', NOW, caps).await;
        assert!(matches!(full, Err(StoreError::Full { .. })), "{full:?}");
        s.close().await;
        let url = format!("sqlite:{}/sub/t.db", dir.display());
        let s = Store::open(&url).await.unwrap();
        let live = s.revocations(None, NOW).await.unwrap();
        let names: Vec<_> = live.iter().map(|r| r.username.as_str()).collect();
        assert_eq!(names, ["dave", "north"]);
        s.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn postgres_revocations_are_kept_bounded() {
        let Some(url) = pg_url() else { return };
        let s = Store::open(&url).await.unwrap();
        let realm = format!(
            "revoke-{}-{}",
            std::process::id(),
            crate::store::unix_now_ms()
        );
        exercise(&s, &realm).await;
        s.unrevoke("t", &realm, "dave").await.unwrap();
        s.close().await;
    }
}
