//! The client identity: a certificate chain and its private key as PEM, what the certificate
//! says about itself (subject, validity, public key), and `multus-client-current.pem` on disk
//! (read as upstream's client-go store writes it; written atomically, 0600).
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustls_pki_types::pem::{self, SectionKind};

/// A parsed client identity.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The certificate chain, leaf first, as PEM.
    pub cert_pem: String,
    /// The private key as PEM (PKCS#8, SEC1 or PKCS#1, as found).
    pub key_pem: String,
    pub common_name: String,
    /// The leaf's serial number, hex with colons (as openssl prints it).
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The leaf's SubjectPublicKeyInfo, DER (to match an issued certificate to our key).
    pub public_key_der: Vec<u8>,
}

// The key never goes to a log.
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("common_name", &self.common_name)
            .field("serial", &self.serial)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Reading, parsing or writing an identity failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("decoding PEM: {0}")]
    DecodePem(#[source] pem::Error),
    #[error("no CERTIFICATE block")]
    NoCertificate,
    #[error("no private key block")]
    NoPrivateKey,
    #[error("parsing the certificate: {0}")]
    ParseCertificate(String),
    #[error("the certificate has no subject common name")]
    NoCommonName,
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Identity {
    /// Parses one PEM text holding the certificate chain and the key, in any order.
    pub fn from_pem(text: &str) -> Result<Self, IdentityError> {
        let mut certs = Vec::new();
        let mut key = None;
        let mut reader = std::io::Cursor::new(text.as_bytes());
        while let Some((kind, der)) =
            pem::from_buf(&mut reader).map_err(IdentityError::DecodePem)?
        {
            match kind {
                SectionKind::Certificate => certs.push(der),
                SectionKind::PrivateKey
                | SectionKind::EcPrivateKey
                | SectionKind::RsaPrivateKey => {
                    key = Some((kind, der));
                }
                _ => {}
            }
        }
        let (key_kind, key_der) = key.ok_or(IdentityError::NoPrivateKey)?;
        let leaf = certs.first().ok_or(IdentityError::NoCertificate)?;
        let mut identity = parse_leaf(leaf)?;
        identity.cert_pem = certs
            .iter()
            .map(|der| encode(SectionKind::Certificate, der))
            .collect();
        identity.key_pem = encode(key_kind, &key_der);
        Ok(identity)
    }

    /// The certificate and key as one file (certificate first, as client-go's store writes it).
    pub fn to_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }

    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }

    /// Whether the certificate is valid at `now` (the API server would accept it).
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

fn parse_leaf(der: &[u8]) -> Result<Identity, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| IdentityError::ParseCertificate(e.to_string()))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or(IdentityError::NoCommonName)?
        .to_owned();
    let validity = cert.validity();
    Ok(Identity {
        cert_pem: String::new(),
        key_pem: String::new(),
        common_name,
        serial: cert.raw_serial_as_string(),
        not_before: to_system_time(validity.not_before.timestamp()),
        not_after: to_system_time(validity.not_after.timestamp()),
        public_key_der: cert.public_key().raw.to_vec(),
    })
}

fn to_system_time(unix_seconds: i64) -> SystemTime {
    match u64::try_from(unix_seconds) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::from_secs(s),
        // A validity before 1970 is in the past for every purpose here.
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

fn encode(kind: SectionKind, der: &[u8]) -> String {
    let label = match kind {
        SectionKind::Certificate => "CERTIFICATE",
        SectionKind::EcPrivateKey => "EC PRIVATE KEY",
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    let body = base64_lines(der);
    format!("-----BEGIN {label}-----\n{body}-----END {label}-----\n")
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(text.len() + text.len() / 64 + 1);
    for chunk in text.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out
}

/// Reads the identity file; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<Identity>, IdentityError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Identity::from_pem(&text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes the identity file atomically, mode 0600 (replacing upstream's symlink, not its target).
/// Creates the directory (0700).
pub fn write(path: &Path, identity: &Identity) -> Result<(), IdentityError> {
    let err = |source| IdentityError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    crate::atomic_file::write(path, identity.to_pem().as_bytes(), 0o600).map_err(err)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A self-signed identity for `cn`, valid for `days` from now.
    pub fn self_signed(cn: &str, valid: Duration, ec_key_label: bool) -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::seconds(1);
        params.not_after = now + valid;
        let cert = params.self_signed(&key).unwrap();
        let key_pem = if ec_key_label {
            // client-go writes SEC1 ("EC PRIVATE KEY"); a PKCS#8 body is not SEC1, but the
            // label is all this parser routes on.
            key.serialize_pem().replace("PRIVATE KEY", "EC PRIVATE KEY")
        } else {
            key.serialize_pem()
        };
        format!("{}{}", cert.pem(), key_pem)
    }

    #[test]
    fn parses_cert_and_key_in_either_order() {
        let text = self_signed("system:multus:n1", Duration::from_secs(3600), false);
        let id = Identity::from_pem(&text).unwrap();
        assert_eq!(id.common_name, "system:multus:n1");
        let lifetime = id.lifetime().as_secs();
        assert!((3600..=3602).contains(&lifetime), "{lifetime}");
        assert!(id.is_valid_at(SystemTime::now()));
        let (cert, key) = text.split_at(text.find("-----BEGIN PRIVATE KEY").unwrap());
        let reversed = Identity::from_pem(&format!("{key}{cert}")).unwrap();
        assert_eq!(reversed.to_pem(), id.to_pem());
        assert!(id.to_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
        let ec = self_signed("x", Duration::from_secs(60), true);
        assert!(
            Identity::from_pem(&ec)
                .unwrap()
                .key_pem
                .contains("BEGIN EC PRIVATE KEY")
        );
    }

    #[test]
    fn incomplete_files_are_refused() {
        let text = self_signed("n", Duration::from_secs(60), false);
        let cert_only = &text[..text.find("-----BEGIN PRIVATE KEY").unwrap()];
        let key_only = &text[text.find("-----BEGIN PRIVATE KEY").unwrap()..];
        type Check = fn(&IdentityError) -> bool;
        let cases: [(&str, Check); 3] = [
            (cert_only, |e| matches!(e, IdentityError::NoPrivateKey)),
            (key_only, |e| matches!(e, IdentityError::NoCertificate)),
            ("", |e| matches!(e, IdentityError::NoPrivateKey)),
        ];
        for (input, want) in cases {
            let e = Identity::from_pem(input).unwrap_err();
            assert!(want(&e), "{e}");
        }
    }

    #[test]
    fn write_is_0600_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certs/multus-client-current.pem");
        assert!(read(&path).unwrap().is_none());
        let id = Identity::from_pem(&self_signed("n", Duration::from_secs(60), false)).unwrap();
        write(&path, &id).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read(&path).unwrap().unwrap(), id);
        // Replacing upstream's symlink replaces the link, not its target.
        let target = dir.path().join("certs/multus-client-2024.pem");
        std::fs::rename(&path, &target).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        write(&path, &id).unwrap();
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
    }
}
