//! `turnpike bench soak`: thousands of allocations churning through their
//! lives against one server for minutes or hours, with the server's RSS,
//! open descriptors and CPU, the relay round trip and the error count
//! reported every interval, then a summary and a verdict.
//!
//! The round trip measured is client → server → echo peer (echo.rs, on
//! 127.0.0.1) → server → client, timed inside the packet.

mod life;
mod report;
mod schedule;
mod stats;

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::echo::EchoPeer;
use super::proc;
use super::Common;
use life::Ctx;
use report::{Outcome, Probe, Row};
use schedule::SoakSchedule;
use stats::Window;

#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Allocations held at once; each one that ends is replaced
    #[arg(long, default_value_t = 10_000)]
    pub allocations: usize,
    /// Allocations per client source address (127.0.0.2, .3, ...)
    #[arg(long, default_value_t = 100)]
    pub per_source: usize,
    /// Shortest allocation life, seconds
    #[arg(long, default_value_t = 20.0)]
    pub min_life: f64,
    /// Longest allocation life, seconds
    #[arg(long, default_value_t = 120.0)]
    pub max_life: f64,
    /// Mean seconds between two packets of one allocation
    #[arg(long, default_value_t = 2.0)]
    pub packet_interval: f64,
    /// Seconds between two report rows
    #[arg(long, default_value_t = 60.0)]
    pub interval: f64,
    /// Seconds of warm-up (the ramp to full count): growth is judged after
    #[arg(long, default_value_t = 60.0)]
    pub warmup: f64,
    /// Allocations being set up at once
    #[arg(long, default_value_t = 200)]
    pub setup_concurrency: usize,
    /// Errors tolerated per thousand allocations made (at least 10 in all)
    #[arg(long, default_value_t = 1.0)]
    pub max_errors_per_mille: f64,
    /// Seed of the schedule (lives, refreshes, packet gaps)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// The teardown (every slot's last delete) may take at most this long.
const TEARDOWN: Duration = Duration::from_secs(30);
/// How often the server is checked for being alive.
const WATCH: Duration = Duration::from_secs(1);

pub(super) fn run(c: &Common, a: &SoakArgs) -> anyhow::Result<()> {
    let secs = |s: f64, what: &str| {
        anyhow::ensure!(s.is_finite() && s > 0.0, "--{what} must be positive");
        Ok(Duration::from_secs_f64(s))
    };
    let plan = SoakSchedule {
        slots: a.allocations,
        per_source: a.per_source,
        min_life: secs(a.min_life, "min-life")?,
        max_life: secs(a.max_life, "max-life")?,
        packet_gap: secs(a.packet_interval, "packet-interval")?,
    };
    plan.check().map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        c.server.is_ipv4(),
        "soak clients are on 127.0.0.x: give an IPv4 --server"
    );
    let duration = secs(c.duration, "duration")?;
    let interval = secs(a.interval, "interval")?;
    anyhow::ensure!(
        a.setup_concurrency > 0,
        "--setup-concurrency must be at least 1"
    );
    // One socket per allocation here, plus the runtime's own.
    let limit = raise_fd_limit();
    let need = a.allocations as u64 + 64;
    anyhow::ensure!(
        limit >= need,
        "{} allocations need {need} open files, the limit is {limit} (raise ulimit -n)",
        a.allocations
    );

    let echo = EchoPeer::start()?;
    let pid = c.server_pid;
    let probe = || Probe {
        rss: pid.and_then(proc::rss_bytes),
        fds: pid.and_then(proc::open_fds),
        cpu_s: pid.and_then(proc::cpu_seconds),
    };
    let idle = probe();
    println!(
        "soak: {} allocations from {} source addresses (127.0.0.2 up, {} each), lives {}-{} s, \
         about {:.0} allocations/min; one {}-byte packet per {} s each (about {:.0}/s), \
         half ChannelData, half Send indications",
        plan.slots,
        plan.sources(),
        plan.per_source,
        a.min_life,
        a.max_life,
        plan.churn_per_minute(),
        100,
        a.packet_interval,
        plan.packets_per_second(),
    );
    println!(
        "soak: rtt = round trip client -> server -> echo peer -> server -> client; \
         {} s, a row every {} s, warm-up {} s",
        c.duration, a.interval, a.warmup
    );
    println!("{}", report::HEADER);

    let t0 = Instant::now();
    // Rows end exactly at their times; the slots stop just after the last.
    let end = t0 + duration + Duration::from_millis(500);
    let ctx = Rc::new(Ctx {
        server: c.server,
        user: c.user.clone(),
        password: c.password.clone(),
        echo: echo.addr,
        plan,
        seed: a.seed,
        t0,
        end,
        setup: tokio::sync::Semaphore::new(a.setup_concurrency),
        stats: Default::default(),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let (rows, died, totals) = local.block_on(&rt, async {
        let slots: Vec<_> = (0..ctx.plan.slots)
            .map(|i| tokio::task::spawn_local(life::slot(ctx.clone(), i)))
            .collect();
        let mut rows = Vec::new();
        let mut totals = Window::default();
        let mut before = idle;
        let mut next_row = t0 + interval.min(duration);
        let mut died = None;
        while died.is_none() {
            let now = Instant::now();
            if now >= next_row {
                let server = probe();
                let at = next_row - t0;
                let since = rows.last().map(|r: &Row| r.at).unwrap_or_default();
                let w = ctx.stats.take_window();
                totals.add(&w);
                let row = Row::new(at, at - since, ctx.stats.live.get(), w, &before, server);
                println!("{}", report::line(&row));
                before = server;
                rows.push(row);
                if at >= duration {
                    break;
                }
                next_row = (t0 + (at + interval).min(duration)).max(now);
                continue;
            }
            if pid.is_some_and(|p| !proc::alive(p)) {
                died = Some(t0.elapsed());
                println!("soak: the server (pid {}) is gone", pid.unwrap_or(0));
                break;
            }
            tokio::time::sleep_until(next_row.min(now + WATCH).into()).await;
        }
        if died.is_none() {
            // Every slot deletes what it holds; bounded, whatever the server does.
            let _ = tokio::time::timeout(TEARDOWN, async {
                for s in slots {
                    let _ = s.await;
                }
            })
            .await;
        }
        // What happened during the teardown counts too.
        totals.add(&ctx.stats.take_window());
        (rows, died, totals)
    });
    // Let the server close what the deletes released before looking.
    let teardown = died.is_none().then(|| {
        std::thread::sleep(Duration::from_secs(1));
        probe()
    });
    drop(local);
    drop(echo);

    let outcome = Outcome {
        warmup: secs(a.warmup, "warmup")?,
        idle,
        teardown,
        undeleted: ctx.stats.live.get(),
        max_errors: ((totals.allocated as f64 * a.max_errors_per_mille / 1000.0) as u64).max(10),
        died,
        totals,
        rows,
    };
    if let Some(t) = teardown {
        println!(
            "after teardown: {} allocations left undeleted; server rss {} MiB, {} fds",
            outcome.undeleted,
            t.rss
                .map(|r| format!("{:.1}", r as f64 / (1 << 20) as f64))
                .unwrap_or("-".into()),
            t.fds.map(|f| f.to_string()).unwrap_or("-".into()),
        );
    }
    for l in report::summary(&outcome, t0.elapsed().min(duration).as_secs_f64() / 60.0) {
        println!("{l}");
    }
    let by_phase = ctx.stats.errors_by_phase();
    if !by_phase.is_empty() {
        let list: Vec<String> = by_phase.iter().map(|(p, n)| format!("{p} {n}")).collect();
        println!("errors by phase: {}", list.join(", "));
    }
    let v = report::verdict(&outcome);
    println!("{}", v.line);
    anyhow::ensure!(v.pass, "soak failed");
    Ok(())
}

/// Raises this process's open-file limit to its hard limit; returns it.
fn raise_fd_limit() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 0;
        }
        if l.rlim_cur < l.rlim_max {
            let want = libc::rlimit {
                rlim_cur: l.rlim_max,
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                l = want;
            }
        }
    }
    l.rlim_cur
}
