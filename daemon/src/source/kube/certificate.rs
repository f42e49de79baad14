//! Per-node client certificates (upstream's `perNodeCertificate`): the daemon talks to the API
//! server as `system:multus:<node>` (group `system:multus`) with a short-lived client certificate
//! it requested itself through a CertificateSigningRequest, instead of a cluster-wide token.
//!
//! At start: `<certDir>/multus-client-current.pem` is used when it is for this node and not
//! expired (renewed at once in the background when already past its renewal time); otherwise a
//! certificate is requested with the bootstrap kubeconfig's credentials and startup waits for it
//! (2 min, as upstream). Then a background task renews at 70–90 % of the lifetime (client-go's
//! jitter), writes the file, and swaps the client.
//!
//! Why a swapped client and not kube's exec auth hooks: exec plugins return tokens or
//! certificates from an external command, which would mean a helper binary and a process per
//! refresh. Instead every request goes through `rotation::Rotating`, a tower service that sends
//! it on the *current* inner client, so reflectors, GETs and patches pick up a new identity on
//! their next request; requests in flight finish on the old connection (as Go's transport does
//! after a rotation, the old pool closes once idle).
mod csr;
mod identity;
mod rotation;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use identity::{Identity, IdentityError};
pub use rotation::Active;

use crate::config::PerNodeCertificate;

/// The file upstream's client-go store reads and writes (`<prefix>-current.pem`).
pub const CERT_FILE: &str = "multus-client-current.pem";
pub const COMMON_NAME_PREFIX: &str = "system:multus";
pub const ORGANIZATION: &str = "system:multus";
pub const SIGNER_NAME: &str = "kubernetes.io/kube-apiserver-client";
/// Upstream's `certUsages` (no key encipherment: an ECDSA key does no key transport).
pub const USAGES: [&str; 2] = ["digital signature", "client auth"];
/// Upstream's default `certDuration`.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(600);
/// How long startup waits for the first certificate (upstream polls for 2 min).
pub const ISSUE_TIMEOUT: Duration = Duration::from_secs(120);
/// The API server refuses `expirationSeconds` below this.
const API_MIN_DURATION: Duration = Duration::from_secs(600);

/// The `perNodeCertificate` keys as configured (checked when connecting).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerNodeOptions {
    pub bootstrap_kubeconfig: Option<PathBuf>,
    pub cert_dir: Option<PathBuf>,
    /// Validated when the config was loaded.
    pub cert_duration: Option<Duration>,
}

impl PerNodeOptions {
    /// The options when `perNodeCertificate.enabled`.
    pub fn from_config(config: Option<&PerNodeCertificate>) -> Option<Self> {
        config.filter(|p| p.enabled).map(|p| Self {
            bootstrap_kubeconfig: p.bootstrap_kubeconfig.clone(),
            cert_dir: p.cert_dir.clone(),
            cert_duration: p.cert_duration.map(|d| d.0),
        })
    }
}

/// Everything a certificate request needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSettings {
    pub node_name: String,
    pub bootstrap_kubeconfig: PathBuf,
    pub cert_dir: PathBuf,
    /// Requested lifetime (`expirationSeconds`).
    pub duration: Duration,
    /// How long one request waits for its certificate.
    pub issue_timeout: Duration,
}

/// Getting or renewing the per-node certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("perNodeCertificate is enabled but {key} is not set")]
    MissingKey { key: &'static str },
    #[error("loading the bootstrap kubeconfig {path}: {source}")]
    LoadBootstrap {
        path: PathBuf,
        source: KubeconfigError,
    },
    #[error("creating a Kubernetes client: {0}")]
    BuildClient(#[source] kube::Error),
    #[error("generating the key and certificate request: {0}")]
    GenerateKey(#[source] rcgen::Error),
    #[error("creating the CertificateSigningRequest: {0}")]
    CreateCsr(#[source] kube::Error),
    #[error(
        "CertificateSigningRequest {name} was not issued within {waited:?} (is the approver running?)"
    )]
    NotIssued { name: String, waited: Duration },
    #[error("CertificateSigningRequest {name} {condition}: {reason} {message}")]
    Refused {
        name: String,
        condition: String,
        reason: String,
        message: String,
    },
    #[error("CertificateSigningRequest {name} issued an unusable certificate: {reason}")]
    InvalidIssued { name: String, reason: String },
    #[error("storing the certificate: {0}")]
    Store(#[source] IdentityError),
}

impl CertSettings {
    /// Checks the options; every missing key is named.
    pub fn resolve(
        opts: &PerNodeOptions,
        node_name: Option<&str>,
    ) -> Result<Self, CertificateError> {
        let node_name =
            node_name
                .filter(|n| !n.is_empty())
                .ok_or(CertificateError::MissingKey {
                    key: "MULTUS_NODE_NAME (environment)",
                })?;
        let bootstrap_kubeconfig =
            non_empty(&opts.bootstrap_kubeconfig).ok_or(CertificateError::MissingKey {
                key: "perNodeCertificate.bootstrapKubeconfig",
            })?;
        let cert_dir = non_empty(&opts.cert_dir).ok_or(CertificateError::MissingKey {
            key: "perNodeCertificate.certDir",
        })?;
        let duration = opts.cert_duration.unwrap_or(DEFAULT_DURATION);
        if duration < API_MIN_DURATION {
            tracing::warn!(cert_duration = ?duration, "perNodeCertificate.certDuration is under 10m: a Kubernetes API server refuses such CertificateSigningRequests");
        }
        Ok(Self {
            node_name: node_name.to_owned(),
            bootstrap_kubeconfig,
            cert_dir,
            duration,
            issue_timeout: ISSUE_TIMEOUT,
        })
    }

    pub fn common_name(&self) -> String {
        format!("{COMMON_NAME_PREFIX}:{}", self.node_name)
    }

    pub fn cert_path(&self) -> PathBuf {
        self.cert_dir.join(CERT_FILE)
    }
}

fn non_empty(p: &Option<PathBuf>) -> Option<PathBuf> {
    p.clone().filter(|p| !p.as_os_str().is_empty())
}

/// When to renew: client-go's `nextRotationDeadline`, 70 % + `jitter` (0..1) × 20 % of the
/// lifetime after `notBefore`.
pub fn renewal_time(identity: &Identity, jitter: f64) -> SystemTime {
    let fraction = 0.7 + 0.2 * jitter.clamp(0.0, 1.0);
    identity.not_before + identity.lifetime().mul_f64(fraction)
}

/// Whether a stored identity may be used: ours and not expired.
pub fn usable(
    identity: &Identity,
    settings: &CertSettings,
    now: SystemTime,
) -> Result<(), &'static str> {
    if identity.common_name != settings.common_name() {
        return Err("issued for another node");
    }
    if now >= identity.not_after {
        return Err("expired");
    }
    Ok(())
}

/// The per-node client and what keeps it current.
pub struct PerNodeClient {
    /// Sends every request with the current certificate.
    pub client: Client,
    /// The current identity (for status and tests).
    pub current: watch::Receiver<Active>,
    /// The renewal task (abort to stop renewing).
    pub task: JoinHandle<()>,
}

/// Obtains the certificate (waiting for issuance when there is no usable one) and starts renewal.
pub async fn connect(
    settings: CertSettings,
    per_call: Duration,
) -> Result<PerNodeClient, CertificateError> {
    let bootstrap_config = load_bootstrap(&settings).await?;
    let bootstrap = super::build_client(bootstrap_config.clone(), per_call)
        .map_err(CertificateError::BuildClient)?;
    let identity = match stored(&settings) {
        Some(identity) => identity,
        None => {
            let identity = csr::request(&bootstrap, &settings).await?;
            identity::write(&settings.cert_path(), &identity).map_err(CertificateError::Store)?;
            tracing::info!(cert.serial = %identity.serial, cert.path = %settings.cert_path().display(), "per-node certificate issued and stored");
            identity
        }
    };
    rotation::start(settings, bootstrap, bootstrap_config, identity, per_call)
}

fn stored(settings: &CertSettings) -> Option<Identity> {
    let path = settings.cert_path();
    match identity::read(&path) {
        Ok(Some(identity)) => match usable(&identity, settings, SystemTime::now()) {
            Ok(()) => {
                tracing::info!(cert.serial = %identity.serial, cert.path = %path.display(), "using the stored per-node certificate");
                Some(identity)
            }
            Err(reason) => {
                tracing::info!(cert.path = %path.display(), reason, "stored per-node certificate not usable; requesting a new one");
                None
            }
        },
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(cert.path = %path.display(), error = %error, "stored per-node certificate unreadable; requesting a new one");
            None
        }
    }
}

async fn load_bootstrap(settings: &CertSettings) -> Result<kube::Config, CertificateError> {
    let path = &settings.bootstrap_kubeconfig;
    let err = |source| CertificateError::LoadBootstrap {
        path: path.clone(),
        source,
    };
    let file = Kubeconfig::read_from(path).map_err(err)?;
    kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(bootstrap: Option<&str>, dir: Option<&str>, secs: Option<u64>) -> PerNodeOptions {
        PerNodeOptions {
            bootstrap_kubeconfig: bootstrap.map(PathBuf::from),
            cert_dir: dir.map(PathBuf::from),
            cert_duration: secs.map(Duration::from_secs),
        }
    }

    #[test]
    fn missing_keys_are_named() {
        let full = opts(Some("/b"), Some("/d"), None);
        let cases = [
            (full.clone(), None, "MULTUS_NODE_NAME"),
            (full.clone(), Some(""), "MULTUS_NODE_NAME"),
            (
                opts(None, Some("/d"), None),
                Some("n"),
                "perNodeCertificate.bootstrapKubeconfig",
            ),
            (
                opts(Some(""), Some("/d"), None),
                Some("n"),
                "perNodeCertificate.bootstrapKubeconfig",
            ),
            (
                opts(Some("/b"), None, None),
                Some("n"),
                "perNodeCertificate.certDir",
            ),
        ];
        for (o, node, key) in cases {
            let e = CertSettings::resolve(&o, node).unwrap_err().to_string();
            assert!(e.contains(key), "{e} should name {key}");
        }
        let s = CertSettings::resolve(&full, Some("node-a")).unwrap();
        assert_eq!(s.duration, DEFAULT_DURATION);
        assert_eq!(s.common_name(), "system:multus:node-a");
        assert_eq!(s.cert_path(), PathBuf::from("/d/multus-client-current.pem"));
        let s =
            CertSettings::resolve(&opts(Some("/b"), Some("/d"), Some(86400)), Some("n")).unwrap();
        assert_eq!(s.duration, Duration::from_secs(86400));
    }

    #[test]
    fn enabled_only() {
        let mut p = PerNodeCertificate::default();
        assert_eq!(PerNodeOptions::from_config(Some(&p)), None);
        p.enabled = true;
        p.cert_dir = Some("/d".into());
        assert_eq!(
            PerNodeOptions::from_config(Some(&p)).unwrap().cert_dir,
            Some("/d".into())
        );
        assert_eq!(PerNodeOptions::from_config(None), None);
    }

    fn identity(not_before: SystemTime, lifetime: Duration, cn: &str) -> Identity {
        Identity {
            cert_pem: String::new(),
            key_pem: String::new(),
            common_name: cn.into(),
            serial: "01".into(),
            not_before,
            not_after: not_before + lifetime,
            public_key_der: Vec::new(),
        }
    }

    #[test]
    fn renewal_is_between_70_and_90_percent() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let id = identity(start, Duration::from_secs(1000), "x");
        let cases = [(0.0, 700), (0.5, 800), (1.0, 900), (-3.0, 700), (7.0, 900)];
        for (jitter, after) in cases {
            assert_eq!(
                renewal_time(&id, jitter),
                start + Duration::from_secs(after),
                "{jitter}"
            );
        }
    }

    #[test]
    fn stored_identity_must_be_ours_and_unexpired() {
        let settings =
            CertSettings::resolve(&opts(Some("/b"), Some("/d"), None), Some("n1")).unwrap();
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let cases = [
            (identity(now - hour, 2 * hour, "system:multus:n1"), Ok(())),
            // Past its renewal time but valid: used, renewal starts at once.
            (
                identity(
                    now - hour,
                    hour + Duration::from_secs(60),
                    "system:multus:n1",
                ),
                Ok(()),
            ),
            (
                identity(now - 2 * hour, hour, "system:multus:n1"),
                Err("expired"),
            ),
            (
                identity(now - hour, 2 * hour, "system:multus:n2"),
                Err("issued for another node"),
            ),
        ];
        for (id, want) in cases {
            assert_eq!(usable(&id, &settings, now), want, "{id:?}");
        }
    }
}
