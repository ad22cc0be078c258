//! Which coturn database a URL names, checked before anything connects.

/// A coturn database by backend.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Source {
    /// A file path (coturn's `-b`/`userdb`).
    Sqlite(String),
    /// `postgres://` or `postgresql://` (coturn's `psql-userdb`).
    Postgres(String),
    /// `mysql://` or `mariadb://` (coturn's `mysql-userdb`), as sqlx reads it.
    Mysql(String),
    /// `redis://[:PASSWORD@]HOST[:PORT][/DB]` (coturn's `redis-userdb`).
    Redis(String),
}

// By hand: URLs may hold a password.
impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Source({})", self.shown())
    }
}

impl Source {
    /// Reads `url`; the error is one line naming what is expected.
    pub(super) fn parse(url: &str) -> Result<Source, String> {
        let url = url.trim();
        let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => {
                let path = url["sqlite:".len()..].trim_start_matches("//");
                let path = path.split('?').next().unwrap_or(path);
                if path.is_empty() {
                    return Err("sqlite: needs a file name (sqlite:PATH)".into());
                }
                Ok(Source::Sqlite(path.to_string()))
            }
            "postgres" | "postgresql" => Ok(Source::Postgres(url.to_string())),
            "mysql" => Ok(Source::Mysql(url.to_string())),
            // sqlx's MySQL driver speaks to MariaDB under the mysql scheme.
            "mariadb" => Ok(Source::Mysql(format!("mysql{}", &url["mariadb".len()..]))),
            "redis" => Ok(Source::Redis(url.to_string())),
            "rediss" => Err("rediss:// (Redis over TLS) is not supported: use redis:// on a trusted network or an SSH tunnel".into()),
            _ => Err(format!(
                "`{}` is not a coturn database URL: expected sqlite:PATH, postgres://, mysql:// (MySQL or MariaDB) or redis://",
                crate::store::redact(url)
            )),
        }
    }

    /// The URL for messages, without its password.
    pub(super) fn shown(&self) -> String {
        match self {
            Source::Sqlite(path) => format!("sqlite:{path}"),
            Source::Postgres(u) | Source::Mysql(u) | Source::Redis(u) => crate::store::redact(u),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_backend_is_told_by_its_scheme() {
        assert_eq!(
            Source::parse("sqlite:/var/lib/turn/turndb"),
            Ok(Source::Sqlite("/var/lib/turn/turndb".into()))
        );
        assert_eq!(
            Source::parse("sqlite:///var/lib/turn/turndb"),
            Ok(Source::Sqlite("/var/lib/turn/turndb".into()))
        );
        assert_eq!(
            Source::parse("sqlite:turndb"),
            Ok(Source::Sqlite("turndb".into()))
        );
        assert!(matches!(
            Source::parse("postgresql://u@h/coturn"),
            Ok(Source::Postgres(_))
        ));
        assert_eq!(
            Source::parse("mariadb://u:p@h:3306/coturn"),
            Ok(Source::Mysql("mysql://u:p@h:3306/coturn".into()))
        );
        assert!(matches!(
            Source::parse("redis://127.0.0.1:6379/2"),
            Ok(Source::Redis(_))
        ));
    }

    #[test]
    fn a_wrong_scheme_is_one_line_without_the_password() {
        let e = Source::parse("mongodb://admin:hunter2@h/coturn").unwrap_err();
        assert!(e.contains("not a coturn database URL"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(!e.contains('\n'));
        assert!(Source::parse("sqlite:").is_err());
        assert!(Source::parse("rediss://h").unwrap_err().contains("TLS"));
        assert!(Source::parse("/var/lib/turn/turndb").is_err());
    }

    #[test]
    fn shown_urls_lose_their_password() {
        let s = Source::parse("mysql://turn:hunter2@127.0.0.1/coturn").unwrap();
        assert!(!s.shown().contains("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
