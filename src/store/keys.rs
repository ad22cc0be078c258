//! Shared secrets: REST secrets per realm (several live at once, for
//! rotation), OAuth keys by key id, and the admin API's token secret.
//! Lists never carry the secret values.

use base64::Engine;
use sqlx::Row;

use super::users::check_name;
use super::{row_key, text, unix_now, Store, StoreError};
use crate::auth::oauth::{Alg, OAuthKey};
use crate::auth::rest::Secret;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecretRow {
    pub id: i64,
    pub realm: String,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OAuthKeyRow {
    pub kid: String,
    pub alg: String,
    pub lifetime: i64,
    pub created: i64,
}

const ADMIN_JWT_SECRET: &str = "admin_jwt_secret";

/// Reads a base64 key for `alg`, as given on the CLI or the API.
pub(crate) fn parse_oauth_key(
    key_b64: &str,
    alg: &str,
    lifetime: i64,
) -> Result<OAuthKey, StoreError> {
    let alg = Alg::parse(alg).ok_or(StoreError::Invalid {
        field: "alg",
        reason: format!("`{alg}` is not A256GCM or A128GCM"),
    })?;
    // Lenient about the unused bits of the last character, as most
    // encoders are: the key is the bytes, not one spelling of them.
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let raw = LENIENT
        .decode(key_b64.trim())
        .map_err(|_| StoreError::Invalid {
            field: "key",
            reason: "not base64".into(),
        })?;
    let lifetime = u32::try_from(lifetime).map_err(|_| StoreError::Invalid {
        field: "lifetime",
        reason: format!("{lifetime} is out of range 0-{}", u32::MAX),
    })?;
    OAuthKey::new(alg, &raw, lifetime).map_err(|e| StoreError::Invalid {
        field: "key",
        reason: e.to_string(),
    })
}

impl Store {
    /// Adds a REST secret; returns its id.
    pub(crate) async fn add_secret(
        &self,
        actor: &str,
        realm: &str,
        value: &str,
    ) -> Result<i64, StoreError> {
        check_name("realm", realm)?;
        check_name("secret", value)?;
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "INSERT INTO secrets (realm, value, created) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(realm.as_bytes().to_vec())
        .bind(value.as_bytes().to_vec())
        .bind(unix_now())
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        self.commit(tx, actor, "secret.add", &id.to_string())
            .await?;
        Ok(id)
    }

    pub(crate) async fn remove_secret(&self, actor: &str, id: i64) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query("DELETE FROM secrets WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: format!("secret {id}"),
            });
        }
        self.commit(tx, actor, "secret.remove", &id.to_string())
            .await
    }

    pub(crate) async fn secrets(&self) -> Result<Vec<SecretRow>, StoreError> {
        let rows = sqlx::query("SELECT id, realm, created FROM secrets ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SecretRow {
                    id: r.try_get("id")?,
                    realm: text(r, "realm")?,
                    created: r.try_get("created")?,
                })
            })
            .collect()
    }

    pub(crate) async fn secret_values(&self, realm: &str) -> Result<Vec<Secret>, StoreError> {
        let rows = sqlx::query("SELECT value FROM secrets WHERE realm = $1 ORDER BY id")
            .bind(realm.as_bytes().to_vec())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(Secret(r.try_get::<Vec<u8>, _>("value")?)))
            .collect()
    }

    pub async fn add_oauth_key(
        &self,
        actor: &str,
        kid: &str,
        key_b64: &str,
        alg: &str,
        lifetime: i64,
    ) -> Result<(), StoreError> {
        check_name("kid", kid)?;
        let key = parse_oauth_key(key_b64, alg, lifetime)?;
        let mut tx = self.write().await?;
        let kkey = row_key(&[kid]);
        let exists = sqlx::query("SELECT 1 AS one FROM oauth_keys WHERE kkey = $1")
            .bind(&kkey)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StoreError::Exists {
                what: "oauth key".into(),
            });
        }
        sqlx::query(
            "INSERT INTO oauth_keys (kkey, kid, key_b64, alg, lifetime, created) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&kkey)
        .bind(kid.as_bytes().to_vec())
        .bind(key_b64.trim())
        .bind(key.alg.name())
        .bind(lifetime)
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        self.commit(tx, actor, "oauth_key.add", kid).await
    }

    pub(crate) async fn remove_oauth_key(&self, actor: &str, kid: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query("DELETE FROM oauth_keys WHERE kkey = $1")
            .bind(row_key(&[kid]))
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "oauth key".into(),
            });
        }
        self.commit(tx, actor, "oauth_key.remove", kid).await
    }

    pub(crate) async fn oauth_key_rows(&self) -> Result<Vec<OAuthKeyRow>, StoreError> {
        let rows = sqlx::query("SELECT kid, alg, lifetime, created FROM oauth_keys")
            .fetch_all(&self.pool)
            .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(OAuthKeyRow {
                    kid: text(r, "kid")?,
                    alg: r.try_get("alg")?,
                    lifetime: r.try_get("lifetime")?,
                    created: r.try_get("created")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by(|a, b| a.kid.cmp(&b.kid));
        Ok(out)
    }

    /// Usable keys by key id; a row that no longer parses is skipped.
    pub(crate) async fn oauth_keys(&self) -> Result<Vec<(String, OAuthKey)>, StoreError> {
        let rows = sqlx::query("SELECT kid, key_b64, alg, lifetime FROM oauth_keys")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let key_b64: String = r.try_get("key_b64")?;
            let alg: String = r.try_get("alg")?;
            let lifetime: i64 = r.try_get("lifetime")?;
            if let Ok(key) = parse_oauth_key(&key_b64, &alg, lifetime) {
                out.push((text(r, "kid")?, key));
            }
        }
        Ok(out)
    }

    /// A 32-byte key every node of this store shares (issue 15: the nonce
    /// key, so a nonce from one node is good at another; the key behind
    /// RESERVATION-TOKENs), generated on first use.
    pub(crate) async fn fleet_key(&self, name: &str) -> Result<[u8; 32], StoreError> {
        let value = self.generated(&format!("fleet_key:{name}")).await?;
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .ok_or(StoreError::Invalid {
                field: "fleet key",
                reason: format!("{name} in the settings table is not 32 bytes of base64"),
            })
    }

    /// The admin API's HS256 secret, generated on first use.
    pub(crate) async fn admin_jwt_secret(&self) -> Result<Secret, StoreError> {
        Ok(Secret(self.generated(ADMIN_JWT_SECRET).await?.into_bytes()))
    }

    /// The setting `name`: 32 random bytes in base64, written on first use.
    /// Two processes may race to write it: the first insert wins and both
    /// read the winner.
    async fn generated(&self, name: &str) -> Result<String, StoreError> {
        let get = || {
            sqlx::query("SELECT value FROM settings WHERE name = $1")
                .bind(name.to_string())
                .fetch_optional(&self.pool)
        };
        if let Some(r) = get().await? {
            return Ok(r.try_get::<String, _>("value")?);
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| StoreError::Invalid {
            field: "random",
            reason: e.to_string(),
        })?;
        let value = base64::engine::general_purpose::STANDARD.encode(raw);
        let _ = sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2)")
            .bind(name.to_string())
            .bind(value)
            .execute(&self.pool)
            .await;
        let r = get().await?.ok_or(StoreError::NotFound {
            what: format!("setting {name}"),
        })?;
        Ok(r.try_get::<String, _>("value")?)
    }
}
