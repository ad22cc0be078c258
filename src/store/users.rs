//! Long-term users: HA1 keys (MD5 and SHA-256 of `name:realm:password`),
//! never the password.

use sqlx::Row;

use super::{row_key, text, unix_now, Store, StoreError};
use crate::auth::UserKeys;
use crate::stun::integrity::{long_term_key_md5, long_term_key_sha256};

/// Longest name or password accepted (bytes).
pub(crate) const MAX_NAME: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserRow {
    pub realm: String,
    pub name: String,
    /// Unix seconds.
    pub created: i64,
}

pub(crate) fn check_name(field: &'static str, v: &str) -> Result<(), StoreError> {
    if v.is_empty() || v.len() > MAX_NAME {
        return Err(StoreError::Invalid {
            field,
            reason: format!("must be 1-{MAX_NAME} bytes"),
        });
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn keys(realm: &str, name: &str, password: &str) -> (String, String) {
    (
        hex(&long_term_key_md5(name, realm, password)),
        hex(&long_term_key_sha256(name, realm, password)),
    )
}

impl Store {
    pub(crate) async fn add_user(
        &self,
        actor: &str,
        realm: &str,
        name: &str,
        password: &str,
    ) -> Result<(), StoreError> {
        check_name("realm", realm)?;
        check_name("name", name)?;
        check_name("password", password)?;
        let (md5, sha256) = keys(realm, name, password);
        let mut tx = self.write().await?;
        let ukey = row_key(&[realm, name]);
        let exists = sqlx::query("SELECT 1 AS one FROM users WHERE ukey = $1")
            .bind(&ukey)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StoreError::Exists {
                what: "user".into(),
            });
        }
        sqlx::query(
            "INSERT INTO users (ukey, realm, name, ha1_md5, ha1_sha256, created) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&ukey)
        .bind(realm.as_bytes().to_vec())
        .bind(name.as_bytes().to_vec())
        .bind(md5)
        .bind(sha256)
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        self.commit(tx, actor, "user.add", name).await
    }

    pub(crate) async fn set_password(
        &self,
        actor: &str,
        realm: &str,
        name: &str,
        password: &str,
    ) -> Result<(), StoreError> {
        check_name("password", password)?;
        let (md5, sha256) = keys(realm, name, password);
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE users SET ha1_md5 = $1, ha1_sha256 = $2 WHERE ukey = $3")
            .bind(md5)
            .bind(sha256)
            .bind(row_key(&[realm, name]))
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "user".into(),
            });
        }
        self.commit(tx, actor, "user.passwd", name).await
    }

    pub(crate) async fn remove_user(
        &self,
        actor: &str,
        realm: &str,
        name: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let ukey = row_key(&[realm, name]);
        let done = sqlx::query("DELETE FROM users WHERE ukey = $1")
            .bind(&ukey)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "user".into(),
            });
        }
        sqlx::query("DELETE FROM user_quotas WHERE ukey = $1")
            .bind(&ukey)
            .execute(&mut *tx)
            .await?;
        self.commit(tx, actor, "user.remove", name).await
    }

    pub(crate) async fn user(
        &self,
        realm: &str,
        name: &str,
    ) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query("SELECT realm, name, created FROM users WHERE ukey = $1")
            .bind(row_key(&[realm, name]))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| user_row(&r)).transpose()
    }

    /// Users of `realm`, or of every realm; by name.
    pub(crate) async fn users(&self, realm: Option<&str>) -> Result<Vec<UserRow>, StoreError> {
        let rows = match realm {
            Some(realm) => {
                sqlx::query("SELECT realm, name, created FROM users WHERE realm = $1")
                    .bind(realm.as_bytes().to_vec())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT realm, name, created FROM users")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut out = rows.iter().map(user_row).collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| (&a.realm, &a.name).cmp(&(&b.realm, &b.name)));
        Ok(out)
    }

    /// The keys of every user of `realm`.
    pub(crate) async fn user_keys(
        &self,
        realm: &str,
    ) -> Result<Vec<(String, UserKeys)>, StoreError> {
        let rows = sqlx::query("SELECT name, ha1_md5, ha1_sha256 FROM users WHERE realm = $1")
            .bind(realm.as_bytes().to_vec())
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let md5: String = r.try_get("ha1_md5")?;
            let sha256: Option<String> = r.try_get("ha1_sha256")?;
            let Some(md5) = unhex::<16>(&md5) else {
                continue;
            };
            let keys = UserKeys {
                md5,
                sha256: sha256.as_deref().and_then(unhex::<32>),
            };
            out.push((text(r, "name")?, keys));
        }
        Ok(out)
    }
}

fn user_row(r: &sqlx::any::AnyRow) -> Result<UserRow, StoreError> {
    Ok(UserRow {
        realm: text(r, "realm")?,
        name: text(r, "name")?,
        created: r.try_get("created")?,
    })
}
