//! `stun::framing::Framer` fed a byte stream in arbitrary splits.
//!
//! The first bytes of the input choose the split points, the rest is the
//! stream. Checked: any split yields the same frames (and the same error)
//! as the whole stream pushed at once; frames never exceed `MAX_FRAME_LEN`;
//! a ChannelData frame always parses as ChannelData; `pending` accounts for
//! every byte. The first byte's top bit also turns on RFC 3489 framing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnpike::stun::framing::{FrameKind, Framer, FramingError, MAX_FRAME_LEN};
use turnpike::stun::{ChannelData, Message};

#[derive(Debug, PartialEq)]
enum Outcome {
    Frames(Vec<(FrameKind, Vec<u8>)>),
    Error(Vec<(FrameKind, Vec<u8>)>, FramingError),
}

/// Drains whole frames; `Err` once the stream is not STUN/ChannelData.
fn drain(f: &mut Framer, out: &mut Vec<(FrameKind, Vec<u8>)>) -> Result<(), FramingError> {
    while let Some(frame) = f.next_frame()? {
        assert!(frame.bytes.len() <= MAX_FRAME_LEN);
        if frame.kind == FrameKind::ChannelData {
            let cd = ChannelData::parse(frame.bytes).expect("ChannelData frame parses");
            assert!(
                frame.bytes.len() - 4 - cd.data.len() < 4,
                "padding over 3 bytes"
            );
        } else {
            let _ = Message::parse(frame.bytes);
        }
        out.push((frame.kind, frame.bytes.to_vec()));
    }
    Ok(())
}

fn feed(stream: &[u8], splits: &[u8], use_unfilled: bool, classic: bool) -> (Outcome, usize) {
    let mut f = Framer::new().with_classic(classic);
    let mut frames = Vec::new();
    let mut at = 0;
    let mut i = 0;
    let mut consumed = 0;
    while at < stream.len() {
        let step = match splits.get(i) {
            Some(&s) => (s as usize % 64).max(1),
            None => stream.len() - at,
        };
        i += 1;
        let chunk = &stream[at..(at + step).min(stream.len())];
        at += chunk.len();
        if use_unfilled && i % 2 == 0 {
            let room = f.unfilled();
            let n = chunk.len().min(room.len());
            room[..n].copy_from_slice(&chunk[..n]);
            f.filled(n);
            at -= chunk.len() - n;
        } else {
            f.push(chunk);
        }
        let before = frames.len();
        if let Err(e) = drain(&mut f, &mut frames) {
            return (Outcome::Error(frames, e), consumed);
        }
        consumed += frames[before..].iter().map(|(_, b)| b.len()).sum::<usize>();
        assert_eq!(f.pending(), at - consumed, "pending miscounts");
    }
    (Outcome::Frames(frames), consumed)
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let n = (data[0] as usize % 32).min(data.len() - 1);
    let (splits, stream) = data[1..].split_at(n);
    let classic = data[0] & 0x80 != 0;
    let (whole, _) = feed(stream, &[], false, classic);
    let (split, _) = feed(stream, splits, false, classic);
    assert_eq!(whole, split, "splits change the frames");
    let (unfilled, _) = feed(stream, splits, true, classic);
    assert_eq!(
        whole, unfilled,
        "reading into unfilled() changes the frames"
    );
    if let Outcome::Frames(frames) = &whole {
        // Re-joined frames are a prefix of the stream.
        let joined: Vec<u8> = frames.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        assert_eq!(&stream[..joined.len()], &joined[..]);
    }
});
