//! `turnpike credentials revoke|revocations|unrevoke`: revoked names in the
//! store (issue 19), as `POST /api/v1/credentials/revoke` and its
//! neighbours do it. Running servers load the change with their next
//! snapshot (within a second; at once on PostgreSQL) and end the name's
//! allocations on their next tick.

use std::process::ExitCode;

use clap::Subcommand;

use super::store::{with_store, RealmArg, StoreArgs, ACTOR};
use crate::store::unix_now;

#[derive(Debug, Subcommand)]
pub enum RevokeCommand {
    /// Refuse NAME on every node and end its allocations: a REST username
    /// (until it would have expired), a user or an OAuth kid (until
    /// unrevoked); prints the revocation as JSON
    Revoke {
        name: String,
        /// The server's rest_api_separator (tells a REST username)
        #[arg(long, default_value_t = ':')]
        separator: char,
        #[command(flatten)]
        db: StoreArgs,
        #[command(flatten)]
        realm: RealmArg,
    },
    /// List live revocations (one JSON object a line)
    Revocations {
        #[command(flatten)]
        db: StoreArgs,
        /// Only this realm
        #[arg(long)]
        realm: Option<String>,
    },
    /// Accept NAME again
    Unrevoke {
        name: String,
        #[command(flatten)]
        db: StoreArgs,
        #[command(flatten)]
        realm: RealmArg,
    },
}

pub(super) fn run(cmd: RevokeCommand) -> ExitCode {
    match cmd {
        RevokeCommand::Revoke {
            name,
            separator,
            db,
            realm,
        } => with_store(&db.db, move |s| {
            Box::pin(async move {
                let (row, _) = s
                    .revoke(ACTOR, &realm.realm, &name, separator, unix_now())
                    .await?;
                Ok(serde_json::json!(row).to_string())
            })
        }),
        RevokeCommand::Revocations { db, realm } => with_store(&db.db, move |s| {
            Box::pin(async move {
                Ok(s.revocations(realm.as_deref(), unix_now())
                    .await?
                    .iter()
                    .map(|r| serde_json::json!(r).to_string())
                    .collect::<Vec<_>>()
                    .join("\n"))
            })
        }),
        RevokeCommand::Unrevoke { name, db, realm } => with_store(&db.db, move |s| {
            Box::pin(async move {
                s.unrevoke(ACTOR, &realm.realm, &name).await?;
                Ok(String::new())
            })
        }),
    }
}
