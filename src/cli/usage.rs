//! `turnpike usage`: the usage API's answer from the store, every page,
//! as an aligned table, the API's JSON, or CSV. Rows are groups or
//! records; the last six columns are the counters (a record counts one
//! allocation), and the last row is `total`, the API's `totals`.

use std::process::ExitCode;

use clap::Args;

use super::store::StoreArgs;
use super::EXIT_CONFIG;
use crate::store::Store;
use crate::usage::query::{answer_json, GroupBy, UsagePage, UsageParams, UsageQuery, UsageTotals};
use crate::usage::record::rfc3339;

#[derive(Debug, Args)]
pub struct UsageArgs {
    #[command(flatten)]
    pub db: StoreArgs,
    /// Only this user
    #[arg(long)]
    pub user: Option<String>,
    /// Only this realm
    #[arg(long)]
    pub realm: Option<String>,
    /// Only this node
    #[arg(long)]
    pub node: Option<String>,
    /// Records that started at or after: an age (7d, 12h, 30m), a date
    /// (2026-12-01, UTC), RFC 3339 or Unix seconds [default: 30d]
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// ... and before this (same forms) [default: now]
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// none (the records), user, realm, node or day (UTC)
    #[arg(long, value_name = "KEY", default_value = "none")]
    pub group_by: String,
    /// table, json (the API's answer) or csv
    #[arg(long, default_value = "table")]
    pub format: String,
}

/// The flags' names for the API's parameter names, for messages.
fn flag(field: &str) -> &str {
    match field {
        "from" => "--since",
        "to" => "--until",
        "group_by" => "--group-by",
        other => other,
    }
}

pub(super) fn run(a: UsageArgs) -> ExitCode {
    let usage_error = |msg: String| {
        eprintln!("error: {msg}");
        ExitCode::from(EXIT_CONFIG)
    };
    if !["table", "json", "csv"].contains(&a.format.as_str()) {
        return usage_error(format!(
            "--format `{}`: expected table, json or csv",
            a.format
        ));
    }
    let params = UsageParams {
        user: a.user,
        realm: a.realm,
        node: a.node,
        from: a.since,
        to: a.until,
        group_by: Some(a.group_by),
        limit: Some(crate::usage::query::MAX_LIMIT.to_string()),
        cursor: None,
    };
    let q = match params.resolve(crate::store::unix_now_ms()) {
        Ok(q) => q,
        Err(e) => return usage_error(format!("{} `{}`: {}", flag(e.field), e.value, e.expected)),
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("error: cannot start a runtime");
        return ExitCode::FAILURE;
    };
    let page = rt.block_on(async {
        let store = Store::open(&a.db.db).await?;
        let page = every_page(&store, q.clone()).await;
        store.close().await;
        page
    });
    match page {
        Ok(page) => {
            print!("{}", render(&q, &page, &a.format));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every page of `q`'s answer as one (the totals are each page's).
async fn every_page(
    store: &Store,
    mut q: UsageQuery,
) -> Result<UsagePage, crate::store::StoreError> {
    let mut all = store.usage(&q).await?;
    while let Some(next) = all.next.take() {
        q.cursor = Some(next);
        let page = store.usage(&q).await?;
        all.groups.extend(page.groups);
        all.records.extend(page.records);
        all.next = page.next;
    }
    Ok(all)
}

/// The answer in `format` (`table`, `json` or `csv`), ending in a newline.
pub(crate) fn render(q: &UsageQuery, page: &UsagePage, format: &str) -> String {
    if format == "json" {
        return format!("{:#}\n", answer_json(q, page));
    }
    let (header, mut rows) = rows(q, page);
    let mut total = vec![String::new(); header.len()];
    total[0] = "total".into();
    // The counters are the last columns of either shape.
    let at = header.len() - COUNTERS.len();
    for (j, v) in counters(&page.totals).into_iter().enumerate() {
        total[at + j] = v;
    }
    rows.push(total);
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    if format == "csv" {
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&rows) {
            let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
            out += &cells.join(",");
            out += "\n";
        }
        return out;
    }
    table(&header, &rows)
}

/// allocations, seconds, bytes and packets each way, as text.
fn counters(t: &UsageTotals) -> Vec<String> {
    vec![
        t.allocations.to_string(),
        format!("{:.3}", t.seconds()),
        t.bytes_to_peer.to_string(),
        t.packets_to_peer.to_string(),
        t.bytes_to_client.to_string(),
        t.packets_to_client.to_string(),
    ]
}

const COUNTERS: [&str; 6] = [
    "allocations",
    "seconds",
    "bytes_to_peer",
    "packets_to_peer",
    "bytes_to_client",
    "packets_to_client",
];

/// The header and one row per group or record (the total row apart).
fn rows(q: &UsageQuery, page: &UsagePage) -> (Vec<&'static str>, Vec<Vec<String>>) {
    if q.group_by != GroupBy::None {
        let mut header = vec![q.group_by.name()];
        header.extend(COUNTERS);
        let rows = page
            .groups
            .iter()
            .map(|g| {
                let mut row = vec![g.key.clone()];
                row.extend(counters(&g.totals));
                row
            })
            .collect();
        return (header, rows);
    }
    let header = vec![
        "id",
        "start",
        "end",
        "end_reason",
        "user",
        "realm",
        "node",
        "credential",
        "label",
        "client",
        "transport",
        "relayed",
        "peers",
    ];
    let header = [&header[..], &COUNTERS[..]].concat();
    let rows = page
        .records
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                rfc3339(r.start_ms),
                rfc3339(r.end_ms),
                r.end_reason.clone().unwrap_or_else(|| "live".into()),
                r.user.clone(),
                r.realm.clone(),
                r.node.clone(),
                r.credential.clone(),
                r.label.clone().unwrap_or_default(),
                r.client.clone(),
                r.transport.clone(),
                r.relayed.join(" "),
                r.peers.to_string(),
                "1".into(),
                format!("{:.3}", (r.end_ms - r.start_ms) as f64 / 1000.0),
                r.bytes_to_peer.to_string(),
                r.packets_to_peer.to_string(),
                r.bytes_to_client.to_string(),
                r.packets_to_client.to_string(),
            ]
        })
        .collect();
    (header, rows)
}

/// RFC 4180: quoted when it holds a comma, quote or line break.
fn csv_cell(c: &str) -> String {
    // A spreadsheet runs a cell starting with one of these as a formula;
    // names come from whoever may create users.
    let c = &if c.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{c}")
    } else {
        c.to_string()
    };
    if c.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c.to_string()
    }
}

/// Columns padded to their widest cell; numbers right-aligned. Control
/// characters in names are shown escaped so a row stays one line.
fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let show = |c: &str| -> String {
        if c.chars().any(char::is_control) {
            c.escape_debug().to_string()
        } else {
            c.to_string()
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| show(c)).collect())
        .collect();
    let numeric: Vec<bool> = header
        .iter()
        .map(|h| COUNTERS.contains(&h.as_str()) || h == "peers")
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if numeric[i] {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out += cells.join("  ").trim_end();
        out += "\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::query::UsageGroup;

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_defused() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for (name, cell) in [
            ("+1", "'+1"),
            ("-2", "'-2"),
            ("@a", "'@a"),
            ("alice", "alice"),
        ] {
            assert_eq!(csv_cell(name), cell);
        }
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
    }

    fn page() -> UsagePage {
        let t = |n: u64| UsageTotals {
            allocations: n,
            duration_ms: 1500 * n as i64,
            bytes_to_peer: 10 * n,
            packets_to_peer: n,
            bytes_to_client: 20 * n,
            packets_to_client: 2 * n,
        };
        UsagePage {
            totals: t(3),
            groups: vec![
                UsageGroup {
                    key: "al,ice".into(),
                    totals: t(1),
                },
                UsageGroup {
                    key: "bob".into(),
                    totals: t(2),
                },
            ],
            records: vec![],
            next: None,
        }
    }

    fn query(g: GroupBy) -> UsageQuery {
        let mut q = UsageParams::default().resolve(0).unwrap();
        q.group_by = g;
        q
    }

    #[test]
    fn csv_has_a_header_a_row_per_group_and_a_total_row_last() {
        let out = render(&query(GroupBy::User), &page(), "csv");
        assert_eq!(
            out,
            "user,allocations,seconds,bytes_to_peer,packets_to_peer,bytes_to_client,packets_to_client\n\
             \"al,ice\",1,1.500,10,1,20,2\n\
             bob,2,3.000,20,2,40,4\n\
             total,3,4.500,30,3,60,6\n"
        );
    }

    #[test]
    fn records_csv_ends_with_the_totals_under_their_columns() {
        let out = render(&query(GroupBy::None), &page(), "csv");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("id,start,end,end_reason,user,"));
        assert!(lines[0].ends_with(
            ",peers,allocations,seconds,bytes_to_peer,packets_to_peer,bytes_to_client,packets_to_client"
        ));
        // The record columns are empty; the counters line up under theirs.
        assert_eq!(
            lines[1],
            format!("total{}3,4.500,30,3,60,6", ",".repeat(13))
        );
    }

    #[test]
    fn tables_align_columns_and_json_is_the_apis() {
        let out = render(&query(GroupBy::User), &page(), "table");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[0].starts_with("user    allocations  seconds"),
            "{out}"
        );
        assert!(
            lines[3].starts_with("total             3    4.500"),
            "{out}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&query(GroupBy::User), &page(), "json")).unwrap();
        assert_eq!(json, answer_json(&query(GroupBy::User), &page()));
    }
}
