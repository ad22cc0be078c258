//! Reads coturn's Redis user database (`/usr/share/coturn/schema.userdb.redis`):
//! keys under `turn/`, found with SCAN (never KEYS, which blocks the
//! server), then read one by one. Read-only.
//!
//! | key | type | row |
//! |---|---|---|
//! | `turn/realm/R/user/NAME/key` | string | `turnusers_lt` |
//! | `turn/realm/R/secret` | set | `turn_secret` |
//! | `turn/realm/R/allowed-peer-ip`, `.../denied-peer-ip` | set | `*_peer_ip` |
//! | `turn/realm/R/max-bps`, `total-quota`, `user-quota` | string | `turn_realm_option` |
//! | `turn/oauth/kid/KID` | hash | `oauth_key` |
//! | `turn/origin/ORIGIN` | string | `turn_origin_to_realm` |
//! | `turn/admin_user/NAME` | hash | `admin_user` |

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;

use super::model::{AdminUser, CoturnDb, OAuthKey, Origin, PeerRange, RealmOption, Secret, User};

/// What a key under `turn/` holds, by its name.
#[derive(Debug, PartialEq, Eq)]
enum Key<'a> {
    User {
        realm: &'a str,
        name: &'a str,
    },
    Secret {
        realm: &'a str,
    },
    Peers {
        realm: &'a str,
        allowed: bool,
    },
    RealmOption {
        realm: &'a str,
        opt: &'a str,
    },
    OAuth {
        kid: &'a str,
    },
    Origin {
        origin: &'a str,
    },
    Admin {
        name: &'a str,
    },
    /// Not part of the user database (statistics, or unknown).
    Other,
}

fn classify(key: &str) -> Key<'_> {
    if let Some(rest) = key.strip_prefix("turn/realm/") {
        // Realms hold no `/` in coturn; user names may.
        if let Some((realm, name)) = rest
            .strip_suffix("/key")
            .and_then(|r| r.split_once("/user/"))
        {
            return Key::User { realm, name };
        }
        return match rest.rsplit_once('/') {
            Some((realm, "secret")) => Key::Secret { realm },
            Some((realm, "allowed-peer-ip")) => Key::Peers {
                realm,
                allowed: true,
            },
            Some((realm, "denied-peer-ip")) => Key::Peers {
                realm,
                allowed: false,
            },
            Some((realm, opt @ ("max-bps" | "total-quota" | "user-quota"))) => {
                Key::RealmOption { realm, opt }
            }
            _ => Key::Other,
        };
    }
    if let Some(kid) = key.strip_prefix("turn/oauth/kid/") {
        return Key::OAuth { kid };
    }
    if let Some(origin) = key.strip_prefix("turn/origin/") {
        return Key::Origin { origin };
    }
    if let Some(name) = key.strip_prefix("turn/admin_user/") {
        return Key::Admin { name };
    }
    Key::Other
}

fn err(e: redis::RedisError) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads the user database at `url` (`redis://[:PASSWORD@]HOST[:PORT][/DB]`).
/// A database with no key of coturn's user schema is not coturn's.
pub(super) async fn read(url: &str) -> Result<CoturnDb, String> {
    let client = redis::Client::open(url).map_err(|e| format!("bad URL: {}", err(e)))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("cannot connect: {}", err(e)))?;
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("turn/*")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    // SCAN may return a key twice.
    keys.sort();
    keys.dedup();
    let mut db = CoturnDb::default();
    let mut known = 0usize;
    for key in &keys {
        let k = classify(key);
        if k != Key::Other {
            known += 1;
        }
        read_key(&mut conn, key, k, &mut db)
            .await
            .map_err(|e| format!("{key}: {e}"))?;
    }
    if known == 0 {
        return Err("not coturn's database: no key of coturn's user schema (turn/realm/..., turn/oauth/kid/..., turn/origin/...) in it".into());
    }
    Ok(db)
}

async fn get(conn: &mut MultiplexedConnection, key: &str) -> Result<String, String> {
    let v: Option<String> = redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(err)?;
    Ok(v.unwrap_or_default())
}

/// A set's members, sorted (Redis hands them over in any order).
async fn members(conn: &mut MultiplexedConnection, key: &str) -> Result<Vec<String>, String> {
    let mut v: Vec<String> = redis::cmd("SMEMBERS")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(err)?;
    v.sort();
    Ok(v)
}

async fn hash(
    conn: &mut MultiplexedConnection,
    key: &str,
) -> Result<HashMap<String, String>, String> {
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(err)
}

async fn read_key(
    conn: &mut MultiplexedConnection,
    key: &str,
    k: Key<'_>,
    db: &mut CoturnDb,
) -> Result<(), String> {
    match k {
        Key::User { realm, name } => db.users.push(User {
            realm: realm.into(),
            name: name.into(),
            hmackey: get(conn, key).await?.trim().to_string(),
        }),
        Key::Secret { realm } => {
            for value in members(conn, key).await? {
                db.secrets.push(Secret {
                    realm: realm.into(),
                    value,
                });
            }
        }
        Key::Peers { realm, allowed } => {
            for range in members(conn, key).await? {
                let p = PeerRange {
                    realm: realm.into(),
                    range: range.trim().to_string(),
                };
                if allowed {
                    db.allowed_peers.push(p);
                } else {
                    db.denied_peers.push(p);
                }
            }
        }
        Key::RealmOption { realm, opt } => db.realm_options.push(RealmOption {
            realm: realm.into(),
            opt: opt.into(),
            value: get(conn, key).await?.trim().to_string(),
        }),
        Key::OAuth { kid } => {
            let h = hash(conn, key).await?;
            let field = |f: &str| h.get(f).map(|s| s.trim().to_string()).unwrap_or_default();
            let number = |f: &str| -> Result<i64, String> {
                let v = field(f);
                if v.is_empty() {
                    return Ok(0);
                }
                v.parse().map_err(|_| format!("{f} `{v}` is not a number"))
            };
            db.oauth_keys.push(OAuthKey {
                kid: kid.into(),
                ikm_key: field("ikm_key"),
                timestamp: number("timestamp")?,
                lifetime: number("lifetime")?,
                as_rs_alg: field("as_rs_alg"),
                realm: h.get("realm").cloned().unwrap_or_default(),
            });
        }
        Key::Origin { origin } => db.origins.push(Origin {
            origin: origin.into(),
            realm: get(conn, key).await?,
        }),
        Key::Admin { name } => db.admin_users.push(AdminUser {
            name: name.into(),
            realm: hash(conn, key).await?.remove("realm").unwrap_or_default(),
        }),
        Key::Other => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_told_apart_as_coturns_schema_names_them() {
        assert_eq!(
            classify("turn/realm/north.gov/user/gorst/key"),
            Key::User {
                realm: "north.gov",
                name: "gorst"
            }
        );
        assert_eq!(
            classify("turn/realm/north.gov/user/a/user/b/key"),
            Key::User {
                realm: "north.gov",
                name: "a/user/b"
            }
        );
        assert_eq!(
            classify("turn/realm/north.gov/secret"),
            Key::Secret { realm: "north.gov" }
        );
        assert_eq!(
            classify("turn/realm/crinna.org/denied-peer-ip"),
            Key::Peers {
                realm: "crinna.org",
                allowed: false
            }
        );
        assert_eq!(
            classify("turn/realm/crinna.org/user-quota"),
            Key::RealmOption {
                realm: "crinna.org",
                opt: "user-quota"
            }
        );
        assert_eq!(
            classify("turn/oauth/kid/oldempire"),
            Key::OAuth { kid: "oldempire" }
        );
        assert_eq!(
            classify("turn/origin/http://crinna.org:80"),
            Key::Origin {
                origin: "http://crinna.org:80"
            }
        );
        assert_eq!(
            classify("turn/admin_user/bayaz"),
            Key::Admin { name: "bayaz" }
        );
        assert_eq!(classify("turn/user/gorst/allocation/1/status"), Key::Other);
        assert_eq!(classify("turn/realm/north.gov/something"), Key::Other);
    }
}
