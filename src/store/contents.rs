//! The whole store's credentials at once, and additions written in one
//! transaction: what an import needs to tell what is already there from
//! what it would add (`turnpike import coturn-db`), and what tests compare.
//!
//! [`Store::add_all`] reads the contents inside its write transaction and
//! asks the caller for the additions then, so nothing another writer does
//! between the diff and the writes can be overwritten.

use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::keys::parse_oauth_key;
use super::quotas::check as check_quota;
use super::users::check_name;
use super::{row_key, text, unix_now, QuotaRow, Store, StoreError};

/// A stored long-term user and its keys (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub realm: String,
    pub name: String,
    pub ha1_md5: String,
    pub ha1_sha256: Option<String>,
}

/// A stored REST secret. The value is kept out of `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub realm: String,
    pub value: Vec<u8>,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret")
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// A stored OAuth key as written (base64). The key is kept out of `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredOAuthKey {
    pub kid: String,
    pub key_b64: String,
    pub alg: String,
    pub lifetime: i64,
}

impl std::fmt::Debug for StoredOAuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredOAuthKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// Every user, secret, OAuth key and quota in the store (all realms).
#[derive(Debug, Clone, Default)]
pub struct Contents {
    pub users: Vec<StoredUser>,
    pub secrets: Vec<StoredSecret>,
    pub oauth_keys: Vec<StoredOAuthKey>,
    /// (realm, name, quota).
    pub user_quotas: Vec<(String, String, QuotaRow)>,
    /// (realm, quota).
    pub realm_quotas: Vec<(String, QuotaRow)>,
}

impl Contents {
    pub fn user(&self, realm: &str, name: &str) -> Option<&StoredUser> {
        self.users
            .iter()
            .find(|u| u.realm == realm && u.name == name)
    }

    pub fn has_secret(&self, realm: &str, value: &[u8]) -> bool {
        self.secrets
            .iter()
            .any(|s| s.realm == realm && s.value == value)
    }

    pub fn oauth_key(&self, kid: &str) -> Option<&StoredOAuthKey> {
        self.oauth_keys.iter().find(|k| k.kid == kid)
    }

    pub fn user_quota(&self, realm: &str, name: &str) -> Option<&QuotaRow> {
        self.user_quotas
            .iter()
            .find(|(r, n, _)| r == realm && n == name)
            .map(|(_, _, q)| q)
    }

    pub fn realm_quota(&self, realm: &str) -> Option<&QuotaRow> {
        self.realm_quotas
            .iter()
            .find(|(r, _)| r == realm)
            .map(|(_, q)| q)
    }

    /// One sorted line per row, without creation times or row ids, for
    /// comparing two stores. Secrets and keys appear as SHA-256 digests,
    /// so a failing test's output shows none of them.
    pub fn dump(&self) -> Vec<String> {
        let digest = |b: &[u8]| -> String {
            Sha256::digest(b)
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect()
        };
        let opt = |v: Option<i64>| v.map_or("-".to_string(), |n| n.to_string());
        let mut out = Vec::new();
        for u in &self.users {
            out.push(format!(
                "user {:?} {:?} md5={} sha256={}",
                u.realm,
                u.name,
                u.ha1_md5,
                u.ha1_sha256.as_deref().unwrap_or("-")
            ));
        }
        for s in &self.secrets {
            out.push(format!("secret {:?} {}", s.realm, digest(&s.value)));
        }
        for k in &self.oauth_keys {
            out.push(format!(
                "oauth-key {:?} {} lifetime={} key={}",
                k.kid,
                k.alg,
                k.lifetime,
                digest(k.key_b64.as_bytes())
            ));
        }
        for (realm, name, q) in &self.user_quotas {
            out.push(format!(
                "user-quota {realm:?} {name:?} allocations={} bps={}",
                opt(q.allocations),
                opt(q.bps)
            ));
        }
        for (realm, q) in &self.realm_quotas {
            out.push(format!(
                "realm-quota {realm:?} allocations={} bps={}",
                opt(q.allocations),
                opt(q.bps)
            ));
        }
        out.sort();
        out
    }
}

/// One row an import adds (or, for quotas, sets whole).
#[derive(Clone, PartialEq, Eq)]
pub enum Addition {
    /// A user known by its MD5 HA1 key alone (no password, so no SHA-256
    /// key: the user can sign with MD5 only).
    User {
        realm: String,
        name: String,
        ha1_md5: [u8; 16],
    },
    Secret {
        realm: String,
        value: String,
    },
    OAuthKey {
        kid: String,
        key_b64: String,
        alg: String,
        lifetime: i64,
    },
    /// Replaces the user's quota row.
    UserQuota {
        realm: String,
        name: String,
        quota: QuotaRow,
    },
    /// Replaces the realm's quota row.
    RealmQuota {
        realm: String,
        quota: QuotaRow,
    },
}

impl std::fmt::Debug for Addition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addition::User { realm, name, .. } => write!(f, "User({realm:?}, {name:?})"),
            Addition::Secret { realm, .. } => write!(f, "Secret({realm:?})"),
            Addition::OAuthKey { kid, .. } => write!(f, "OAuthKey({kid:?})"),
            Addition::UserQuota { realm, name, quota } => {
                write!(f, "UserQuota({realm:?}, {name:?}, {quota:?})")
            }
            Addition::RealmQuota { realm, quota } => write!(f, "RealmQuota({realm:?}, {quota:?})"),
        }
    }
}

impl Addition {
    /// Refuses what the store's own commands would refuse.
    pub fn check(&self) -> Result<(), StoreError> {
        match self {
            Addition::User { realm, name, .. } => {
                check_name("realm", realm)?;
                check_name("name", name)
            }
            Addition::Secret { realm, value } => {
                check_name("realm", realm)?;
                check_name("secret", value)
            }
            Addition::OAuthKey {
                kid,
                key_b64,
                alg,
                lifetime,
            } => {
                check_name("kid", kid)?;
                parse_oauth_key(key_b64, alg, *lifetime).map(|_| ())
            }
            Addition::UserQuota { realm, name, quota } => {
                check_name("realm", realm)?;
                check_name("name", name)?;
                check_quota(quota)
            }
            Addition::RealmQuota { realm, quota } => {
                check_name("realm", realm)?;
                check_quota(quota)
            }
        }
    }

    /// The audit log's action and target for this row.
    fn audit(&self) -> (&'static str, String) {
        match self {
            Addition::User { name, .. } => ("user.add", name.clone()),
            Addition::Secret { realm, .. } => ("secret.add", realm.clone()),
            Addition::OAuthKey { kid, .. } => ("oauth_key.add", kid.clone()),
            Addition::UserQuota { name, .. } => ("quota.user", name.clone()),
            Addition::RealmQuota { realm, .. } => ("quota.realm", realm.clone()),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn quota_of(r: &AnyRow) -> Result<QuotaRow, StoreError> {
    Ok(QuotaRow {
        allocations: r.try_get("allocations")?,
        bps: r.try_get("bps")?,
    })
}

/// Reads everything on one connection (a transaction's, or the pool's).
async fn read(conn: &mut AnyConnection) -> Result<Contents, StoreError> {
    let mut c = Contents::default();
    for r in sqlx::query("SELECT realm, name, ha1_md5, ha1_sha256 FROM users")
        .fetch_all(&mut *conn)
        .await?
    {
        c.users.push(StoredUser {
            realm: text(&r, "realm")?,
            name: text(&r, "name")?,
            ha1_md5: r.try_get::<String, _>("ha1_md5")?.to_ascii_lowercase(),
            ha1_sha256: r
                .try_get::<Option<String>, _>("ha1_sha256")?
                .map(|s| s.to_ascii_lowercase()),
        });
    }
    for r in sqlx::query("SELECT realm, value FROM secrets ORDER BY id")
        .fetch_all(&mut *conn)
        .await?
    {
        c.secrets.push(StoredSecret {
            realm: text(&r, "realm")?,
            value: r.try_get("value")?,
        });
    }
    for r in sqlx::query("SELECT kid, key_b64, alg, lifetime FROM oauth_keys")
        .fetch_all(&mut *conn)
        .await?
    {
        c.oauth_keys.push(StoredOAuthKey {
            kid: text(&r, "kid")?,
            key_b64: r.try_get("key_b64")?,
            alg: r.try_get("alg")?,
            lifetime: r.try_get("lifetime")?,
        });
    }
    for r in sqlx::query("SELECT realm, name, allocations, bps FROM user_quotas")
        .fetch_all(&mut *conn)
        .await?
    {
        c.user_quotas
            .push((text(&r, "realm")?, text(&r, "name")?, quota_of(&r)?));
    }
    for r in sqlx::query("SELECT realm, allocations, bps FROM realm_quotas")
        .fetch_all(&mut *conn)
        .await?
    {
        c.realm_quotas.push((text(&r, "realm")?, quota_of(&r)?));
    }
    Ok(c)
}

/// Writes one addition; a user, key or secret that is already there makes
/// the transaction fail (the caller's diff said it was not).
async fn write(conn: &mut AnyConnection, a: &Addition) -> Result<(), StoreError> {
    let now = unix_now();
    match a {
        Addition::User {
            realm,
            name,
            ha1_md5,
        } => {
            sqlx::query(
                "INSERT INTO users (ukey, realm, name, ha1_md5, ha1_sha256, created) VALUES ($1, $2, $3, $4, NULL, $5)",
            )
            .bind(row_key(&[realm, name]))
            .bind(realm.as_bytes().to_vec())
            .bind(name.as_bytes().to_vec())
            .bind(hex(ha1_md5))
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Addition::Secret { realm, value } => {
            sqlx::query("INSERT INTO secrets (realm, value, created) VALUES ($1, $2, $3)")
                .bind(realm.as_bytes().to_vec())
                .bind(value.as_bytes().to_vec())
                .bind(now)
                .execute(&mut *conn)
                .await?;
        }
        Addition::OAuthKey {
            kid,
            key_b64,
            alg,
            lifetime,
        } => {
            let key = parse_oauth_key(key_b64, alg, *lifetime)?;
            sqlx::query(
                "INSERT INTO oauth_keys (kkey, kid, key_b64, alg, lifetime, created) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(row_key(&[kid]))
            .bind(kid.as_bytes().to_vec())
            .bind(key_b64.trim())
            .bind(key.alg.name())
            .bind(*lifetime)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Addition::UserQuota { realm, name, quota } => {
            let ukey = row_key(&[realm, name]);
            sqlx::query("DELETE FROM user_quotas WHERE ukey = $1")
                .bind(&ukey)
                .execute(&mut *conn)
                .await?;
            sqlx::query("INSERT INTO user_quotas (ukey, realm, name, allocations, bps) VALUES ($1, $2, $3, $4, $5)")
                .bind(&ukey)
                .bind(realm.as_bytes().to_vec())
                .bind(name.as_bytes().to_vec())
                .bind(quota.allocations)
                .bind(quota.bps)
                .execute(&mut *conn)
                .await?;
        }
        Addition::RealmQuota { realm, quota } => {
            let rkey = row_key(&[realm]);
            sqlx::query("DELETE FROM realm_quotas WHERE rkey = $1")
                .bind(&rkey)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT INTO realm_quotas (rkey, realm, allocations, bps) VALUES ($1, $2, $3, $4)",
            )
            .bind(&rkey)
            .bind(realm.as_bytes().to_vec())
            .bind(quota.allocations)
            .bind(quota.bps)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

impl Store {
    /// Every user, secret, OAuth key and quota.
    pub async fn contents(&self) -> Result<Contents, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read(&mut conn).await
    }

    /// Reads the contents inside a write transaction, asks `plan` what to
    /// add, and writes it all or nothing: one audit line per row (`actor`)
    /// and a last one, `action` on `target`, for the whole batch. Returns
    /// how many rows were written; with none, nothing is written at all.
    pub(crate) async fn add_all(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        plan: impl FnOnce(&Contents) -> Vec<Addition>,
    ) -> Result<usize, StoreError> {
        let mut tx = self.write().await?;
        let additions = plan(&read(&mut tx).await?);
        if additions.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        for a in &additions {
            a.check()?;
            write(&mut tx, a).await?;
            let (what, on) = a.audit();
            sqlx::query(
                "INSERT INTO audit_log (at, actor, action, target) VALUES ($1, $2, $3, $4)",
            )
            .bind(unix_now())
            .bind(actor)
            .bind(what)
            .bind(on.into_bytes())
            .execute(&mut *tx)
            .await?;
        }
        self.commit(tx, actor, action, target).await?;
        Ok(additions.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Addition {
        Addition::User {
            realm: "R".into(),
            name: "alice".into(),
            ha1_md5: [0xab; 16],
        }
    }

    #[tokio::test]
    async fn additions_land_together_with_one_audit_line_each() {
        let (s, dir) = super::super::tests::sqlite().await;
        let before = s.revision().await.unwrap();
        let batch = vec![
            alice(),
            Addition::Secret {
                realm: "R".into(),
                value: "SECRET".into(),
            },
            Addition::RealmQuota {
                realm: "R".into(),
                quota: QuotaRow {
                    allocations: Some(10),
                    bps: None,
                },
            },
        ];
        let seen = std::sync::Mutex::new(None);
        let n = s
            .add_all("import test", "import.test", "src", |have| {
                *seen.lock().unwrap() = Some(have.users.len());
                batch.clone()
            })
            .await
            .unwrap();
        assert_eq!((n, seen.into_inner().unwrap()), (3, Some(0)));
        assert_eq!(s.revision().await.unwrap(), before + 1);
        let c = s.contents().await.unwrap();
        assert_eq!(
            c.user("R", "alice")
                .map(|u| (u.ha1_md5.clone(), u.ha1_sha256.clone())),
            Some(("ab".repeat(16), None))
        );
        assert!(c.has_secret("R", b"SECRET"));
        // The server loads an MD5-only user.
        let keys = s.user_keys("R").await.unwrap();
        assert_eq!(keys[0].1.md5, [0xab; 16]);
        assert!(keys[0].1.sha256.is_none());
        let audit = s.audit(10).await.unwrap();
        let lines: Vec<(&str, &str, &str)> = audit
            .iter()
            .map(|(_, actor, action, target)| (actor.as_str(), action.as_str(), target.as_str()))
            .collect();
        assert_eq!(
            lines,
            vec![
                ("import test", "import.test", "src"),
                ("import test", "quota.realm", "R"),
                ("import test", "secret.add", "R"),
                ("import test", "user.add", "alice"),
            ]
        );
        // The dump shows no secret.
        assert!(!c.dump().join("\n").contains("SECRET"));
        // Nothing to add: nothing written, not even the revision.
        assert_eq!(s.add_all("x", "y", "z", |_| vec![]).await.unwrap(), 0);
        assert_eq!(s.revision().await.unwrap(), before + 1);
        s.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn one_failing_addition_writes_none() {
        let (s, dir) = super::super::tests::sqlite().await;
        s.add_all("t", "a", "t", |_| vec![alice()]).await.unwrap();
        let before = s.contents().await.unwrap().dump();
        let batch = vec![
            Addition::Secret {
                realm: "R".into(),
                value: "SECRET".into(),
            },
            alice(),
        ];
        assert!(s.add_all("t", "a", "t", |_| batch).await.is_err());
        assert_eq!(s.contents().await.unwrap().dump(), before);
        s.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
