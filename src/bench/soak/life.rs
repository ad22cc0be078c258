//! One allocation slot: allocate, create a permission (and, on half the
//! slots, bind a channel), relay to the echo peer, refresh, delete with
//! Refresh LIFETIME 0, and start again on a fresh source port, until the
//! run ends.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::schedule::{source_ip, uses_channel, Life, SoakSchedule};
use super::stats::{Phase, Stats};
use crate::bench::async_client::{Client, Retry};
use crate::bench::proto::Error;
use crate::bench::relay::{packet, sent_at, CHANNEL};

/// A packet with no echo after this long counts as lost.
pub(super) const LOSS_AFTER: Duration = Duration::from_secs(1);
/// Packets of one allocation awaiting their echo, at most.
const MAX_OUTSTANDING: usize = 8;
/// Payload bytes per relayed packet.
const PACKET_SIZE: usize = 100;
/// The LIFETIME a refresh asks for: the default, well past any planned life.
const REFRESH_LIFETIME: u32 = 600;
/// Pause after a failed life, so a failing server is not hammered.
const BACKOFF: Duration = Duration::from_secs(1);
/// Request retransmission: loopback loses nothing unless overloaded, and
/// an overloaded server is what a soak should see as errors.
pub(super) const RETRY: Retry = Retry {
    timeout: Duration::from_millis(500),
    tries: 5,
};

/// What every slot shares.
pub(super) struct Ctx {
    pub server: SocketAddr,
    pub user: String,
    pub password: String,
    pub echo: SocketAddr,
    pub plan: SoakSchedule,
    pub seed: u64,
    /// Start of the run: packet timestamps count from here.
    pub t0: Instant,
    /// No life starts or lasts past this.
    pub end: Instant,
    /// Allocations being set up at once.
    pub setup: tokio::sync::Semaphore,
    pub stats: Stats,
}

/// Runs slot `slot`'s lives back to back until the run ends.
pub(super) async fn slot(ctx: Rc<Ctx>, slot: usize) {
    let mut rng = fastrand::Rng::with_seed(ctx.seed ^ (slot as u64).wrapping_mul(0x9E37_79B9));
    let Some(ip) = source_ip(slot, ctx.plan.per_source) else {
        return;
    };
    let local = SocketAddr::new(IpAddr::V4(ip), 0);
    let mut generation = 0u64;
    // Lives start until the end (the last ones are cut short there), so the
    // count stays full up to the last row.
    while Instant::now() < ctx.end {
        generation += 1;
        let life = ctx.plan.life(&mut rng);
        let seed = ((slot as u64) << 32) ^ generation ^ ctx.seed;
        if let Err((phase, e)) = one_life(&ctx, slot, local, seed, life, &mut rng).await {
            ctx.stats.error(phase, slot, ctx.t0.elapsed(), &e);
            tokio::time::sleep(BACKOFF).await;
        }
    }
}

/// Packets sent and not yet echoed, oldest first.
struct Echoes<'a> {
    ctx: &'a Ctx,
    waiting: VecDeque<(u64, Instant)>,
}

impl Echoes<'_> {
    /// Anything the client socket receives that is not an answer.
    fn on_packet(&mut self, bytes: &[u8]) {
        let Some(sent) = sent_at(bytes) else {
            return;
        };
        // Late echoes (already counted lost) match nothing.
        if let Some(i) = self.waiting.iter().position(|(s, _)| *s == sent) {
            self.waiting.remove(i);
            let now_ns = self.ctx.t0.elapsed().as_nanos() as u64;
            self.ctx
                .stats
                .echoed((now_ns.saturating_sub(sent) / 1000).min(u32::MAX as u64) as u32);
        }
    }

    /// Counts the packets whose echo is overdue.
    fn expire(&mut self, now: Instant) {
        while self.waiting.front().is_some_and(|(_, due)| *due <= now) {
            self.waiting.pop_front();
            self.ctx.stats.lost();
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.waiting.front().map(|(_, due)| *due)
    }
}

async fn one_life(
    ctx: &Ctx,
    slot: usize,
    local: SocketAddr,
    seed: u64,
    life: Life,
    rng: &mut fastrand::Rng,
) -> Result<(), (Phase, Error)> {
    let permit = ctx.setup.acquire().await.ok();
    // Slots still queued for set-up when the run ends stay empty.
    if Instant::now() >= ctx.end {
        return Ok(());
    }
    let mut client = Client::connect(local, ctx.server, &ctx.user, &ctx.password, RETRY, seed)
        .await
        .map_err(|e| (Phase::Socket, e.into()))?;
    let mut echoes = Echoes {
        ctx,
        waiting: VecDeque::new(),
    };
    client
        .allocate(&mut |b| echoes.on_packet(b))
        .await
        .map_err(|e| (Phase::Allocate, e))?;
    ctx.stats.allocated();
    let used = relay(ctx, slot, &mut client, &mut echoes, life, rng, permit).await;
    let deleted = client
        .delete(&mut |b| echoes.on_packet(b))
        .await
        .map_err(|e| (Phase::Delete, e));
    ctx.stats.released(deleted.is_ok());
    used.and(deleted)
}

/// From permission to the moment of the delete.
async fn relay(
    ctx: &Ctx,
    slot: usize,
    client: &mut Client,
    echoes: &mut Echoes<'_>,
    life: Life,
    rng: &mut fastrand::Rng,
    permit: Option<tokio::sync::SemaphorePermit<'_>>,
) -> Result<(), (Phase, Error)> {
    client
        .create_permission(ctx.echo, &mut |b| echoes.on_packet(b))
        .await
        .map_err(|e| (Phase::Permission, e))?;
    let channel = uses_channel(slot);
    if channel {
        client
            .channel_bind(CHANNEL, ctx.echo, &mut |b| echoes.on_packet(b))
            .await
            .map_err(|e| (Phase::Channel, e))?;
    }
    drop(permit);
    let born = Instant::now();
    let die = (born + life.lifetime).min(ctx.end);
    let refresh_at = born + life.refresh_at;
    let mut refreshed = false;
    let mut next_send = born + life.first_packet;
    let (mut out, mut buf) = ([0u8; PACKET_SIZE + 64], [0u8; 2048]);
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        echoes.expire(now);
        if now >= die {
            return Ok(());
        }
        if !refreshed && now >= refresh_at {
            client
                .refresh(REFRESH_LIFETIME, &mut |b| echoes.on_packet(b))
                .await
                .map_err(|e| (Phase::Refresh, e))?;
            refreshed = true;
            continue;
        }
        if now >= next_send {
            // No packet whose echo could not be awaited before the delete.
            if now + LOSS_AFTER < die && echoes.waiting.len() < MAX_OUTSTANDING {
                seq += 1;
                let (n, sent) = packet(&mut out, ctx.echo, !channel, PACKET_SIZE, seq, ctx.t0);
                client
                    .sock
                    .send(&out[..n])
                    .await
                    .map_err(|e| (Phase::Send, e.into()))?;
                ctx.stats.sent();
                echoes.waiting.push_back((sent, now + LOSS_AFTER));
            }
            next_send = now + ctx.plan.next_gap(rng);
            continue;
        }
        let mut wake = die.min(next_send);
        if !refreshed {
            wake = wake.min(refresh_at);
        }
        if let Some(due) = echoes.next_due() {
            wake = wake.min(due);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            got = client.sock.recv(&mut buf) => {
                if let Ok(n) = got {
                    echoes.on_packet(&buf[..n]);
                }
            }
        }
    }
}
