//! coturn's config syntax, read as `turnserver` 4.6.1 reads it
//! (`read_config_file` and `parse_arg_string` in mainrelay.c): a line is
//! `key`, `key=value` or `key value` (blanks and `=` between them in any
//! run), a value may be wrapped in double quotes, and `#` starts a comment
//! only at the start of a line. Also read: command-line forms as in
//! `/etc/default/coturn` or a unit's ExecStart (`--key=value`, `--key
//! value`, `-L ip`, bundled `-af`), on a line of their own, after
//! `turnserver`, or inside a shell variable (`EXTRA_OPTIONS="--no-cli"`).

use super::keys::{self, Arg};

/// One thing a line said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The option's name as written in long form (`-L` reads as
    /// `listening-ip`); for a shell variable its name.
    pub name: String,
    /// `None`: bare (a switch turned on, or an optional value left out).
    pub value: Option<String>,
    /// 1-based line number.
    pub line: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A coturn option (known or not).
    Option,
    /// `NAME=value` of a shell file that holds no option (`TURNSERVER_ENABLED=1`).
    ShellVariable,
    /// A word on a command line that is no option (never shown: it may be
    /// a secret given to the wrong option).
    Stray,
}

/// Short options that take a value, from coturn 4.6.1's getopt string
/// `c:d:p:L:E:X:i:m:l:r:u:b:B:e:M:J:N:O:q:Q:s:C:K:A:vVofhznaS`.
const SHORT_WITH_VALUE: &str = "cdpLEXimlrubBeMJNOqQsCKA";

/// Every option in `text`, in order.
pub(crate) fn parse(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        line(raw, i + 1, &mut out);
    }
    out
}

fn line(raw: &str, n: usize, out: &mut Vec<Entry>) {
    let s = raw.trim_start_matches([' ', '\t']).trim_end();
    if s.is_empty() || s.starts_with('#') {
        return;
    }
    if s.starts_with('-') {
        return command_line(&shell_words(s), n, out);
    }
    if let Some((name, value)) = shell_assignment(s) {
        // The init script expands the variable unquoted: split on blanks.
        let words: Vec<String> = value.split_whitespace().map(str::to_string).collect();
        if words.iter().any(|w| w.starts_with('-')) {
            return command_line(&words, n, out);
        }
        out.push(Entry {
            name: name.to_string(),
            value: None,
            line: n,
            kind: Kind::ShellVariable,
        });
        return;
    }
    let words = shell_words(s);
    if words
        .first()
        .is_some_and(|w| w.rsplit('/').next() == Some("turnserver") && words.len() > 1)
    {
        return command_line(&words[1..], n, out);
    }
    let (name, value) = key_value(s);
    out.push(Entry {
        name: name.to_string(),
        value,
        line: n,
        kind: Kind::Option,
    });
}

/// coturn's `parse_arg_string`: the key ends at the first blank or `=`,
/// then any run of blanks and `=` is skipped; a value starting with `"`
/// loses it and one closing `"` (after trailing blanks).
fn key_value(s: &str) -> (&str, Option<String>) {
    let Some(end) = s.find([' ', '=', '\t']) else {
        return (s, None);
    };
    let mut value = s[end..].trim_start_matches([' ', '=', '\t']);
    if let Some(quoted) = value.strip_prefix('"') {
        let quoted = quoted.trim_end_matches([' ', '\t', '\r', '\n']);
        value = quoted.strip_suffix('"').unwrap_or(quoted);
    }
    let value = (!value.is_empty()).then(|| value.to_string());
    (&s[..end], value)
}

/// `NAME=value` or `export NAME=value` with an upper-case shell name
/// (no coturn option is all capitals), its value unquoted as the shell
/// would.
fn shell_assignment(s: &str) -> Option<(&str, String)> {
    let s = s.strip_prefix("export ").map_or(s, str::trim_start);
    let (name, rest) = s.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    let upper = |c: char| c.is_ascii_uppercase() || c == '_';
    if !upper(first) || !chars.all(|c| upper(c) || c.is_ascii_digit()) {
        return None;
    }
    Some((name, shell_words(rest).join(" ")))
}

/// Words as a POSIX shell splits them: blanks separate, quotes group,
/// a backslash escapes, `#` at a word's start begins a comment.
/// Expansions (`$X`) are kept as written.
pub(crate) fn shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&n) if "\"\\$`".contains(n) => {
                                word.push(n);
                                chars.next();
                            }
                            _ => word.push('\\'),
                        },
                        _ => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// getopt_long over `words`: `--name=value`, `--name value` (when the
/// option requires one), `-Xvalue`, `-X value`, bundled switches `-af`.
fn command_line(words: &[String], n: usize, out: &mut Vec<Entry>) {
    let push = |out: &mut Vec<Entry>, name: String, value: Option<String>, kind| {
        out.push(Entry {
            name,
            value,
            line: n,
            kind,
        })
    };
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        i += 1;
        if w == "--" {
            for _ in &words[i..] {
                push(out, String::new(), None, Kind::Stray);
            }
            return;
        }
        if let Some(long) = w.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, v)) => (name, Some(v.to_string())),
                None => (long, None),
            };
            let value = match (inline, keys::lookup(name).map(|k| k.arg)) {
                (Some(v), _) => Some(v),
                // getopt takes the next word whatever it looks like.
                (None, Some(Arg::Required)) => words.get(i).inspect(|_| i += 1).cloned(),
                (None, Some(_)) => None,
                // Unknown: a following non-option word is taken as its
                // value, so it is not reported (and shown) on its own.
                (None, None) => words
                    .get(i)
                    .filter(|next| !next.starts_with('-'))
                    .inspect(|_| i += 1)
                    .cloned(),
            };
            push(
                out,
                name.to_string(),
                value.filter(|v| !v.is_empty()),
                Kind::Option,
            );
        } else if let Some(shorts) = w.strip_prefix('-').filter(|s| !s.is_empty()) {
            for (j, c) in shorts.char_indices() {
                let name =
                    keys::by_short(c).map_or_else(|| format!("-{c}"), |k| k.name.to_string());
                if SHORT_WITH_VALUE.contains(c) {
                    let rest = &shorts[j + c.len_utf8()..];
                    let value = if rest.is_empty() {
                        words.get(i).inspect(|_| i += 1).cloned()
                    } else {
                        Some(rest.to_string())
                    };
                    push(out, name, value, Kind::Option);
                    break;
                }
                push(out, name, None, Kind::Option);
            }
        } else {
            push(out, String::new(), None, Kind::Stray);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, Option<String>)> {
        parse(text).into_iter().map(|e| (e.name, e.value)).collect()
    }

    fn p(name: &str, value: Option<&str>) -> (String, Option<String>) {
        (name.to_string(), value.map(str::to_string))
    }

    #[test]
    fn key_value_forms_as_coturn_reads_them() {
        let text = "\
# a comment
   # an indented comment
listening-port=3478
realm example.org
min-port = 50000
max-port\t=\t50010
fingerprint
user=alice:pa=ss word
cipher-list=\"DEFAULT:!aNULL\"   
new-log-timestamp-format \"%FT%T%z\"
server-name=a # not a comment
\r
stale-nonce
stale-nonce=
";
        assert_eq!(
            pairs(text),
            vec![
                p("listening-port", Some("3478")),
                p("realm", Some("example.org")),
                p("min-port", Some("50000")),
                p("max-port", Some("50010")),
                p("fingerprint", None),
                p("user", Some("alice:pa=ss word")),
                p("cipher-list", Some("DEFAULT:!aNULL")),
                p("new-log-timestamp-format", Some("%FT%T%z")),
                p("server-name", Some("a # not a comment")),
                p("stale-nonce", None),
                p("stale-nonce", None),
            ]
        );
        let lines: Vec<usize> = parse(text).iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14]);
    }

    #[test]
    fn repeated_keys_are_all_kept_in_order() {
        assert_eq!(
            pairs("listening-ip=127.0.0.1\nlistening-ip=::1\nrealm=a\nrealm=b\n"),
            vec![
                p("listening-ip", Some("127.0.0.1")),
                p("listening-ip", Some("::1")),
                p("realm", Some("a")),
                p("realm", Some("b")),
            ]
        );
    }

    #[test]
    fn command_line_forms_long_short_and_bundled() {
        let text = "--listening-port=3479 --realm x.org --no-cli --stale-nonce -L 127.0.0.1 -p3480 -af -u bob:pw";
        assert_eq!(
            pairs(text),
            vec![
                p("listening-port", Some("3479")),
                p("realm", Some("x.org")),
                p("no-cli", None),
                p("stale-nonce", None),
                p("listening-ip", Some("127.0.0.1")),
                p("listening-port", Some("3480")),
                p("lt-cred-mech", None),
                p("fingerprint", None),
                p("user", Some("bob:pw")),
            ]
        );
    }

    #[test]
    fn etc_default_coturn_variables_hold_flags_or_are_named() {
        let text = "\
#TURNSERVER_ENABLED=1
TURNSERVER_ENABLED=1
EXTRA_OPTIONS=\"--no-cli --external-ip=1.2.3.4 --static-auth-secret 's3 cr'\"
export DAEMON_ARGS='-c /etc/turnserver.conf -v'
/usr/bin/turnserver --no-tlsv1 --pidfile=\"/run/turnserver.pid\"
";
        let got = parse(text);
        assert_eq!(got[0].kind, Kind::ShellVariable);
        assert_eq!(got[0].name, "TURNSERVER_ENABLED");
        assert_eq!(
            got[1..]
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect::<Vec<_>>(),
            vec![
                p("no-cli", None),
                p("external-ip", Some("1.2.3.4")),
                // The variable's value is split on blanks, not re-quoted.
                p("static-auth-secret", Some("'s3")),
                (String::new(), None),
                p("c", Some("/etc/turnserver.conf")),
                p("verbose", None),
                p("no-tlsv1", None),
                p("pidfile", Some("/run/turnserver.pid")),
            ]
        );
        assert_eq!(got[4].kind, Kind::Stray);
    }

    #[test]
    fn unknown_options_take_a_following_word_and_strays_are_marked() {
        let got = parse("--frobnicate 12 --no-cli stray -Z");
        assert_eq!(got[0].name, "frobnicate");
        assert_eq!(got[0].value.as_deref(), Some("12"));
        assert_eq!(got[1].name, "no-cli");
        assert_eq!(got[2].kind, Kind::Stray);
        assert_eq!(got[3].name, "-Z");
    }

    #[test]
    fn shell_words_quote_escape_and_comment() {
        assert_eq!(
            shell_words(r#"a "b c" 'd e' f\ g "h\"i" j#k # rest"#),
            vec!["a", "b c", "d e", "f g", "h\"i", "j#k"]
        );
    }
}
