//! RFC 5769 test vectors: parse, verify, re-encode byte for byte.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::attributes::{decode_text, decode_username, decode_xor_address, MAX_TEXT_CHARS};
use super::integrity::{long_term_key_md5, verify_sha1, IntegrityError};
use super::*;

const VECTORS: &str = include_str!("../../tests/vectors/rfc5769.txt");

fn vectors() -> HashMap<String, String> {
    VECTORS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn field(v: &HashMap<String, String>, name: &str) -> String {
    v.get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .clone()
}

#[test]
fn sample_request_parses_verifies_and_reencodes() {
    let v = vectors();
    let bytes = unhex(&field(&v, "request.hex"));
    let msg = Message::parse(&bytes).expect("2.1 parses (FINGERPRINT checked)");
    assert_eq!(msg.class(), Class::Request);
    assert_eq!(msg.method(), Method::BINDING);
    assert_eq!(
        msg.transaction_id().0.to_vec(),
        unhex(&field(&v, "request.transaction_id_hex"))
    );
    let software = decode_text(msg.get(AttributeType::SOFTWARE).unwrap(), MAX_TEXT_CHARS).unwrap();
    assert_eq!(software, field(&v, "request.software"));
    let username = decode_username(msg.get(AttributeType::USERNAME).unwrap()).unwrap();
    assert_eq!(username, field(&v, "request.username"));
    let priority = msg.get(AttributeType::PRIORITY).unwrap();
    assert_eq!(priority, unhex(&field(&v, "request.priority_hex")));
    let controlled = msg.get(AttributeType::ICE_CONTROLLED).unwrap();
    assert_eq!(controlled, unhex(&field(&v, "request.ice_controlled_hex")));
    let password = field(&v, "request.password");
    assert_eq!(verify_sha1(&msg, password.as_bytes()), Ok(()));
    assert_eq!(verify_sha1(&msg, b"wrong"), Err(IntegrityError::Mismatch));

    // USERNAME is padded with spaces in the RFC's dump.
    let mut out = [0u8; 256];
    let mut b =
        MessageBuilder::new(&mut out, msg.message_type(), msg.transaction_id()).padding_byte(b' ');
    b.add_software(software);
    b.add(AttributeType::PRIORITY, priority);
    b.add(AttributeType::ICE_CONTROLLED, controlled);
    b.add_username(username);
    b.add_message_integrity(password.as_bytes());
    b.add_fingerprint();
    let n = b.finish().unwrap();
    assert_eq!(hex(&out[..n]), hex(&bytes));
}

fn check_response(prefix: &str) {
    let v = vectors();
    let bytes = unhex(&field(&v, &format!("{prefix}.hex")));
    let msg = Message::parse(&bytes).expect("response parses (FINGERPRINT checked)");
    assert_eq!(msg.class(), Class::SuccessResponse);
    let txid = msg.transaction_id();
    let software = decode_text(msg.get(AttributeType::SOFTWARE).unwrap(), MAX_TEXT_CHARS).unwrap();
    assert_eq!(software, field(&v, &format!("{prefix}.software")));
    let addr =
        decode_xor_address(msg.get(AttributeType::XOR_MAPPED_ADDRESS).unwrap(), &txid).unwrap();
    let expected: SocketAddr = field(&v, &format!("{prefix}.xor_mapped_address"))
        .parse()
        .unwrap();
    assert_eq!(addr, expected);
    let password = field(&v, &format!("{prefix}.password"));
    assert_eq!(verify_sha1(&msg, password.as_bytes()), Ok(()));

    let mut out = [0u8; 256];
    let mut b = MessageBuilder::new(&mut out, msg.message_type(), txid).padding_byte(b' ');
    b.add_software(software);
    b.add_xor_mapped_address(&addr);
    b.add_message_integrity(password.as_bytes());
    b.add_fingerprint();
    let n = b.finish().unwrap();
    assert_eq!(hex(&out[..n]), hex(&bytes));
}

#[test]
fn sample_ipv4_response_parses_verifies_and_reencodes() {
    check_response("response_ipv4");
}

#[test]
fn sample_ipv6_response_parses_verifies_and_reencodes() {
    check_response("response_ipv6");
}

#[test]
fn long_term_request_parses_verifies_and_reencodes() {
    let v = vectors();
    let bytes = unhex(&field(&v, "request_long_term.hex"));
    let msg = Message::parse(&bytes).unwrap();
    assert!(!msg.has_fingerprint());
    let username = decode_username(msg.get(AttributeType::USERNAME).unwrap()).unwrap();
    assert_eq!(username, field(&v, "request_long_term.username"));
    let nonce = msg.get(AttributeType::NONCE).unwrap();
    assert_eq!(nonce, field(&v, "request_long_term.nonce").as_bytes());
    let realm = decode_text(msg.get(AttributeType::REALM).unwrap(), MAX_TEXT_CHARS).unwrap();
    assert_eq!(realm, field(&v, "request_long_term.realm"));

    // The password as given to the user, before SASLprep, prepares to the
    // vector's "TheMatrIX".
    let raw = String::from_utf8(unhex(&field(
        &v,
        "request_long_term.password_before_saslprep_hex",
    )))
    .unwrap();
    let prepared = stringprep::saslprep(&raw).unwrap();
    assert_eq!(prepared, field(&v, "request_long_term.password"));
    let key = long_term_key_md5(username, realm, &prepared);
    assert_eq!(verify_sha1(&msg, &key), Ok(()));
    assert_eq!(
        verify_sha1(&msg, &long_term_key_md5(username, realm, &raw)),
        Err(IntegrityError::Mismatch)
    );

    let mut out = [0u8; 256];
    let mut b = MessageBuilder::new(&mut out, msg.message_type(), msg.transaction_id());
    b.add_username(username);
    b.add_nonce(nonce);
    b.add_realm(realm);
    b.add_message_integrity(&key);
    let n = b.finish().unwrap();
    assert_eq!(hex(&out[..n]), hex(&bytes));
}

#[test]
fn any_flipped_bit_breaks_fingerprint_or_integrity() {
    let v = vectors();
    let bytes = unhex(&field(&v, "request.hex"));
    let password = field(&v, "request.password");
    // The header's type and length change the framing instead. A flip in the
    // FINGERPRINT type turns it into an unknown attribute after
    // MESSAGE-INTEGRITY, which RFC 8489 §14.5 says to ignore.
    let fp_type = bytes.len() - 8..bytes.len() - 6;
    for i in (20..bytes.len()).filter(|i| !fp_type.contains(i)) {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        match Message::parse(&b) {
            Err(_) => {}
            Ok(m) => assert!(
                verify_sha1(&m, password.as_bytes()).is_err(),
                "flipping byte {i} went unnoticed"
            ),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
