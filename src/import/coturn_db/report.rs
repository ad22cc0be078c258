//! The report an import prints: one line per row (what happened and why),
//! then a summary line. Secrets and keys never appear in it.

use super::plan::{DbImportPlan, Outcome};

fn tag(outcome: Outcome, dry_run: bool) -> &'static str {
    match (outcome, dry_run) {
        (Outcome::Add, false) => "added",
        (Outcome::Add, true) => "would add",
        (Outcome::Same, _) => "unchanged",
        (Outcome::Conflict, _) => "conflict",
        (Outcome::Skip, _) => "skipped",
        (Outcome::Note, _) => "note",
    }
}

/// The report's lines, the summary last.
pub(super) fn render(plan: &DbImportPlan, dry_run: bool) -> Vec<String> {
    let mut out: Vec<String> = plan
        .lines
        .iter()
        .map(|l| format!("{}: {}", tag(l.outcome, dry_run), l.text))
        .collect();
    let changes = plan.additions.len();
    out.push(format!(
        "{changes} change{}{}, {} unchanged, {} conflict{}, {} skipped, {} note{}",
        if changes == 1 { "" } else { "s" },
        if dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        },
        plan.count(Outcome::Same),
        plan.count(Outcome::Conflict),
        if plan.count(Outcome::Conflict) == 1 {
            ""
        } else {
            "s"
        },
        plan.count(Outcome::Skip),
        plan.count(Outcome::Note),
        if plan.count(Outcome::Note) == 1 {
            ""
        } else {
            "s"
        },
    ));
    out
}
