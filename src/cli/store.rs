//! The turnadmin-style subcommands: users, REST secrets, OAuth keys and
//! quotas in the store the server reads (`--db`), plus credentials and
//! admin tokens. Bad input gives one line on stderr, a non-zero exit, and
//! no change.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::DEFAULT_DB;
use crate::store::{QuotaRow, Store};

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Credential store: sqlite:PATH or postgres://...
    #[arg(long, value_name = "URL", default_value = DEFAULT_DB, global = true)]
    pub db: String,
}

#[derive(Debug, Clone, Args)]
pub struct RealmArg {
    /// Realm (the server's `realm` or one of its `realms`)
    #[arg(long, value_name = "REALM", default_value = "turnpike")]
    pub realm: String,
}

/// Where a user's password comes from: `--password-file FILE` (`-`:
/// stdin), the variable TURNPIKE_PASSWORD, or `--password` (visible to
/// every local user in the process list; kept for scripts).
#[derive(Debug, Clone, Args)]
pub struct PasswordArgs {
    /// Read the password from FILE, or stdin with `-` (one trailing newline is ignored)
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<String>,
    /// The password itself (visible in the process list: prefer --password-file or TURNPIKE_PASSWORD)
    #[arg(long)]
    pub password: Option<String>,
}

impl PasswordArgs {
    fn get(self) -> Result<String, String> {
        crate::secret_file::pick(
            "password",
            self.password,
            self.password_file.as_deref(),
            "TURNPIKE_PASSWORD",
        )?
        .ok_or_else(|| {
            "no password: give --password-file FILE (or - for stdin) or set TURNPIKE_PASSWORD"
                .into()
        })
    }
}

/// The REST secret for `secret add` and `credentials`: `--secret-file FILE`
/// (`-`: stdin) or TURNPIKE_STATIC_AUTH_SECRET, the server's variable.
fn rest_secret(value: Option<String>, file: Option<&str>) -> Result<String, String> {
    crate::secret_file::pick("secret", value, file, "TURNPIKE_STATIC_AUTH_SECRET")?.ok_or_else(
        || {
            "no secret: give --secret-file FILE (or - for stdin) or set TURNPIKE_STATIC_AUTH_SECRET"
                .into()
        },
    )
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a long-term user (stored as HA1 keys only)
    Add {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        realm: RealmArg,
    },
    /// Remove a user
    Remove {
        name: String,
        #[command(flatten)]
        realm: RealmArg,
    },
    /// List users (one per line: realm, name)
    List {
        /// Only this realm
        #[arg(long)]
        realm: Option<String>,
    },
    /// Change a user's password
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        realm: RealmArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Add a REST shared secret; prints its id
    Add {
        /// The secret (visible in the process list: prefer --secret-file or TURNPIKE_STATIC_AUTH_SECRET)
        secret: Option<String>,
        /// Read the secret from FILE, or stdin with `-`
        #[arg(long, value_name = "FILE")]
        secret_file: Option<String>,
        #[command(flatten)]
        realm: RealmArg,
    },
    /// Remove a secret by id
    Remove { id: i64 },
    /// List secrets (ids and realms; never the values)
    List,
}

#[derive(Debug, Subcommand)]
pub enum OAuthKeyCommand {
    /// Add an OAuth (RFC 7635) key
    Add {
        kid: String,
        /// The key, base64 (visible in the process list: prefer --key-file or TURNPIKE_OAUTH_KEY)
        #[arg(long)]
        key: Option<String>,
        /// Read the key (base64) from FILE, or stdin with `-`
        #[arg(long, value_name = "FILE")]
        key_file: Option<String>,
        /// A256GCM or A128GCM
        #[arg(long, default_value = "A256GCM")]
        alg: String,
        /// Longest token validity accepted, seconds (0 = the token's own)
        #[arg(long, default_value_t = 0)]
        lifetime: i64,
    },
    /// Remove a key
    Remove { kid: String },
    /// List keys (never the key material)
    List,
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Set a user's quota, or the realm's without --user
    Set {
        #[arg(long)]
        user: Option<String>,
        /// Allocations at once (0 = unlimited)
        #[arg(long)]
        allocations: Option<i64>,
        /// Bits per second per allocation and direction (0 = unlimited)
        #[arg(long)]
        bps: Option<i64>,
        #[command(flatten)]
        realm: RealmArg,
    },
    /// Show a user's quota, or the realm's without --user
    Show {
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        realm: RealmArg,
    },
}

/// `turnpike credentials`: mint REST credentials (no subcommand), or
/// manage revocations (`revoke`, `revocations`, `unrevoke`).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct CredentialsArgs {
    #[command(subcommand)]
    pub revocation: Option<super::revoke::RevokeCommand>,
    /// REST shared secret (visible in the process list: prefer --secret-file or TURNPIKE_STATIC_AUTH_SECRET)
    #[arg(long)]
    pub secret: Option<String>,
    /// Read the REST shared secret from FILE, or stdin with `-`
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<String>,
    /// User name carried after the expiry
    #[arg(long, default_value = "")]
    pub user: String,
    /// Seconds the credentials stay valid
    #[arg(long, default_value_t = 86_400)]
    pub ttl: u64,
    /// Server URI, repeatable (turn:HOST:PORT?transport=udp, stun:..., turns:...)
    #[arg(long = "uri", required = true)]
    pub uris: Vec<String>,
    /// Separator between expiry and user
    #[arg(long, default_value_t = ':')]
    pub separator: char,
}

#[derive(Debug, Args)]
pub struct AdminTokenArgs {
    /// `admin` or `realm:NAME`
    #[arg(long, default_value = "admin")]
    pub scope: String,
    /// Validity: seconds, or with a unit (15m, 1h, 7d)
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Who the token names (shown in the audit log)
    #[arg(long, default_value = "cli")]
    pub subject: String,
    /// Sign with this secret instead of the one in the store (visible in the process list: prefer --admin-jwt-secret-file or TURNPIKE_ADMIN_JWT_SECRET)
    #[arg(long, value_name = "SECRET")]
    pub admin_jwt_secret: Option<String>,
    /// Sign with the secret in FILE (`-`: stdin), as the server's admin_jwt_secret_file
    #[arg(long, value_name = "FILE")]
    pub admin_jwt_secret_file: Option<String>,
}

/// One line and a failing exit.
fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
}

/// Opens the store and runs `f` on it.
pub(super) fn with_store<F>(db: &str, f: F) -> ExitCode
where
    F: for<'a> FnOnce(
        &'a Store,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<String, crate::store::StoreError>> + 'a>,
    >,
{
    let Some(rt) = runtime() else {
        return fail("cannot start a runtime");
    };
    rt.block_on(async {
        let store = match Store::open(db).await {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        let out = f(&store).await;
        store.close().await;
        match out {
            Ok(text) => {
                if !text.is_empty() {
                    println!("{text}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    })
}

pub(super) const ACTOR: &str = "cli";

pub(super) fn user(db: &StoreArgs, cmd: UserCommand) -> ExitCode {
    // Read the password before opening the store: a bad file changes nothing.
    let password = match &cmd {
        UserCommand::Add { password, .. } | UserCommand::Passwd { password, .. } => {
            match password.clone().get() {
                Ok(p) => p,
                Err(e) => return fail(e),
            }
        }
        _ => String::new(),
    };
    with_store(&db.db, move |s| {
        Box::pin(async move {
            match cmd {
                UserCommand::Add { name, realm, .. } => {
                    s.add_user(ACTOR, &realm.realm, &name, &password).await?;
                    Ok(String::new())
                }
                UserCommand::Remove { name, realm } => {
                    s.remove_user(ACTOR, &realm.realm, &name).await?;
                    Ok(String::new())
                }
                UserCommand::Passwd { name, realm, .. } => {
                    s.set_password(ACTOR, &realm.realm, &name, &password)
                        .await?;
                    Ok(String::new())
                }
                UserCommand::List { realm } => Ok(s
                    .users(realm.as_deref())
                    .await?
                    .iter()
                    .map(|u| format!("{}\t{}", u.realm, u.name))
                    .collect::<Vec<_>>()
                    .join("\n")),
            }
        })
    })
}

pub(super) fn secret(db: &StoreArgs, cmd: SecretCommand) -> ExitCode {
    let secret = match &cmd {
        SecretCommand::Add {
            secret,
            secret_file,
            ..
        } => match rest_secret(secret.clone(), secret_file.as_deref()) {
            Ok(s) => s,
            Err(e) => return fail(e),
        },
        _ => String::new(),
    };
    with_store(&db.db, move |s| {
        Box::pin(async move {
            match cmd {
                SecretCommand::Add { realm, .. } => Ok(s
                    .add_secret(ACTOR, &realm.realm, &secret)
                    .await?
                    .to_string()),
                SecretCommand::Remove { id } => {
                    s.remove_secret(ACTOR, id).await?;
                    Ok(String::new())
                }
                SecretCommand::List => Ok(s
                    .secrets()
                    .await?
                    .iter()
                    .map(|r| format!("{}\t{}", r.id, r.realm))
                    .collect::<Vec<_>>()
                    .join("\n")),
            }
        })
    })
}

pub(super) fn oauth_key(db: &StoreArgs, cmd: OAuthKeyCommand) -> ExitCode {
    let key =
        match &cmd {
            OAuthKeyCommand::Add { key, key_file, .. } => {
                match crate::secret_file::pick(
                    "key",
                    key.clone(),
                    key_file.as_deref(),
                    "TURNPIKE_OAUTH_KEY",
                ) {
                    Ok(Some(k)) => k,
                    Ok(None) => return fail(
                        "no key: give --key-file FILE (or - for stdin) or set TURNPIKE_OAUTH_KEY",
                    ),
                    Err(e) => return fail(e),
                }
            }
            _ => String::new(),
        };
    with_store(&db.db, move |s| {
        Box::pin(async move {
            match cmd {
                OAuthKeyCommand::Add {
                    kid, alg, lifetime, ..
                } => {
                    s.add_oauth_key(ACTOR, &kid, &key, &alg, lifetime).await?;
                    Ok(String::new())
                }
                OAuthKeyCommand::Remove { kid } => {
                    s.remove_oauth_key(ACTOR, &kid).await?;
                    Ok(String::new())
                }
                OAuthKeyCommand::List => Ok(s
                    .oauth_key_rows()
                    .await?
                    .iter()
                    .map(|k| format!("{}\t{}\t{}", k.kid, k.alg, k.lifetime))
                    .collect::<Vec<_>>()
                    .join("\n")),
            }
        })
    })
}

fn show(q: &QuotaRow) -> String {
    let v = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_else(|| "default".into());
    format!("allocations {}\nbps {}", v(q.allocations), v(q.bps))
}

pub(super) fn quota(db: &StoreArgs, cmd: QuotaCommand) -> ExitCode {
    with_store(&db.db, move |s| {
        Box::pin(async move {
            match cmd {
                QuotaCommand::Set {
                    user,
                    allocations,
                    bps,
                    realm,
                } => {
                    let q = QuotaRow { allocations, bps };
                    match user {
                        Some(u) => s.set_user_quota(ACTOR, &realm.realm, &u, &q).await?,
                        None => s.set_realm_quota(ACTOR, &realm.realm, &q).await?,
                    }
                    Ok(show(&q))
                }
                QuotaCommand::Show { user, realm } => Ok(show(&match user {
                    Some(u) => s.user_quota(&realm.realm, &u).await?,
                    None => s.realm_quota_row(&realm.realm).await?,
                })),
            }
        })
    })
}

/// REST credentials as an RTCIceServer, as a WebRTC backend hands out.
pub(super) fn credentials(mut a: CredentialsArgs) -> ExitCode {
    if let Some(cmd) = a.revocation.take() {
        return super::revoke::run(cmd);
    }
    let secret = match rest_secret(a.secret.clone(), a.secret_file.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if secret.is_empty() || a.ttl == 0 {
        return fail("the secret must not be empty and --ttl must be at least 1");
    }
    let (username, credential) = crate::auth::rest::mint(
        secret.as_bytes(),
        &a.user,
        a.ttl,
        a.separator,
        crate::store::unix_now() as u64,
    );
    let out = serde_json::json!({"urls": a.uris, "username": username, "credential": credential});
    println!("{out}");
    ExitCode::SUCCESS
}

pub(super) fn admin_token(db: &StoreArgs, a: AdminTokenArgs) -> ExitCode {
    let Some(ttl) = crate::admin::token::parse_ttl(&a.ttl) else {
        return fail(format!(
            "--ttl `{}`: expected seconds or 15m, 1h, 7d",
            a.ttl
        ));
    };
    if crate::admin::token::Scope::parse(&a.scope).is_none() {
        return fail(format!(
            "--scope `{}`: expected admin or realm:NAME",
            a.scope
        ));
    }
    let given = crate::secret_file::pick(
        "admin-jwt-secret",
        a.admin_jwt_secret.clone(),
        a.admin_jwt_secret_file.as_deref(),
        "TURNPIKE_ADMIN_JWT_SECRET",
    );
    let given = match given {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    let mint = move |secret: &[u8]| {
        crate::admin::token::mint(
            secret,
            &a.subject,
            &a.scope,
            crate::store::unix_now() as u64,
            ttl,
        )
        .map_err(|e| crate::store::StoreError::Invalid {
            field: "token",
            reason: e.to_string(),
        })
    };
    match given {
        Some(secret) => match mint(secret.as_bytes()) {
            Ok(t) => {
                println!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        None => with_store(&db.db, move |s| {
            Box::pin(async move {
                let secret = s.admin_jwt_secret().await?;
                mint(&secret.0)
            })
        }),
    }
}
