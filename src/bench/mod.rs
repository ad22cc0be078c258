//! `turnpike bench`: a load generator for any TURN server (turnpike or
//! coturn), reporting throughput, loss, RTT and, given the server's pid,
//! the server's CPU time and memory over exactly the measured window.
//!
//! * `relay`: N clients with allocations send ChannelData (or Send
//!   indications) in a closed loop through the server to an echo peer run
//!   here; every echoed packet counts two relayed packets.
//! * `allocate`: 401 challenge, authenticated Allocate, Refresh 0, each on a
//!   fresh source port.
//! * `binding`: Binding requests in a closed loop.
//! * `idle`: holds N allocations and reports the server's RSS per one.
//! * `soak`: N allocations churning through their lives for minutes or
//!   hours, reporting the server's RSS, descriptors and the relay round
//!   trip every interval (soak/).

#![warn(unreachable_pub, missing_debug_implementations)]

mod async_client;
mod echo;
mod idle;
mod proc;
pub(crate) mod proto;
mod rate;
mod relay;
mod soak;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Options shared by every mode.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// The TURN server, IP:PORT
    #[arg(long)]
    pub server: SocketAddr,
    #[arg(long, default_value = "bench")]
    pub user: String,
    #[arg(long, default_value = "bench")]
    pub password: String,
    /// Seconds to measure
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// The server's pid, to read its CPU time and RSS from /proc
    #[arg(long)]
    pub server_pid: Option<u32>,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Closed-loop relaying through allocations to a local echo peer
    Relay {
        #[command(flatten)]
        common: Common,
        /// Clients, each with one allocation
        #[arg(long, default_value_t = 50)]
        clients: usize,
        /// Packets in flight per client
        #[arg(long, default_value_t = 8)]
        window: usize,
        /// Payload bytes per packet
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Use Send/Data indications instead of channels
        #[arg(long)]
        send_indications: bool,
    },
    /// Allocation set-up rate: 401, authenticated Allocate, Refresh 0
    Allocate {
        #[command(flatten)]
        common: Common,
        /// Allocations being set up at once
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Binding request rate
    Binding {
        #[command(flatten)]
        common: Common,
        /// Sockets sending at once
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Requests in flight per socket
        #[arg(long, default_value_t = 8)]
        window: usize,
    },
    /// Holds N allocations and reports the server's RSS per allocation
    Idle {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 2000)]
        allocations: usize,
    },
    /// Allocations churning (allocate, permission, relay, refresh, delete)
    /// for --duration seconds; a table row per interval, then a verdict
    Soak {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        soak: soak::SoakArgs,
    },
}

/// Runs a bench; prints one JSON object on stdout (soak: a table).
pub(crate) fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let report = match cmd {
        BenchCommand::Soak { common, soak } => return soak::run(&common, &soak),
        BenchCommand::Relay {
            common,
            clients,
            window,
            size,
            send_indications,
        } => relay::run(&common, clients, window, size, send_indications)?,
        BenchCommand::Allocate {
            common,
            concurrency,
        } => rate::allocate(&common, concurrency)?,
        BenchCommand::Binding {
            common,
            concurrency,
            window,
        } => rate::binding(&common, concurrency, window)?,
        BenchCommand::Idle {
            common,
            allocations,
        } => idle::run(&common, allocations)?,
    };
    println!("{report}");
    Ok(())
}

/// Runs the load tasks `spawn` makes (given the deadline) on one
/// single-threaded runtime until they end, measuring the server's CPU time
/// over exactly that window. Returns the measured time and CPU seconds.
pub(crate) fn measured<F>(
    c: &Common,
    spawn: impl FnOnce(Instant, Instant) -> std::io::Result<Vec<F>>,
) -> anyhow::Result<(Duration, Option<f64>)>
where
    F: std::future::Future<Output = ()> + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let (elapsed, cpu, ()) = measured_blocking(c, |t0, deadline| {
        local.block_on(&rt, async {
            let tasks: Vec<_> = spawn(t0, deadline)?
                .into_iter()
                .map(tokio::task::spawn_local)
                .collect();
            for t in tasks {
                let _ = t.await;
            }
            Ok(())
        })
    })?;
    Ok((elapsed, cpu))
}

/// Runs `load` (given the start and the deadline), measuring the server's
/// CPU time over exactly that call.
pub(crate) fn measured_blocking<T>(
    c: &Common,
    load: impl FnOnce(Instant, Instant) -> std::io::Result<T>,
) -> anyhow::Result<(Duration, Option<f64>, T)> {
    let duration = secs(c.duration);
    let before = c.server_pid.and_then(proc::cpu_seconds);
    let t0 = Instant::now();
    let out = load(t0, t0 + duration)?;
    let elapsed = t0.elapsed().min(duration);
    let after = c.server_pid.and_then(proc::cpu_seconds);
    Ok((elapsed, before.zip(after).map(|(b, a)| a - b), out))
}

/// CPU seconds as JSON.
pub(crate) fn cpu_json(cpu: Option<f64>) -> String {
    cpu.map(|c| format!("{c:.2}"))
        .unwrap_or_else(|| "null".into())
}

pub(crate) fn secs(d: f64) -> Duration {
    Duration::from_secs_f64(d.max(0.1))
}

/// Percentile of sorted samples.
pub(crate) fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

pub(crate) fn per_cpu(count: f64, cpu: Option<f64>) -> String {
    match cpu {
        Some(c) if c > 0.0 => format!("{:.0}", count / c),
        _ => "null".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_of_sorted_samples() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&v, 0.5), 51);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        // Nearest rank: one slow sample in 100 is above the p99; two in 101 are not.
        let mut w = vec![1_000; 99];
        w.push(50_000);
        assert_eq!(percentile(&w, 0.99), 1_000);
        w.push(60_000);
        assert_eq!(percentile(&w, 0.99), 50_000);
    }

    #[test]
    fn percentiles_of_nothing_or_one_sample() {
        assert_eq!(percentile(&[], 0.99), 0);
        assert_eq!(percentile(&[7], 0.5), 7);
        assert_eq!(percentile(&[7], 0.99), 7);
    }
}
