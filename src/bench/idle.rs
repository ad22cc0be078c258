//! Idle allocations: the server's resident memory per allocation.

use std::time::Duration;

use super::proc::rss_bytes;
use super::proto::Allocated;
use super::Common;

pub(super) fn run(c: &Common, allocations: usize) -> anyhow::Result<String> {
    let before = c.server_pid.and_then(rss_bytes);
    let mut held = Vec::with_capacity(allocations);
    for i in 0..allocations {
        held.push(Allocated::new(
            c.server,
            &c.user,
            &c.password,
            0x1d1e_0000 + i as u64,
        )?);
    }
    // Let the server settle before reading its memory.
    std::thread::sleep(Duration::from_millis(500));
    let after = c.server_pid.and_then(rss_bytes);
    let per = before
        .zip(after)
        .map(|(b, a)| format!("{}", a.saturating_sub(b) / allocations.max(1) as u64))
        .unwrap_or("null".into());
    // Free them so the next run starts clean.
    for a in &mut held {
        let _ = a.refresh(0);
    }
    Ok(format!(
        "{{\"mode\":\"idle\",\"allocations\":{allocations},\"rss_before\":{},\"rss_after\":{},\"rss_per_allocation\":{per}}}",
        before.map(|b| b.to_string()).unwrap_or("null".into()),
        after.map(|b| b.to_string()).unwrap_or("null".into()),
    ))
}
