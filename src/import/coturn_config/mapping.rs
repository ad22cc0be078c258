//! From coturn's options to turnpike's keys: the options are grouped by
//! name, switches set off are settled first, then each handler
//! (`map_net.rs`, `map_auth.rs`) maps the options it owns, seeing the
//! whole file (listening-ip × listening-port, cert with no-tls, user under
//! use-auth-secret), and every option left is settled by its rule in the
//! key table. No secret value reaches the report or the TOML.

use std::path::{Path, PathBuf};

use super::keys::{self, Arg, Key, Rule};
use super::parse::{Entry, Kind};
use super::report::{printable_name, Line, Report, Status};
use super::settings::Settings;

/// What the import would write and say.
#[derive(Debug)]
pub(crate) struct ConfigImportPlan {
    pub settings: Settings,
    /// (file, secret): each written mode 0600 and named by a `*_file` key.
    pub secrets: Vec<(PathBuf, String)>,
    pub report: Report,
    /// The TOML holds user keys, which are as good as passwords here.
    pub holds_user_keys: bool,
}

/// All the occurrences of one option.
#[derive(Debug)]
pub(super) struct Group {
    pub key: Option<&'static Key>,
    /// As first written (canonical long name for `-X` forms).
    pub name: String,
    pub values: Vec<Option<String>>,
    /// Line of the last occurrence: of two spellings, the later wins.
    pub last_line: usize,
    pub kind: Kind,
    /// Settled: status and detail.
    pub outcome: Option<(Status, String)>,
}

pub(super) struct Mapper<'a> {
    pub groups: Vec<Group>,
    pub out: Settings,
    pub secrets: Vec<(PathBuf, String)>,
    pub notes: Vec<String>,
    pub holds_user_keys: bool,
    /// The coturn file's folder (relative cert and pkey paths).
    pub source_dir: &'a Path,
    /// Secret files are `{secret_prefix}.static_auth_secret[.N]`.
    pub secret_prefix: &'a Path,
}

/// Switches whose `false` is a setting of its own, not "left off".
const BOOL_VALUED: &[&str] = &[
    "stun-backward-compatibility",
    "no-stun-backward-compatibility",
];

/// Maps `entries`; `source_dir` resolves relative paths, `secret_prefix`
/// names secret files.
pub(crate) fn map(
    entries: Vec<Entry>,
    source_dir: &Path,
    secret_prefix: &Path,
) -> ConfigImportPlan {
    let mut m = Mapper {
        groups: group(entries),
        out: Settings::default(),
        secrets: Vec::new(),
        notes: Vec::new(),
        holds_user_keys: false,
        source_dir,
        secret_prefix,
    };
    m.settle_switches_and_missing_values();
    m.listeners();
    m.relay();
    m.auth();
    m.quotas();
    m.peers();
    m.misc();
    m.by_rule();
    m.general_notes();
    let lines = m
        .groups
        .into_iter()
        .map(|g| {
            let (status, detail) = g.outcome.expect("every group is settled");
            Line {
                name: g.name,
                count: g.values.len(),
                status,
                detail,
            }
        })
        .collect();
    ConfigImportPlan {
        settings: m.out,
        secrets: m.secrets,
        report: Report {
            lines,
            notes: m.notes,
        },
        holds_user_keys: m.holds_user_keys,
    }
}

/// One group per option (aliases together), per shell variable, and per
/// stray word, in the order of first appearance.
fn group(entries: Vec<Entry>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for e in entries {
        let key = match e.kind {
            Kind::Option => keys::lookup(&e.name)
                .or_else(|| keys::COMMAND_LINE_ONLY.iter().find(|k| k.name == e.name)),
            _ => None,
        };
        let id = |g: &Group| match (key, g.key) {
            (Some(k), Some(gk)) => k.name == gk.name,
            (None, None) => {
                e.kind != Kind::Stray
                    && !e.name.is_empty()
                    && g.kind == e.kind
                    && g.name == printable_name(&e.name)
            }
            _ => false,
        };
        match groups.iter_mut().find(|g| id(g)) {
            Some(g) => {
                g.values.push(e.value);
                g.last_line = e.line;
            }
            None => groups.push(Group {
                key,
                name: if e.kind == Kind::Stray || e.name.is_empty() {
                    format!("line {}", e.line)
                } else {
                    printable_name(&e.name)
                },
                values: vec![e.value],
                last_line: e.line,
                kind: e.kind,
                outcome: None,
            }),
        }
    }
    groups
}

/// coturn's `get_bool_value`: bare is on; 0/n/f... off; y/t/1-9 and `on`
/// on; anything else makes coturn exit.
pub(super) fn switch(v: Option<&str>) -> Result<bool, String> {
    let Some(s) = v.filter(|s| !s.is_empty()) else {
        return Ok(true);
    };
    match s.as_bytes()[0] {
        b'0' | b'n' | b'N' | b'f' | b'F' => Ok(false),
        b'y' | b'Y' | b't' | b'T' | b'1'..=b'9' => Ok(true),
        _ if matches!(s, "off" | "OFF" | "Off") => Ok(false),
        _ if matches!(s, "on" | "ON" | "On") => Ok(true),
        _ => Err(format!(
            "`{}` is not a switch value (on/off, yes/no, 1/0, true/false); coturn refuses it too",
            printable_name(s)
        )),
    }
}

impl Mapper<'_> {
    fn group(&self, name: &str) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.key.is_some_and(|k| k.name == name) && g.outcome.is_none())
    }

    /// Present and not yet settled (a switch set off is settled).
    pub(super) fn open(&self, name: &str) -> bool {
        self.group(name).is_some()
    }

    /// The last value of an open option: `None` if absent, `Some(None)`
    /// if bare.
    pub(super) fn last(&self, name: &str) -> Option<Option<&str>> {
        self.group(name)
            .map(|g| g.values.last().and_then(|v| v.as_deref()))
    }

    /// Every value of an open option, in order.
    pub(super) fn values(&self, name: &str) -> Vec<&str> {
        self.group(name)
            .map(|g| g.values.iter().flatten().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The line an open option was last given on.
    pub(super) fn line_of(&self, name: &str) -> Option<usize> {
        self.group(name).map(|g| g.last_line)
    }

    /// Settles an open option (no-op when absent or already settled).
    pub(super) fn settle(&mut self, name: &str, status: Status, detail: impl Into<String>) {
        if let Some(g) = self
            .groups
            .iter_mut()
            .find(|g| g.key.is_some_and(|k| k.name == name) && g.outcome.is_none())
        {
            g.outcome = Some((status, detail.into()));
        }
    }

    pub(super) fn mapped(&mut self, name: &str, detail: impl Into<String>) {
        self.settle(name, Status::Mapped, detail);
    }

    pub(super) fn ignored(&mut self, name: &str, detail: impl Into<String>) {
        self.settle(name, Status::Ignored, detail);
    }

    pub(super) fn invalid(&mut self, name: &str, detail: impl Into<String>) {
        self.settle(name, Status::Invalid, detail);
    }

    /// Switches set off need nothing; a bad switch value (coturn exits on
    /// it), or a bare option whose value would be carried over, is invalid.
    fn settle_switches_and_missing_values(&mut self) {
        for g in &mut self.groups {
            let Some(key) = g.key else { continue };
            let last = g.values.last().and_then(|v| v.as_deref());
            match key.arg {
                Arg::Flag if !BOOL_VALUED.contains(&key.name) => match switch(last) {
                    Err(why) => g.outcome = Some((Status::Invalid, why)),
                    Ok(false) => {
                        g.outcome = Some((
                            Status::Ignored,
                            format!(
                                "switched off here (`={}`): nothing to carry over",
                                printable_name(last.unwrap_or_default())
                            ),
                        ))
                    }
                    Ok(true) => {}
                },
                // Where nothing is carried over anyway the value does not
                // matter; the table's rule settles it.
                Arg::Required
                    if g.values.iter().any(Option::is_none)
                        && matches!(
                            key.rule,
                            Rule::Map { .. } | Rule::Unsupported { security: true, .. }
                        ) =>
                {
                    g.outcome = Some((
                        Status::Invalid,
                        "given without a value: nothing carried over".into(),
                    ))
                }
                _ => {}
            }
        }
    }

    /// Options no handler settled, by their rule in the key table;
    /// unknown names and stray words.
    fn by_rule(&mut self) {
        for g in &mut self.groups {
            if g.outcome.is_some() {
                continue;
            }
            g.outcome = Some(match (g.kind, g.key) {
                (Kind::Stray, _) => (
                    Status::Unknown,
                    "a word that is no option (not shown: it may be a secret)".into(),
                ),
                (Kind::ShellVariable, _) if g.name == "TURNSERVER_ENABLED" => (
                    Status::Ignored,
                    "Debian's switch to start coturn at boot; the turnpike package enables its own unit".into(),
                ),
                (Kind::ShellVariable, _) => (
                    Status::Ignored,
                    "a shell variable holding no coturn option".into(),
                ),
                (Kind::Option, None) => (
                    Status::Unknown,
                    "not an option of coturn 4.6 or of this importer: nothing carried over (its value is not shown)".into(),
                ),
                (Kind::Option, Some(k)) => match k.rule {
                    Rule::Default(why) => (Status::Mapped, format!("turnpike's default: {why}")),
                    Rule::Ignored(why) => (Status::Ignored, why.to_string()),
                    Rule::Unsupported { instead, security } => {
                        (Status::Unsupported { security }, instead.to_string())
                    }
                    // A handler settles every Map option; reaching here is
                    // a bug, caught by `every_mapped_option_has_a_handler`.
                    Rule::Map { to, .. } => (
                        Status::Invalid,
                        format!("internal: no handler maps it to {to}"),
                    ),
                },
            });
        }
    }

    /// What differs from coturn in any file, and what this one implies.
    fn general_notes(&mut self) {
        self.notes.insert(
            0,
            "turnpike refuses peers on private, loopback, link-local, CGNAT, multicast and other special ranges by default (README Security §2); coturn relayed to them unless told not to. Peers on such networks need allowed_peer_ip.".into(),
        );
        let has = |m: &Self, name: &str| {
            m.groups
                .iter()
                .any(|g| g.key.is_some_and(|k| k.name == name))
        };
        if !has(self, "no-tcp-relay") {
            self.notes.push("coturn offered TCP relays (RFC 6062) unless no-tcp-relay was set; turnpike offers them only with tcp_relay = true.".into());
        }
    }
}
