//! The TURN core through an authenticated harness: the input configures a
//! server and scripts what clients (validly signed requests, Send, ChannelData,
//! mutated and raw messages), peers, the shell and the clock do. See
//! `turnpike_fuzz::harness` for what is checked besides "never panics".
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnpike_fuzz::harness::Harness;
use turnpike_fuzz::Reader;

/// Steps per input: enough for allocate, permit, bind, relay, expire.
const MAX_STEPS: usize = 96;

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let mut h = Harness::new(&mut r);
    for _ in 0..MAX_STEPS {
        if !h.step(&mut r) {
            break;
        }
    }
    h.finish();
});
