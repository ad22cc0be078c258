//! ChannelData (RFC 8656 §12.4) on arbitrary bytes: `ChannelData::parse`,
//! and the same bytes from a UDP and a TCP client whose channel 0x4000 is
//! bound, through `Server::handle_client`.
//!
//! Checked: a parsed message's channel is in range and its data is exactly
//! the stated length, right after the header; the header re-encodes; data
//! reaches the peer only for the bound channel, unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnpike::stun::channel_data::{is_channel_number, CHANNEL_DATA_HEADER_LEN};
use turnpike::stun::ChannelData;
use turnpike_fuzz::harness::Harness;

/// Client 0 is UDP, client 2 is TCP (see the harness).
const CLIENTS: [usize; 2] = [0, 2];

fuzz_target!(|data: &[u8]| {
    let parsed = ChannelData::parse(data);
    if let Some(cd) = parsed {
        assert!(is_channel_number(cd.channel));
        let len = u16::from_be_bytes([data[2], data[3]]) as usize;
        assert_eq!(cd.data.len(), len);
        assert_eq!(
            cd.data,
            &data[CHANNEL_DATA_HEADER_LEN..CHANNEL_DATA_HEADER_LEN + len]
        );
        let mut header = [0u8; 4];
        ChannelData::write_header(cd.channel, len as u16, &mut header);
        assert_eq!(&header[..], &data[..4]);
    }
    for c in CLIENTS {
        let mut h = Harness::with_channel(c);
        let forwarded = h.client_sends(c, data);
        match (parsed, forwarded) {
            (Some(cd), Some((peer, out))) => {
                assert_eq!(cd.channel, 0x4000, "relayed on an unbound channel");
                assert_eq!(peer, "8.8.8.8:9000".parse().unwrap());
                assert_eq!(out, cd.data);
            }
            (Some(cd), None) => assert_ne!(cd.channel, 0x4000, "bound channel dropped"),
            (None, Some((_, out))) => {
                // Not ChannelData: only a Send indication may relay.
                assert!(data[0] & 0xC0 == 0, "non-STUN bytes relayed: {out:?}");
            }
            (None, None) => {}
        }
        h.finish();
    }
});
