//! The soak's output: one table row per interval, then a summary and a
//! verdict. Pure, so the judging is tested without a server.

use std::time::Duration;

use super::stats::Window;
use crate::bench::percentile;

/// The server as /proc shows it at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Probe {
    pub rss: Option<u64>,
    pub fds: Option<u64>,
    pub cpu_s: Option<f64>,
}

/// One interval.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Row {
    /// Time since the start, at the end of the interval.
    pub at: Duration,
    pub interval: Duration,
    pub live: u64,
    pub allocated: u64,
    pub deleted: u64,
    pub errors: u64,
    pub sent: u64,
    pub lost: u64,
    pub p50_us: u32,
    pub p99_us: u32,
    /// Server CPU over the interval, percent of one core.
    pub cpu_pct: Option<f64>,
    pub server: Probe,
}

impl Row {
    /// Builds a row from an interval's counts (sorting its samples).
    pub(super) fn new(
        at: Duration,
        interval: Duration,
        live: u64,
        mut w: Window,
        before: &Probe,
        server: Probe,
    ) -> Row {
        w.rtts_us.sort_unstable();
        let cpu_pct = before
            .cpu_s
            .zip(server.cpu_s)
            .map(|(b, a)| 100.0 * (a - b) / interval.as_secs_f64().max(1e-9));
        Row {
            at,
            interval,
            live,
            allocated: w.allocated,
            deleted: w.deleted,
            errors: w.errors,
            sent: w.sent,
            lost: w.lost,
            p50_us: percentile(&w.rtts_us, 0.5),
            p99_us: percentile(&w.rtts_us, 0.99),
            cpu_pct,
            server,
        }
    }

    pub(super) fn per_minute(&self) -> f64 {
        self.allocated as f64 * 60.0 / self.interval.as_secs_f64().max(1e-9)
    }
}

pub(super) const HEADER: &str = "  time   live  alloc/min  deleted  errors     sent  lost  rtt p50 ms  rtt p99 ms  cpu %  rss MiB     fds";

pub(super) fn line(r: &Row) -> String {
    format!(
        "{:>6}  {:>5}  {:>9.0}  {:>7}  {:>6}  {:>7}  {:>4}  {:>10.2}  {:>10.2}  {:>5}  {:>7}  {:>6}",
        clock(r.at),
        r.live,
        r.per_minute(),
        r.deleted,
        r.errors,
        r.sent,
        r.lost,
        r.p50_us as f64 / 1000.0,
        r.p99_us as f64 / 1000.0,
        r.cpu_pct.map(|c| format!("{c:.0}")).unwrap_or("-".into()),
        mib(r.server.rss),
        r.server.fds.map(|f| f.to_string()).unwrap_or("-".into()),
    )
}

fn clock(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

fn mib(b: Option<u64>) -> String {
    b.map(|b| format!("{:.1}", b as f64 / (1 << 20) as f64))
        .unwrap_or("-".into())
}

/// Growth judged flat up to these bounds.
pub(super) const RSS_FLAT: f64 = 0.10;
pub(super) const FDS_FLAT: f64 = 0.01;
/// Descriptors the server may open for good during a run (a database
/// connection, a timer) without it being a leak.
pub(super) const FDS_SLACK: u64 = 8;

/// Everything the verdict weighs.
#[derive(Debug, Clone)]
pub(super) struct Outcome {
    pub rows: Vec<Row>,
    /// Rows ending within this time of the start are warm-up: growth is
    /// measured from the first row after it.
    pub warmup: Duration,
    /// The server before the first allocation and after the last delete.
    pub idle: Probe,
    pub teardown: Option<Probe>,
    pub totals: Window,
    /// Allocations still live on this side after the teardown.
    pub undeleted: u64,
    pub max_errors: u64,
    /// When the server was found gone.
    pub died: Option<Duration>,
}

/// How an `Outcome` is judged: the exit status follows `pass`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Verdict {
    pub pass: bool,
    pub warnings: Vec<String>,
    pub line: String,
}

fn growth(first: u64, last: u64) -> f64 {
    (last as f64 - first as f64) / (first as f64).max(1.0)
}

pub(super) fn verdict(o: &Outcome) -> Verdict {
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    let mut failures = Vec::new();
    if let Some(at) = o.died {
        failures.push(format!("server died at {}", clock(at)));
    }
    if o.totals.errors > o.max_errors {
        failures.push(format!(
            "{} errors, above the bound of {}",
            o.totals.errors, o.max_errors
        ));
    } else {
        notes.push(format!(
            "{} errors (bound {})",
            o.totals.errors, o.max_errors
        ));
    }
    let judged: Vec<&Row> = o.rows.iter().filter(|r| r.at > o.warmup).collect();
    match (judged.first(), judged.last()) {
        (Some(first), Some(last)) if judged.len() >= 2 => {
            let span = format!("from {} to {}", clock(first.at), clock(last.at));
            if let (Some(a), Some(b)) = (first.server.rss, last.server.rss) {
                let g = growth(a, b);
                let word = if g <= RSS_FLAT { "flat" } else { "GROWING" };
                let s = format!("RSS {:+.1}% {span} ({word})", 100.0 * g);
                if g > RSS_FLAT {
                    warnings.push(s.clone());
                }
                notes.push(s);
            }
            if let (Some(a), Some(b)) = (first.server.fds, last.server.fds) {
                let g = growth(a, b);
                let flat = b <= a + FDS_SLACK || g <= FDS_FLAT;
                let word = if flat { "flat" } else { "GROWING" };
                let s = format!("fds {:+} {span} ({word})", b as i64 - a as i64);
                if !flat {
                    warnings.push(s.clone());
                }
                notes.push(s);
            }
        }
        _ => notes.push(format!(
            "growth not judged (needs two rows after the {} s warm-up)",
            o.warmup.as_secs()
        )),
    }
    if o.died.is_none() {
        if let (Some(idle), Some(after)) = (o.idle.fds, o.teardown.and_then(|t| t.fds)) {
            let extra = after as i64 - idle as i64;
            let allowed = FDS_SLACK + o.undeleted;
            let s = format!("fds after teardown {extra:+} from idle");
            if extra > allowed as i64 {
                warnings.push(format!("{s} (LEAK? more than {allowed})"));
                notes.push(format!("{s} (LEAK?)"));
            } else {
                notes.push(format!("{s} (released)"));
            }
        }
    }
    let pass = failures.is_empty();
    let word = match (pass, warnings.is_empty()) {
        (false, _) => "FAIL",
        (true, false) => "WARN",
        (true, true) => "PASS",
    };
    let mut all = failures;
    all.extend(notes);
    Verdict {
        pass,
        warnings,
        line: format!("verdict: {word}: {}", all.join("; ")),
    }
}

/// The summary lines printed after the table.
pub(super) fn summary(o: &Outcome, minutes: f64) -> Vec<String> {
    let t = &o.totals;
    let mut out = vec![format!(
        "allocations: {} made ({:.0}/min), {} deleted; packets: {} sent, {} echoed, {} lost; errors: {}",
        t.allocated,
        t.allocated as f64 / minutes.max(1e-9),
        t.deleted,
        t.sent,
        t.echoed,
        t.lost,
        t.errors
    )];
    let rss: Vec<u64> = o.rows.iter().filter_map(|r| r.server.rss).collect();
    if let (Some(first), Some(last), Some(max)) = (rss.first(), rss.last(), rss.iter().max()) {
        out.push(format!(
            "server RSS MiB: first {}, last {}, max {} (idle {}, after teardown {})",
            mib(Some(*first)),
            mib(Some(*last)),
            mib(Some(*max)),
            mib(o.idle.rss),
            mib(o.teardown.and_then(|t| t.rss)),
        ));
    }
    let fds: Vec<u64> = o.rows.iter().filter_map(|r| r.server.fds).collect();
    if let (Some(first), Some(last), Some(max)) = (fds.first(), fds.last(), fds.iter().max()) {
        let show = |f: Option<u64>| f.map(|f| f.to_string()).unwrap_or("-".into());
        out.push(format!(
            "server fds: first {first}, last {last}, max {max} (idle {}, after teardown {})",
            show(o.idle.fds),
            show(o.teardown.and_then(|t| t.fds)),
        ));
    }
    let p99: Vec<u32> = o.rows.iter().map(|r| r.p99_us).collect();
    if let (Some(first), Some(last), Some(max)) = (p99.first(), p99.last(), p99.iter().max()) {
        out.push(format!(
            "relay rtt p99 ms: first {:.2}, last {:.2}, max {:.2}",
            *first as f64 / 1000.0,
            *last as f64 / 1000.0,
            *max as f64 / 1000.0
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn row(minute: u32, rss_mib: u64, fds: u64) -> Row {
        Row {
            at: MIN * minute,
            interval: MIN,
            live: 10_000,
            allocated: 8_000,
            deleted: 8_000,
            errors: 0,
            sent: 300_000,
            lost: 0,
            p50_us: 300,
            p99_us: 900,
            cpu_pct: Some(40.0),
            server: Probe {
                rss: Some(rss_mib << 20),
                fds: Some(fds),
                cpu_s: None,
            },
        }
    }

    fn outcome(rows: Vec<Row>) -> Outcome {
        Outcome {
            rows,
            warmup: MIN,
            idle: Probe {
                rss: Some(5 << 20),
                fds: Some(12),
                cpu_s: None,
            },
            teardown: Some(Probe {
                rss: Some(40 << 20),
                fds: Some(12),
                cpu_s: None,
            }),
            totals: Window::default(),
            undeleted: 0,
            max_errors: 10,
            died: None,
        }
    }

    #[test]
    fn a_flat_run_passes() {
        let o = outcome((1..=5).map(|m| row(m, 40 + m as u64 % 2, 10_010)).collect());
        let v = verdict(&o);
        assert!(v.pass && v.warnings.is_empty(), "{v:?}");
        assert!(
            v.line.starts_with("verdict: PASS: 0 errors (bound 10)"),
            "{}",
            v.line
        );
        assert!(
            v.line.contains("RSS +2.5% from 2:00 to 5:00 (flat)"),
            "{}",
            v.line
        );
        assert!(
            v.line.contains("fds +0 from 2:00 to 5:00 (flat)"),
            "{}",
            v.line
        );
        assert!(
            v.line
                .contains("fds after teardown +0 from idle (released)"),
            "{}",
            v.line
        );
    }

    #[test]
    fn growth_is_measured_from_the_first_row_after_warm_up() {
        // Minute 1 (the ramp) is far below; growth counts from minute 2.
        let mut rows = vec![row(1, 10, 5_000)];
        rows.extend((2..=5).map(|m| row(m, 40, 10_010)));
        let v = verdict(&outcome(rows));
        assert!(v.line.contains("RSS +0.0% from 2:00"), "{}", v.line);
        assert_eq!(v.line.matches("WARN").count(), 0);
    }

    #[test]
    fn growing_rss_or_fds_warn_without_failing() {
        let rows: Vec<Row> = (1..=5)
            .map(|m| row(m, 40 + 3 * m as u64, 10_010 + 60 * m as u64))
            .collect();
        let v = verdict(&outcome(rows));
        assert!(v.pass, "{v:?}");
        assert!(v.line.starts_with("verdict: WARN"), "{}", v.line);
        assert!(
            v.line.contains("RSS +19.6% from 2:00 to 5:00 (GROWING)"),
            "{}",
            v.line
        );
        assert!(
            v.line.contains("fds +180 from 2:00 to 5:00 (GROWING)"),
            "{}",
            v.line
        );
        assert_eq!(v.warnings.len(), 2);
    }

    #[test]
    fn a_few_fds_more_is_not_growth() {
        let rows = vec![row(1, 40, 10), row(2, 40, 10), row(3, 40, 10 + FDS_SLACK)];
        let v = verdict(&outcome(rows));
        assert!(v.warnings.is_empty(), "{v:?}");
    }

    #[test]
    fn fds_left_after_teardown_are_a_leak_unless_allocations_were_left() {
        let rows: Vec<Row> = (1..=3).map(|m| row(m, 40, 10_010)).collect();
        let mut o = outcome(rows);
        o.teardown.as_mut().unwrap().fds = Some(12 + 100);
        let v = verdict(&o);
        assert!(v.pass && v.line.starts_with("verdict: WARN"), "{}", v.line);
        assert!(
            v.line.contains("fds after teardown +100 from idle (LEAK?)"),
            "{}",
            v.line
        );
        // 100 deletes that failed keep their relay sockets until they expire.
        o.undeleted = 100;
        let v = verdict(&o);
        assert!(v.line.starts_with("verdict: PASS"), "{}", v.line);
    }

    #[test]
    fn errors_above_the_bound_fail() {
        let mut o = outcome((1..=3).map(|m| row(m, 40, 10_010)).collect());
        o.totals.errors = 10;
        assert!(verdict(&o).pass);
        o.totals.errors = 11;
        let v = verdict(&o);
        assert!(!v.pass);
        assert!(
            v.line
                .starts_with("verdict: FAIL: 11 errors, above the bound of 10"),
            "{}",
            v.line
        );
    }

    #[test]
    fn a_dead_server_fails() {
        let mut o = outcome(vec![row(1, 40, 10_010)]);
        o.died = Some(Duration::from_secs(75));
        o.teardown = None;
        let v = verdict(&o);
        assert!(!v.pass);
        assert!(
            v.line.starts_with("verdict: FAIL: server died at 1:15"),
            "{}",
            v.line
        );
    }

    #[test]
    fn a_one_minute_run_does_not_judge_growth() {
        let v = verdict(&outcome(vec![row(1, 40, 10_010)]));
        assert!(v.pass, "{v:?}");
        assert!(
            v.line
                .contains("growth not judged (needs two rows after the 60 s warm-up)"),
            "{}",
            v.line
        );
    }

    #[test]
    fn rows_show_rates_per_minute_and_milliseconds() {
        let mut r = row(3, 40, 10_010);
        r.interval = Duration::from_secs(30);
        r.allocated = 4_000;
        r.p99_us = 1_250;
        let l = line(&r);
        assert!(l.starts_with("  3:00  10000       8000"), "{l}");
        assert!(l.contains("      1.25  "), "{l}");
        assert!(l.ends_with("   40.0   10010"), "{l}");
        assert_eq!(l.len(), HEADER.len(), "{l}\n{HEADER}");
    }

    #[test]
    fn a_row_takes_the_percentiles_and_cpu_of_its_interval() {
        let w = Window {
            rtts_us: (1..=1000).rev().collect(),
            ..Window::default()
        };
        let before = Probe {
            cpu_s: Some(10.0),
            ..Probe::default()
        };
        let after = Probe {
            cpu_s: Some(40.0),
            ..Probe::default()
        };
        let r = Row::new(MIN, MIN, 5, w, &before, after);
        assert_eq!((r.p50_us, r.p99_us), (501, 990));
        assert_eq!(r.cpu_pct, Some(50.0));
    }

    #[test]
    fn the_summary_gives_first_last_and_max() {
        let mut o = outcome(vec![
            row(1, 30, 9_000),
            row(2, 45, 10_020),
            row(3, 44, 10_010),
        ]);
        o.totals.allocated = 24_000;
        let s = summary(&o, 3.0);
        assert!(
            s[0].starts_with("allocations: 24000 made (8000/min)"),
            "{}",
            s[0]
        );
        assert_eq!(
            s[1],
            "server RSS MiB: first 30.0, last 44.0, max 45.0 (idle 5.0, after teardown 40.0)"
        );
        assert_eq!(
            s[2],
            "server fds: first 9000, last 10010, max 10020 (idle 12, after teardown 12)"
        );
        assert_eq!(s[3], "relay rtt p99 ms: first 0.90, last 0.90, max 0.90");
    }
}
