//! What each allocation slot does and when. Pure and seeded, so the plan is
//! tested without a network and a run can be repeated.

use std::net::Ipv4Addr;
use std::time::Duration;

/// The shape of the load, from the command line.
#[derive(Debug, Clone)]
pub(super) struct SoakSchedule {
    /// Allocations held at once, one per slot.
    pub slots: usize,
    /// Allocations per client source address (127.0.0.x), so a per-source
    /// allocation cap is not what the soak measures.
    pub per_source: usize,
    pub min_life: Duration,
    pub max_life: Duration,
    /// Mean time between two packets of one allocation.
    pub packet_gap: Duration,
}

/// One allocation's life, as offsets from the moment it was granted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Life {
    /// When it is deleted (Refresh LIFETIME 0).
    pub lifetime: Duration,
    /// When it is refreshed: always once, inside its life.
    pub refresh_at: Duration,
    /// When its first packet goes out.
    pub first_packet: Duration,
}

/// The shortest life the plan accepts: room for a refresh and a packet's
/// round trip before the delete.
pub(super) const MIN_LIFE: Duration = Duration::from_secs(4);

/// The first client source address; 127.0.0.1 is the server's and the
/// echo peer's.
const FIRST_SOURCE: u32 = u32::from_be_bytes([127, 0, 0, 2]);
/// The last usable address of 127.0.0.0/8.
const LAST_SOURCE: u32 = u32::from_be_bytes([127, 255, 255, 254]);

impl SoakSchedule {
    /// Refuses a plan that cannot run, with a readable reason.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.slots == 0 {
            return Err("--allocations must be at least 1".into());
        }
        if self.per_source == 0 {
            return Err("--per-source must be at least 1".into());
        }
        if self.min_life < MIN_LIFE {
            return Err(format!(
                "--min-life must be at least {} s",
                MIN_LIFE.as_secs()
            ));
        }
        if self.max_life < self.min_life {
            return Err("--max-life is below --min-life".into());
        }
        if self.packet_gap < Duration::from_millis(10) {
            return Err("--packet-interval must be at least 0.01 s".into());
        }
        if source_ip(self.slots - 1, self.per_source).is_none() {
            return Err("too many allocations for 127.0.0.0/8 at this --per-source".into());
        }
        Ok(())
    }

    /// Draws the next life of a slot: a lifetime uniform in
    /// [min_life, max_life], a refresh between a quarter and three quarters
    /// of it, and a first packet within one mean gap.
    pub(super) fn life(&self, rng: &mut fastrand::Rng) -> Life {
        let span = (self.max_life - self.min_life).as_millis() as u64;
        let lifetime = self.min_life + Duration::from_millis(rng.u64(0..=span));
        let refresh_at = lifetime.mul_f64(0.25 + 0.5 * rng.f64());
        let first_packet = self.packet_gap.mul_f64(rng.f64());
        Life {
            lifetime,
            refresh_at,
            first_packet,
        }
    }

    /// The gap before an allocation's next packet: uniform in [gap/2,
    /// 3·gap/2], so clients do not fall into step.
    pub(super) fn next_gap(&self, rng: &mut fastrand::Rng) -> Duration {
        self.packet_gap.mul_f64(0.5 + rng.f64())
    }

    /// Allocations made per minute once every slot churns.
    pub(super) fn churn_per_minute(&self) -> f64 {
        let mean_life = (self.min_life + self.max_life).as_secs_f64() / 2.0;
        self.slots as f64 * 60.0 / mean_life
    }

    /// Packets the clients send per second in all.
    pub(super) fn packets_per_second(&self) -> f64 {
        self.slots as f64 / self.packet_gap.as_secs_f64()
    }

    /// Client source addresses used.
    pub(super) fn sources(&self) -> usize {
        self.slots.div_ceil(self.per_source)
    }
}

/// Slot `slot`'s client source address: `per_source` slots share one
/// address, from 127.0.0.2 up; None past 127.255.255.254.
pub(super) fn source_ip(slot: usize, per_source: usize) -> Option<Ipv4Addr> {
    let offset = u32::try_from(slot / per_source.max(1)).ok()?;
    let ip = FIRST_SOURCE.checked_add(offset)?;
    (ip <= LAST_SOURCE).then(|| Ipv4Addr::from(ip))
}

/// Whether a slot relays with a channel (ChannelData) or with Send and
/// Data indications: half and half, so both paths soak.
pub(super) fn uses_channel(slot: usize) -> bool {
    slot % 2 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn plan() -> SoakSchedule {
        SoakSchedule {
            slots: 10_000,
            per_source: 100,
            min_life: Duration::from_secs(20),
            max_life: Duration::from_secs(120),
            packet_gap: Duration::from_secs(2),
        }
    }

    #[test]
    fn every_life_is_in_range_and_refreshes_inside_it() {
        let p = plan();
        let mut rng = fastrand::Rng::with_seed(7);
        let (mut shortest, mut longest) = (Duration::MAX, Duration::ZERO);
        for _ in 0..100_000 {
            let l = p.life(&mut rng);
            assert!(
                l.lifetime >= p.min_life && l.lifetime <= p.max_life,
                "{l:?}"
            );
            assert!(l.refresh_at >= l.lifetime / 4, "{l:?}");
            assert!(l.refresh_at <= l.lifetime * 3 / 4, "{l:?}");
            assert!(l.first_packet < p.packet_gap, "{l:?}");
            shortest = shortest.min(l.lifetime);
            longest = longest.max(l.lifetime);
        }
        // The whole range is used, not a corner of it.
        assert!(shortest < Duration::from_secs(21), "{shortest:?}");
        assert!(longest > Duration::from_secs(119), "{longest:?}");
    }

    #[test]
    fn the_shortest_life_still_refreshes_well_before_its_delete() {
        let p = SoakSchedule {
            min_life: MIN_LIFE,
            max_life: MIN_LIFE,
            ..plan()
        };
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..1000 {
            let l = p.life(&mut rng);
            assert!(l.lifetime - l.refresh_at >= Duration::from_secs(1), "{l:?}");
        }
    }

    #[test]
    fn mean_life_and_gap_give_the_advertised_rates() {
        let p = plan();
        let mut rng = fastrand::Rng::with_seed(42);
        let n = 200_000;
        let mean_life: f64 = (0..n)
            .map(|_| p.life(&mut rng).lifetime.as_secs_f64())
            .sum::<f64>()
            / n as f64;
        assert!((mean_life - 70.0).abs() < 0.5, "{mean_life}");
        assert!((p.churn_per_minute() - 10_000.0 * 60.0 / 70.0).abs() < 1e-6);
        let gaps: Vec<f64> = (0..n).map(|_| p.next_gap(&mut rng).as_secs_f64()).collect();
        assert!(gaps.iter().all(|&g| (1.0..=3.0).contains(&g)));
        let mean_gap = gaps.iter().sum::<f64>() / n as f64;
        assert!((mean_gap - 2.0).abs() < 0.02, "{mean_gap}");
        assert_eq!(p.packets_per_second(), 5_000.0);
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let p = plan();
        let (mut a, mut b) = (fastrand::Rng::with_seed(9), fastrand::Rng::with_seed(9));
        for _ in 0..100 {
            assert_eq!(p.life(&mut a), p.life(&mut b));
            assert_eq!(p.next_gap(&mut a), p.next_gap(&mut b));
        }
        let mut c = fastrand::Rng::with_seed(10);
        assert_ne!(p.life(&mut fastrand::Rng::with_seed(9)), p.life(&mut c));
    }

    #[test]
    fn no_source_address_carries_more_than_per_source_slots() {
        let p = plan();
        let mut per_ip: HashMap<Ipv4Addr, usize> = HashMap::new();
        for slot in 0..p.slots {
            *per_ip
                .entry(source_ip(slot, p.per_source).unwrap())
                .or_default() += 1;
        }
        assert_eq!(per_ip.len(), 100);
        assert_eq!(p.sources(), 100);
        assert!(per_ip.values().all(|&n| n == 100));
        assert_eq!(source_ip(0, 100), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_ip(9_999, 100), Some(Ipv4Addr::new(127, 0, 0, 101)));
        // Past one octet the next one carries.
        assert_eq!(source_ip(254 * 100, 100), Some(Ipv4Addr::new(127, 0, 1, 0)));
    }

    #[test]
    fn sources_never_leave_loopback_or_take_the_servers_address() {
        assert_eq!(source_ip(usize::MAX, 1), None);
        let last = (LAST_SOURCE - FIRST_SOURCE) as usize;
        assert_eq!(source_ip(last, 1), Some(Ipv4Addr::new(127, 255, 255, 254)));
        assert_eq!(source_ip(last + 1, 1), None);
        for slot in [0, 1, 99, 100, 12_345] {
            let ip = source_ip(slot, 1).unwrap();
            assert!(ip.is_loopback() && ip != Ipv4Addr::LOCALHOST, "{ip}");
        }
    }

    #[test]
    fn plans_that_cannot_run_are_refused_with_a_reason() {
        let ok = plan();
        assert_eq!(ok.check(), Ok(()));
        let cases = [
            (
                SoakSchedule {
                    slots: 0,
                    ..ok.clone()
                },
                "--allocations",
            ),
            (
                SoakSchedule {
                    per_source: 0,
                    ..ok.clone()
                },
                "--per-source",
            ),
            (
                SoakSchedule {
                    min_life: Duration::from_secs(1),
                    ..ok.clone()
                },
                "--min-life",
            ),
            (
                SoakSchedule {
                    max_life: Duration::from_secs(10),
                    ..ok.clone()
                },
                "--max-life",
            ),
            (
                SoakSchedule {
                    packet_gap: Duration::ZERO,
                    ..ok.clone()
                },
                "--packet-interval",
            ),
            (
                SoakSchedule {
                    slots: 20_000_000,
                    per_source: 1,
                    ..ok.clone()
                },
                "127.0.0.0/8",
            ),
        ];
        for (p, what) in cases {
            let e = p.check().unwrap_err();
            assert!(e.contains(what), "{e}");
        }
    }

    #[test]
    fn channels_and_indications_are_half_and_half() {
        let channels = (0..10_000).filter(|&s| uses_channel(s)).count();
        assert_eq!(channels, 5_000);
    }
}
