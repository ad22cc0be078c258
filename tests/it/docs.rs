//! The README cites tests by file and name (`turn/tests/hostile.rs:
//! \`name\``) as its evidence; a moved or renamed test must not leave a
//! citation pointing nowhere.

use std::path::{Path, PathBuf};

/// Every `path.rs: \`a\`, \`b\`` citation in `text`: the path and names.
fn citations(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(".rs: `") {
        let before = &rest[..i];
        let start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "_/*".contains(c)))
            .map_or(0, |j| j + 1);
        let path = format!("{}.rs", &before[start..]);
        let mut names = Vec::new();
        let mut tail = &rest[i + 5..];
        while let Some(t) = tail.strip_prefix('`') {
            let Some(end) = t.find('`') else { break };
            let name = &t[..end];
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                break;
            }
            names.push(name.to_string());
            match t[end + 1..].strip_prefix(", ") {
                Some(more) => tail = more,
                None => break,
            }
        }
        out.push((path, names));
        rest = &rest[i + 5..];
    }
    out
}

/// The text of `path` and of every file in the folder of the same name
/// (a module's tests may live in `room/tests.rs`).
fn sources(root: &Path, path: &str) -> Option<String> {
    let file = [
        root.join("src").join(path),
        root.join("tests").join(path),
        root.join(path),
    ]
    .into_iter()
    .find(|p| p.is_file())?;
    let mut text = std::fs::read_to_string(&file).ok()?;
    let mut dirs: Vec<PathBuf> = vec![file.with_extension("")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                text += &std::fs::read_to_string(&p).unwrap_or_default();
            }
        }
    }
    Some(text)
}

#[test]
fn every_test_the_readme_cites_exists_where_it_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let cited = citations(&readme);
    assert!(cited.len() > 50, "{} citations found", cited.len());
    let mut stale = Vec::new();
    for (path, names) in &cited {
        if path.contains('*') {
            continue;
        }
        let Some(text) = sources(root, path) else {
            stale.push(format!("{path}: no such file"));
            continue;
        };
        for n in names {
            if !text.contains(&format!("fn {n}(")) {
                stale.push(format!("{path}: no test `{n}`"));
            }
        }
    }
    assert!(stale.is_empty(), "README cites:\n{}", stale.join("\n"));
}
