//! `Turnpike-Signature: t=UNIX,v1=HEX`, where HEX is the lowercase hex
//! HMAC-SHA256 under `webhook_secret` of `{t}.{body}`: the receiver checks
//! that the body came from the server and, from `t`, how old it is.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature header was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("not of the form t=UNIX,v1=HEX")]
    Malformed,
    #[error("signed more than the allowed age from now")]
    Stale,
    #[error("no v1 signature matches")]
    Mismatch,
}

fn mac(secret: &[u8], t: i64, body: &str) -> HmacSha256 {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac
}

/// The `Turnpike-Signature` value of `body` sent at Unix second `t`.
pub fn signature(secret: &[u8], t: i64, body: &str) -> String {
    let tag = mac(secret, t, body).finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// Checks `header` as a receiver should: one `t`, some `v1` (several are
/// allowed, for a future key rotation) matching in constant time, and `t`
/// within `tolerance_s` of `now_s`. Returns `t`.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &str,
    now_s: i64,
    tolerance_s: i64,
) -> Result<i64, SignatureError> {
    let mut t = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) if t.is_none() => {
                t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?)
            }
            Some(("v1", v)) => tags.push(unhex(v).ok_or(SignatureError::Malformed)?),
            Some((k, _)) if k != "t" => {} // other schemes: ignored
            _ => return Err(SignatureError::Malformed),
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now_s.abs_diff(t) > tolerance_s.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, t, body);
    if tags
        .iter()
        .any(|tag| expected.clone().verify_slice(tag).is_ok())
    {
        Ok(t)
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef-secret";
    const BODY: &str = r#"{"id":"ab","type":"node.ready"}"#;

    #[test]
    fn the_signature_is_hmac_sha256_over_t_dot_body_in_lowercase_hex() {
        // Computed independently: python3 -c 'import hmac,hashlib;
        // print(hmac.new(KEY, b"1796224445." + BODY, hashlib.sha256).hexdigest())'
        assert_eq!(
            signature(SECRET, 1_796_224_445, BODY),
            "t=1796224445,v1=6c16d777421b2e31b4af2fb16450b549301a78b4acf715e0c5335bb378729736"
        );
        assert_eq!(
            signature(&[b'k'; 16], 0, ""),
            "t=0,v1=ebac77380a421376b9a6f1792d4339f5d34a256efbdcfd07f7a4f92fa274ab29"
        );
    }

    #[test]
    fn verify_accepts_its_own_signature_and_refuses_changes_age_and_garbage() {
        let t = 1_796_224_445;
        let h = signature(SECRET, t, BODY);
        assert_eq!(verify(SECRET, &h, BODY, t + 300, 300), Ok(t));
        assert_eq!(verify(SECRET, &h, BODY, t - 300, 300), Ok(t));
        assert_eq!(
            verify(SECRET, &h, BODY, t + 301, 300),
            Err(SignatureError::Stale)
        );
        let other_body = BODY.replace("ab", "ac");
        assert_eq!(
            verify(SECRET, &h, &other_body, t, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"another key of 16+", &h, BODY, t, 300),
            Err(SignatureError::Mismatch)
        );
        // A t moved by the sender's clock is part of what is signed.
        let moved = h.replace(&format!("t={t}"), &format!("t={}", t + 1));
        assert_eq!(
            verify(SECRET, &moved, BODY, t, 300),
            Err(SignatureError::Mismatch)
        );
        // A second v1 (rotation) is fine if one matches.
        let two = format!("{},v1={}", h, "00".repeat(32));
        assert_eq!(verify(SECRET, &two, BODY, t, 300), Ok(t));
        for bad in [
            "",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "t=1,v1=0g",
            "t=1,t=2,v1=00",
            "garbage",
        ] {
            assert_eq!(
                verify(SECRET, bad, BODY, 1, 300),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }
}
