//! `turnpike generate`: man pages and shell completions, rendered from the
//! clap definitions so they never drift from the real flags. For packagers
//! (scripts/package.sh), hence hidden from `--help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Subcommand};
use clap_complete::Shell;

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Write turnpike.1 and a turnpike-SUB.1 for every subcommand into DIR
    Man {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write bash (turnpike.bash), zsh (_turnpike) and fish (turnpike.fish)
    /// completions into DIR
    Completions {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

pub(super) fn run(cmd: GenerateCommand) -> ExitCode {
    let (out, result) = match cmd {
        GenerateCommand::Man { out } => {
            let r = man(&out);
            (out, r)
        }
        GenerateCommand::Completions { out } => {
            let r = completions(&out);
            (out, r)
        }
    };
    match result {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

/// What turnpike(1) says above the generated sections.
const ABOUT: &str = "turnpike is a STUN and TURN server (RFC 8489, RFC 8656, RFC 6062, \
RFC 5780) for WebRTC and other ICE clients, a replacement for coturn. \
`turnpike serve` runs the server; the other subcommands manage its \
credential store, probe servers and check its health. Each has its own \
page, listed below; `turnpike SUBCOMMAND --help` prints the same.";

/// Where the Debian package puts things (roff), for turnpike(1).
const FILES: &str = r#".SH FILES
.TP
/etc/turnpike/turnserver.toml
The configuration; every key is shown at its default
(\fBturnpike config default\fR prints it, \fBturnpike config check\fR checks it).
.TP
/var/lib/turnpike/turnpike.db
The SQLite credential store of the systemd unit (its \fB\-\-db\fR).
.TP
/lib/systemd/system/turnpike.service
The systemd unit: \fBsystemctl reload turnpike\fR sends SIGHUP,
\fBsystemctl kill \-s SIGUSR1 turnpike\fR drains.
.SH SEE ALSO
\fBturnpike\-serve\fR(1), \fBturnpike\-config\fR(1), \fBsystemctl\fR(1)
"#;

/// The man pages, one per visible (sub)command: `turnpike-user-add.1` for
/// `turnpike user add`, as clap_mangen names them. turnpike.1 gets a longer
/// description and FILES.
fn man(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let cmd = super::Cli::command().long_about(ABOUT);
    clap_mangen::generate_to(cmd.clone(), out)?;
    // As generate_to does: no `help` subcommand in the list.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let page = clap_mangen::Man::new(cmd);
    let mut roff = Vec::new();
    page.render_title(&mut roff)?;
    page.render_name_section(&mut roff)?;
    page.render_synopsis_section(&mut roff)?;
    page.render_description_section(&mut roff)?;
    page.render_options_section(&mut roff)?;
    page.render_subcommands_section(&mut roff)?;
    roff.extend_from_slice(FILES.as_bytes());
    page.render_version_section(&mut roff)?;
    std::fs::write(out.join(page.get_filename()), roff)?;

    let mut files: Vec<PathBuf> = std::fs::read_dir(out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    files.sort();
    Ok(files)
}

/// One file per shell, named as each shell's completion directory expects
/// (bash's is renamed to plain `turnpike` when installed).
fn completions(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut cmd = super::Cli::command();
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| clap_complete::generate_to(shell, &mut cmd, "turnpike", out))
        .collect()
}
