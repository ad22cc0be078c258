//! The state directory: `cert.pem` (the chain served) and `key.pem` (its
//! key, 0600), and the account key. Before the first certificate, the
//! pair there is a self-signed placeholder for the configured domains, so
//! TLS and DTLS always have something to serve and the reload path (which
//! reads these files) is the one that swaps in each new certificate.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use openssl::asn1::Asn1Time;
use openssl::x509::X509;

/// The CN of the placeholder certificate.
pub const PLACEHOLDER_CN: &str = "turnpike ACME placeholder";

pub fn cert_path(dir: &Path) -> PathBuf {
    dir.join("cert.pem")
}

pub fn key_path(dir: &Path) -> PathBuf {
    dir.join("key.pem")
}

/// A certificate the CA issued, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Upper-case hex.
    pub serial: String,
}

impl Stored {
    /// Two-thirds of the way through its lifetime.
    pub fn renew_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + life * 2 / 3
    }
}

/// Creates the directory (0700) if it is missing.
pub fn ensure_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("acme_dir {}: {e}", dir.display()))
}

/// The stored certificate when it is one the CA issued (not the
/// placeholder), covers every domain and has not expired.
pub fn stored(dir: &Path, domains: &[String], now: SystemTime) -> Option<Stored> {
    let pem = std::fs::read(cert_path(dir)).ok()?;
    let leaf = X509::stack_from_pem(&pem).ok()?.into_iter().next()?;
    let info = describe(&leaf)?;
    let self_signed = leaf
        .issuer_name()
        .try_cmp(leaf.subject_name())
        .is_ok_and(|o| o.is_eq());
    let names: Vec<String> = leaf
        .subject_alt_names()
        .map(|s| {
            s.iter()
                .filter_map(|n| n.dnsname().map(|d| d.to_ascii_lowercase()))
                .collect()
        })
        .unwrap_or_default();
    let covers = domains.iter().all(|d| names.contains(d));
    (!self_signed && covers && info.not_after > now).then_some(info)
}

/// The validity and serial of a certificate (PEM chain: its leaf).
pub fn describe_pem(pem: &[u8]) -> Option<Stored> {
    describe(&X509::stack_from_pem(pem).ok()?.into_iter().next()?)
}

fn describe(leaf: &X509) -> Option<Stored> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let at = |t: &openssl::asn1::Asn1TimeRef| -> Option<SystemTime> {
        let d = epoch.diff(t).ok()?;
        let secs = i64::from(d.days) * 86_400 + i64::from(d.secs);
        Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
    };
    Some(Stored {
        not_before: at(leaf.not_before())?,
        not_after: at(leaf.not_after())?,
        serial: leaf
            .serial_number()
            .to_bn()
            .ok()?
            .to_hex_str()
            .ok()?
            .to_string(),
    })
}

/// Writes the pair, each through a temporary file and a rename so a
/// reader sees the old file or the new one; the key is 0600.
pub fn write_pair(dir: &Path, chain_pem: &str, key_pem: &str) -> Result<(), String> {
    write_file(&key_path(dir), key_pem.as_bytes(), 0o600)?;
    write_file(&cert_path(dir), chain_pem.as_bytes(), 0o644)
}

/// A self-signed pair for `domains`, served until the first certificate.
pub fn write_placeholder(dir: &Path, domains: &[String]) -> Result<(), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, PLACEHOLDER_CN);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    write_pair(dir, &cert.pem(), &key.serialize_pem())
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// PKCS#8 DER as a PEM `PRIVATE KEY`.
pub fn pkcs8_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// Writes the account key, 0600, only if no file is there.
pub fn create_account_key(path: &Path, pem: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            ensure_dir(parent)?;
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("acme_contact_key_file {}: {e}", path.display()))?;
    f.write_all(pem.as_bytes())
        .map_err(|e| format!("acme_contact_key_file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_is_not_a_stored_certificate_and_renewal_is_at_two_thirds() {
        let dir = std::env::temp_dir().join(format!("turnpike-acme-files-{}", std::process::id()));
        ensure_dir(&dir).unwrap();
        let domains = vec!["turn.example.org".to_string()];
        write_placeholder(&dir, &domains).unwrap();
        let now = SystemTime::now();
        assert_eq!(stored(&dir, &domains, now), None);
        let mode = std::fs::metadata(key_path(&dir)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let s = Stored {
            not_before: UNIX_EPOCH + Duration::from_secs(900),
            not_after: UNIX_EPOCH + Duration::from_secs(1800),
            serial: "01".into(),
        };
        assert_eq!(s.renew_at(), UNIX_EPOCH + Duration::from_secs(1500));
        let _ = std::fs::remove_dir_all(dir);
    }
}
