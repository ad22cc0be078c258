//! The report: one line per coturn option present (in the order of the
//! file), then notes, then a summary; and the exit code it implies.

use std::fmt::Write as _;

/// What became of one option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// Carried over (or already turnpike's behaviour).
    Mapped,
    /// Irrelevant to turnpike.
    Ignored,
    /// Not carried over; `security`: that leaves the server more open or
    /// leaves credentials behind.
    Unsupported { security: bool },
    /// A value coturn itself would refuse or misread; not carried over.
    Invalid,
    /// Not an option this importer knows; not carried over.
    Unknown,
}

impl Status {
    fn word(&self) -> &'static str {
        match self {
            Status::Mapped => "mapped",
            Status::Ignored => "ignored",
            Status::Unsupported { .. } => "unsupported",
            Status::Invalid => "invalid",
            Status::Unknown => "unknown",
        }
    }

    /// Whether this line makes the import exit 1.
    pub(crate) fn fails(&self) -> bool {
        matches!(
            self,
            Status::Unsupported { security: true } | Status::Invalid | Status::Unknown
        )
    }
}

/// One report line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// The option as first written (control characters escaped, long
    /// names cut), or `line N` for a word that is no option.
    pub name: String,
    /// How many times it was given.
    pub count: usize,
    pub status: Status,
    /// What it became, or why not; never a secret value.
    pub detail: String,
}

#[derive(Debug, Default)]
pub(crate) struct Report {
    pub lines: Vec<Line>,
    pub notes: Vec<String>,
}

impl Report {
    /// 0 when every security-relevant option was carried over, else 1.
    pub(crate) fn exit_code(&self) -> u8 {
        u8::from(self.lines.iter().any(|l| l.status.fails()))
    }

    pub(crate) fn render(&self, written: &str) -> String {
        let width = self
            .lines
            .iter()
            .map(|l| shown(l).chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for l in &self.lines {
            let security = if l.status == (Status::Unsupported { security: true }) {
                "[security] "
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "{:<width$}  {:<11}  {security}{}",
                shown(l),
                l.status.word(),
                l.detail
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        let count =
            |f: &dyn Fn(&Status) -> bool| self.lines.iter().filter(|l| f(&l.status)).count();
        let _ = writeln!(
            out,
            "{} options: {} mapped, {} ignored, {} unsupported ({} security-relevant), {} invalid, {} unknown. {written}",
            self.lines.len(),
            count(&|s| *s == Status::Mapped),
            count(&|s| *s == Status::Ignored),
            count(&|s| matches!(s, Status::Unsupported { .. })),
            count(&|s| *s == Status::Unsupported { security: true }),
            count(&|s| *s == Status::Invalid),
            count(&|s| *s == Status::Unknown),
        );
        out
    }
}

fn shown(l: &Line) -> String {
    if l.count > 1 {
        format!("{} (x{})", l.name, l.count)
    } else {
        l.name.clone()
    }
}

/// A name from the file fit for one report line: control characters
/// escaped, at most 64 characters.
pub(crate) fn printable_name(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, status: Status) -> Line {
        Line {
            name: name.into(),
            count: 1,
            status,
            detail: "why".into(),
        }
    }

    #[test]
    fn exit_code_is_one_only_for_security_invalid_or_unknown() {
        let mut r = Report::default();
        r.lines.push(line("a", Status::Mapped));
        r.lines.push(line("b", Status::Ignored));
        r.lines
            .push(line("c", Status::Unsupported { security: false }));
        assert_eq!(r.exit_code(), 0);
        for bad in [
            Status::Unsupported { security: true },
            Status::Invalid,
            Status::Unknown,
        ] {
            let mut r2 = Report::default();
            r2.lines.push(line("d", bad));
            assert_eq!(r2.exit_code(), 1);
        }
    }

    #[test]
    fn lines_are_aligned_and_name_each_option_once() {
        let mut r = Report::default();
        r.lines.push(line("listening-ip", Status::Mapped));
        let mut l = line("no-udp", Status::Unsupported { security: true });
        l.count = 2;
        r.lines.push(l);
        r.notes.push("hello".into());
        let text = r.render("written to X");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "listening-ip  mapped       why");
        assert_eq!(lines[1], "no-udp (x2)   unsupported  [security] why");
        assert_eq!(lines[2], "note: hello");
        assert!(lines[3]
            .starts_with("2 options: 1 mapped, 0 ignored, 1 unsupported (1 security-relevant)"));
        assert!(lines[3].ends_with("written to X"));
    }

    #[test]
    fn names_from_the_file_are_escaped_and_cut() {
        assert_eq!(printable_name("a\u{1b}[31m"), "a\\u{1b}[31m");
        assert_eq!(
            printable_name(&"x".repeat(70)),
            format!("{}...", "x".repeat(64))
        );
    }
}
