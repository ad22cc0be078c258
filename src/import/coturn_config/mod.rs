//! `turnpike import coturn-config`: coturn's turnserver.conf (or
//! `/etc/default/coturn`'s flags) to turnserver.toml, with a report line
//! per coturn option: mapped (to which key), ignored (why) or unsupported
//! (what to do instead).
//!
//! | room | holds |
//! | --- | --- |
//! | `parse.rs` | coturn's syntax: `key=value`, `key value`, switches, quotes, `--key=value`, shell variables |
//! | `keys.rs` | the key table (every coturn 4.6.1 option and its rule); `--mapping-table` prints it |
//! | `mapping.rs` | grouping, switches set off, settling by rule |
//! | `map_net.rs`, `map_auth.rs` | the options that become turnpike keys |
//! | `settings.rs` | the TOML being built |
//! | `report.rs` | report lines, notes and the exit code |
//! | `write.rs` | files written through a rename, with their final mode |
//!
//! Exit codes: 0 when written and every security-relevant option was
//! carried over; 1 when written but an option that bears on who may use
//! the server or reach what (or holds credentials) could not be, or an
//! option is unknown or has a bad value (the report names each); 2 when
//! nothing was written: the file cannot be read, the output cannot be
//! written, a secret has no `--out` to sit beside, or the result fails
//! turnpike's own check.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, ConfigError, Options};

mod keys;
mod map_auth;
mod map_net;
mod mapping;
mod parse;
mod report;
mod settings;
mod write;

#[cfg(test)]
mod tests;

pub use keys::mapping_table;

/// `turnpike import coturn-config FILE [--out FILE]`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// coturn's config file (turnserver.conf, or /etc/default/coturn's flags)
    #[arg(required_unless_present = "mapping_table")]
    pub file: Option<PathBuf>,
    /// Where to write turnserver.toml; secrets go to 0600 files beside it [default: stdout]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the table of coturn options and turnpike keys (the README's)
    #[arg(long, hide = true)]
    pub mapping_table: bool,
}

/// Runs the import.
pub fn run(args: Args) -> ExitCode {
    if args.mapping_table {
        print!("{}", mapping_table());
        return ExitCode::SUCCESS;
    }
    let Some(file) = args.file else {
        eprintln!("error: name coturn's config file");
        return ExitCode::from(2);
    };
    match import(&file, args.out.as_deref()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Where the output goes: the TOML's path and the prefix of secret files.
struct Target {
    out: PathBuf,
    secret_prefix: PathBuf,
}

fn import(file: &Path, out: Option<&Path>) -> Result<u8, String> {
    let shown = report::printable_name(&file.display().to_string());
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    let source_dir = file
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let target = out.map(|o| target(file, o)).transpose()?;
    let prefix = target
        .as_ref()
        .map_or_else(|| PathBuf::from("turnserver"), |t| t.secret_prefix.clone());
    let mut plan = mapping::map(parse::parse(&text), &source_dir, &prefix);
    let Some(target) = target else {
        if !plan.secrets.is_empty() {
            return Err(format!(
                "{shown} holds static-auth-secret: give --out FILE, and the secret goes to a 0600 file beside it (never inline or to stdout); nothing written"
            ));
        }
        let toml = plan.settings.render(&header(&shown));
        check(&toml, &plan.secrets).map_err(|e| {
            eprint!("{}", plan.report.render("Nothing written."));
            format!(
                "the translated config does not pass `turnpike config check`: {e}; nothing written"
            )
        })?;
        print!("{toml}");
        eprint!(
            "{}",
            plan.report.render("turnserver.toml printed to stdout.")
        );
        return Ok(plan.report.exit_code());
    };
    let toml = plan.settings.render(&header(&shown));
    if let Err(e) = check(&toml, &plan.secrets) {
        eprint!("{}", plan.report.render("Nothing written."));
        return Err(format!(
            "the translated config does not pass `turnpike config check`: {e}; nothing written"
        ));
    }
    let written = write_all(&target.out, &toml, &plan)?;
    if !plan.secrets.is_empty() {
        plan.report.notes.push("secret files are mode 0600 and owned by you: turnpike must run as their owner or get read access (group 0640); the packaged unit's dynamic user needs that too.".into());
    }
    if plan.holds_user_keys {
        plan.report.notes.push(format!(
            "{} holds user keys, which let anyone authenticate as those users here: it is mode 0600 (give turnpike's user read access, as for secret files).",
            target.out.display()
        ));
    }
    print!("{}", plan.report.render(&written));
    Ok(plan.report.exit_code())
}

/// The output path made absolute, and the prefix of its secret files
/// (`/etc/turnpike/turnserver` for `/etc/turnpike/turnserver.toml`).
fn target(file: &Path, out: &Path) -> Result<Target, String> {
    let shown = out.display();
    let name = out
        .file_name()
        .ok_or_else(|| format!("--out {shown} names no file"))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = parent
        .canonicalize()
        .map_err(|e| format!("cannot write {shown}: folder {}: {e}", parent.display()))?;
    let out = dir.join(name);
    if file.canonicalize().ok().as_deref() == Some(out.as_path()) {
        return Err(format!("--out {shown} is the coturn file itself"));
    }
    let stem = Path::new(name).file_stem().unwrap_or(name);
    Ok(Target {
        secret_prefix: dir.join(stem),
        out,
    })
}

fn header(source: &str) -> Vec<String> {
    vec![
        "turnpike configuration, translated by `turnpike import coturn-config`".into(),
        format!("from {source}. Each key names the coturn options it came from;"),
        "every other key keeps turnpike's default (`turnpike config default`).".into(),
        "Peers on private, loopback and link-local networks are refused unless".into(),
        "allowed_peer_ip opens them (README: Moving from coturn).".into(),
    ]
}

/// turnpike's own validation of the translated file, before anything is
/// written: the secrets are checked inline, as their files do not exist yet.
fn check(toml: &str, secrets: &[(PathBuf, String)]) -> Result<(), ConfigError> {
    let mut o = Options::from_toml(toml, "the translated config")?;
    o.static_auth_secret_file.clear();
    o.static_auth_secret = secrets.iter().map(|(_, s)| s.clone()).collect();
    o.resolve().map(|_| ())
}

/// Secret files, then the TOML through a temporary name that
/// `Config::load` must accept (it reads the secret files) before the
/// rename. On failure what this run wrote is removed.
fn write_all(out: &Path, toml: &str, plan: &mapping::ConfigImportPlan) -> Result<String, String> {
    let mut written: Vec<&Path> = Vec::new();
    let undo = |written: &[&Path]| {
        for p in written {
            let _ = std::fs::remove_file(p);
        }
    };
    for (path, secret) in &plan.secrets {
        let done = write::to_temporary(path, &format!("{secret}\n"), 0o600)
            .and_then(|tmp| write::commit(&tmp, path));
        if let Err(e) = done {
            undo(&written);
            return Err(format!("{e}; nothing written"));
        }
        written.push(path);
    }
    let mode = if plan.holds_user_keys { 0o600 } else { 0o644 };
    let tmp = match write::to_temporary(out, toml, mode) {
        Ok(t) => t,
        Err(e) => {
            undo(&written);
            return Err(format!("{e}; nothing written"));
        }
    };
    if let Err(e) = Config::load(Some(&tmp), Options::default()) {
        undo(&written);
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "the written config does not pass `turnpike config check`: {e}; nothing written"
        ));
    }
    if let Err(e) = write::commit(&tmp, out) {
        undo(&written);
        return Err(format!("{e}; nothing written"));
    }
    let mut said = format!("Wrote {} (mode {mode:04o})", out.display());
    if !written.is_empty() {
        let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        said += &format!(" and {} (mode 0600)", files.join(", "));
    }
    Ok(said + ".")
}
