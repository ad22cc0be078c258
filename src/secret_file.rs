//! Secrets from files, stdin (`-`) or the environment, so that none has to
//! go on a command line, where `/proc/*/cmdline` and shell history show it.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;

/// Reads one secret from `path` (`-`: stdin): the content without one
/// trailing newline. Errors are one line naming the file, never its bytes.
pub fn read(path: &str) -> Result<String, String> {
    let mut text = String::new();
    let got = if path == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text).map(|_| ()))
    };
    let shown = if path == "-" { "stdin" } else { path };
    got.map_err(|e| format!("cannot read secret file {shown}: {e}"))?;
    let secret = text
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&text);
    if secret.is_empty() {
        return Err(format!("secret file {shown} is empty"));
    }
    Ok(secret.to_string())
}

/// A warning when users other than the owner and its group can read the
/// file, or anyone but the owner can change it. Group read is allowed
/// silently: `root:turnpike 0640` is how a service is usually handed one.
pub fn exposure(path: &str) -> Option<String> {
    if path == "-" {
        return None;
    }
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o026 != 0).then(|| {
        format!("secret file {path} has mode {mode:03o}: other users can read or change it; chmod 600 (or 640 for a service group)")
    })
}

/// One secret from, in order: `--X-file FILE`, `--X VALUE`, the variable
/// `env`. Both flags at once is an error; none gives `None`.
pub fn pick(
    flag: &str,
    value: Option<String>,
    file: Option<&str>,
    env: &str,
) -> Result<Option<String>, String> {
    match (value, file) {
        (Some(_), Some(_)) => Err(format!("give --{flag} or --{flag}-file, not both")),
        (None, Some(f)) => {
            if let Some(w) = exposure(f) {
                eprintln!("warning: {w}");
            }
            read(f).map(Some)
        }
        (Some(v), None) => Ok(Some(v)),
        (None, None) => Ok(std::env::var(env).ok().filter(|v| !v.is_empty())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, contents: &str, mode: u32) -> String {
        let dir = std::env::temp_dir().join(format!("turnpike-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, contents).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.display().to_string()
    }

    #[test]
    fn one_trailing_newline_is_dropped_and_errors_name_the_file() {
        assert_eq!(read(&temp("a", "s3cret\n", 0o600)).unwrap(), "s3cret");
        assert_eq!(read(&temp("b", "s3cret\r\n", 0o600)).unwrap(), "s3cret");
        assert_eq!(
            read(&temp("c", " sp ace \n\n", 0o600)).unwrap(),
            " sp ace \n"
        );
        let e = read("/nonexistent/jwt").unwrap_err();
        assert!(e.contains("/nonexistent/jwt") && !e.contains('\n'), "{e}");
        let e = read(&temp("d", "\n", 0o600)).unwrap_err();
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn world_readable_files_are_flagged_group_readable_ones_not() {
        assert_eq!(exposure(&temp("e", "x", 0o600)), None);
        assert_eq!(exposure(&temp("f", "x", 0o640)), None);
        assert!(exposure(&temp("g", "x", 0o644)).unwrap().contains("644"));
        assert!(exposure(&temp("h", "x", 0o620)).is_some());
    }

    #[test]
    fn flag_and_file_together_are_refused() {
        let f = temp("i", "x", 0o600);
        assert!(pick("password", Some("a".into()), Some(&f), "UNSET_VAR_X").is_err());
        assert_eq!(
            pick("password", None, Some(&f), "UNSET_VAR_X").unwrap(),
            Some("x".into())
        );
        assert_eq!(pick("password", None, None, "UNSET_VAR_X").unwrap(), None);
    }
}
