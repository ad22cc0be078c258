//! RFC 7635 token decryption (`turnpike::auth::oauth::decode`).
//!
//! Half the inputs are raw tokens; the other half choose a plaintext (key
//! length field, mac key, timestamp, lifetime, trailing bytes) that the
//! harness seals with the server's real key and server name, so the fuzzer
//! reaches the checks behind the AEAD. Checked: a token decodes only if its
//! plaintext is exactly `20 | mac key (20) | timestamp | lifetime`, decodes
//! to those fields, and is refused once expired; `encode` round-trips.
#![no_main]

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use libfuzzer_sys::fuzz_target;
use turnpike::auth::oauth::{
    decode, encode, Alg, OAuthKey, Token, TokenError, MAC_KEY_LEN, MAX_CLOCK_AHEAD,
};
use turnpike_fuzz::Reader;

const SERVER_NAME: &str = "auth.turnpike.fuzz";
const RAW_KEY: &[u8; 32] = b"01234567890123456789012345678901";

fn seal(alg: Alg, nonce: &[u8; 12], plain: &[u8]) -> Vec<u8> {
    let payload = Payload {
        msg: plain,
        aad: SERVER_NAME.as_bytes(),
    };
    let n = Nonce::from_slice(nonce);
    match alg {
        Alg::A256Gcm => Aes256Gcm::new_from_slice(RAW_KEY)
            .unwrap()
            .encrypt(n, payload),
        Alg::A128Gcm => Aes128Gcm::new_from_slice(&RAW_KEY[..16])
            .unwrap()
            .encrypt(n, payload),
    }
    .unwrap()
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let mode = r.u8();
    let alg = if mode & 2 == 0 {
        Alg::A256Gcm
    } else {
        Alg::A128Gcm
    };
    let key_lifetime = [0, 60, u32::MAX][(mode as usize >> 2) % 3];
    let key = OAuthKey::new(alg, RAW_KEY, key_lifetime).unwrap();
    let now = r.u64() >> 8;
    if mode & 1 == 0 {
        let _ = decode(&key, SERVER_NAME, r.rest(), now);
        return;
    }
    let key_len = match r.u8() % 4 {
        0 => r.u16(),
        _ => MAC_KEY_LEN as u16,
    };
    let mac_len = r.u8() as usize % 40;
    let mac = r.bytes(mac_len).to_vec();
    let timestamp = r.u64();
    let lifetime = r.u32();
    let extra = r.short_bytes().to_vec();
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&[r.u8(); 12]);
    let mut plain = key_len.to_be_bytes().to_vec();
    plain.extend_from_slice(&mac);
    plain.extend_from_slice(&timestamp.to_be_bytes());
    plain.extend_from_slice(&lifetime.to_be_bytes());
    plain.extend_from_slice(&extra);
    let mut token = vec![0, 12];
    token.extend_from_slice(&nonce);
    token.extend_from_slice(&seal(alg, &nonce, &plain));
    // The decoder sees only the plaintext: well formed is a 20 in the
    // length field and exactly 20 + 8 + 4 bytes after it.
    let well_formed = key_len as usize == MAC_KEY_LEN && plain.len() == 2 + MAC_KEY_LEN + 12;
    let fields = well_formed.then(|| Token {
        mac_key: plain[2..22].try_into().unwrap(),
        timestamp: u64::from_be_bytes(plain[22..30].try_into().unwrap()),
        lifetime: u32::from_be_bytes(plain[30..34].try_into().unwrap()),
    });
    match decode(&key, SERVER_NAME, &token, now) {
        Ok(t) => {
            assert_eq!(Some(&t), fields.as_ref(), "decoded other fields");
            if let Some(end) = t.expires(&key) {
                assert!(now < end, "expired token accepted");
            }
            assert!(
                (t.timestamp >> 16) <= now + MAX_CLOCK_AHEAD,
                "future token accepted"
            );
            // The authorization server's encoder round-trips.
            let again = encode(&key, SERVER_NAME, &nonce, &t);
            assert_eq!(decode(&key, SERVER_NAME, &again, now), Ok(t));
        }
        Err(TokenError::Expired) => {
            let t = fields.expect("a malformed token reported as expired");
            assert!(t.expires(&key).is_some_and(|end| now >= end));
        }
        Err(TokenError::FromTheFuture) => {
            let t = fields.expect("a malformed token reported as from the future");
            assert!((t.timestamp >> 16) > now + MAX_CLOCK_AHEAD);
        }
        Err(TokenError::Integrity) => panic!("a token sealed with the right key failed AEAD"),
        Err(_) => assert!(!well_formed, "a well-formed token was refused"),
    }
    // Other server name or key: never decrypts.
    assert_eq!(
        decode(&key, "other", &token, now),
        Err(TokenError::Integrity)
    );
});
