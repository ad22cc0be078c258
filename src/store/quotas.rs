//! Quotas per user and per realm: allocations and bits per second. A
//! missing value means "not set here" (the configured default applies);
//! 0 means unlimited.

use sqlx::Row;

use super::users::check_name;
use super::{row_key, text, Store, StoreError};
use crate::auth::Quota;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuotaRow {
    pub allocations: Option<i64>,
    pub bps: Option<i64>,
}

pub(crate) fn check(q: &QuotaRow) -> Result<(), StoreError> {
    if q.allocations
        .is_some_and(|n| !(0..=u32::MAX as i64).contains(&n))
    {
        return Err(StoreError::Invalid {
            field: "allocations",
            reason: format!("must be 0-{}", u32::MAX),
        });
    }
    if q.bps.is_some_and(|n| n < 0) {
        return Err(StoreError::Invalid {
            field: "bps",
            reason: "must not be negative".into(),
        });
    }
    Ok(())
}

/// A stored row, or nothing set.
fn quota_row(row: Option<sqlx::any::AnyRow>) -> Result<QuotaRow, StoreError> {
    Ok(match row {
        Some(r) => QuotaRow {
            allocations: r.try_get("allocations")?,
            bps: r.try_get("bps")?,
        },
        None => QuotaRow {
            allocations: None,
            bps: None,
        },
    })
}

fn quota(allocations: Option<i64>, bps: Option<i64>) -> Quota {
    Quota {
        allocations: allocations.map(|n| n as u32),
        bps: bps.map(|n| n as u64),
    }
}

impl Store {
    pub(crate) async fn set_user_quota(
        &self,
        actor: &str,
        realm: &str,
        name: &str,
        q: &QuotaRow,
    ) -> Result<(), StoreError> {
        check_name("name", name)?;
        check(q)?;
        let mut tx = self.write().await?;
        let ukey = row_key(&[realm, name]);
        sqlx::query("DELETE FROM user_quotas WHERE ukey = $1")
            .bind(&ukey)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO user_quotas (ukey, realm, name, allocations, bps) VALUES ($1, $2, $3, $4, $5)")
            .bind(&ukey)
            .bind(realm.as_bytes().to_vec())
            .bind(name.as_bytes().to_vec())
            .bind(q.allocations)
            .bind(q.bps)
            .execute(&mut *tx)
            .await?;
        self.commit(tx, actor, "quota.user", name).await
    }

    pub(crate) async fn user_quota(&self, realm: &str, name: &str) -> Result<QuotaRow, StoreError> {
        let row = sqlx::query("SELECT allocations, bps FROM user_quotas WHERE ukey = $1")
            .bind(row_key(&[realm, name]))
            .fetch_optional(&self.pool)
            .await?;
        quota_row(row)
    }

    pub(crate) async fn set_realm_quota(
        &self,
        actor: &str,
        realm: &str,
        q: &QuotaRow,
    ) -> Result<(), StoreError> {
        check_name("realm", realm)?;
        check(q)?;
        let mut tx = self.write().await?;
        let rkey = row_key(&[realm]);
        sqlx::query("DELETE FROM realm_quotas WHERE rkey = $1")
            .bind(&rkey)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO realm_quotas (rkey, realm, allocations, bps) VALUES ($1, $2, $3, $4)",
        )
        .bind(&rkey)
        .bind(realm.as_bytes().to_vec())
        .bind(q.allocations)
        .bind(q.bps)
        .execute(&mut *tx)
        .await?;
        self.commit(tx, actor, "quota.realm", realm).await
    }

    pub(crate) async fn realm_quota_row(&self, realm: &str) -> Result<QuotaRow, StoreError> {
        let row = sqlx::query("SELECT allocations, bps FROM realm_quotas WHERE rkey = $1")
            .bind(row_key(&[realm]))
            .fetch_optional(&self.pool)
            .await?;
        quota_row(row)
    }

    pub(crate) async fn realm_quota(&self, realm: &str) -> Result<Quota, StoreError> {
        let q = self.realm_quota_row(realm).await?;
        Ok(quota(q.allocations, q.bps))
    }

    pub(crate) async fn user_quotas(
        &self,
        realm: &str,
    ) -> Result<Vec<(String, Quota)>, StoreError> {
        let rows = sqlx::query("SELECT name, allocations, bps FROM user_quotas WHERE realm = $1")
            .bind(realm.as_bytes().to_vec())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    text(r, "name")?,
                    quota(r.try_get("allocations")?, r.try_get("bps")?),
                ))
            })
            .collect()
    }
}
