//! Keeping the per-node identity current: `Rotating` sends each request on the client of the
//! current certificate, and the renewal task replaces that client before the certificate expires.
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use base64::Engine;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use kube::config::AuthInfo;
use secrecy::SecretString;
use tokio::sync::watch;

use super::identity::{self, Identity};
use super::{CertSettings, CertificateError, PerNodeClient, csr, renewal_time};

/// Back-off between failed renewals: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Longest single sleep, so a wall-clock jump (suspend, NTP step) is noticed.
const MAX_NAP: Duration = Duration::from_secs(60);

/// The identity in use and the client that presents it.
#[derive(Clone)]
pub struct Active {
    pub client: Client,
    pub identity: Identity,
}

/// A tower service sending each request on the current client.
#[derive(Clone)]
pub struct Rotating(watch::Receiver<Active>);

impl tower::Service<Request<Body>> for Rotating {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, kube::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner client's own buffer applies back-pressure inside `send`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let client = self.0.borrow().client.clone();
        Box::pin(async move { client.send(request).await })
    }
}

/// Builds the client for `identity` and starts the renewal task.
pub fn start(
    settings: CertSettings,
    bootstrap: Client,
    bootstrap_config: kube::Config,
    identity: Identity,
    per_call: Duration,
) -> Result<PerNodeClient, CertificateError> {
    let renewer = Renewer {
        settings,
        bootstrap,
        bootstrap_config,
        per_call,
    };
    let active = renewer.activate(identity)?;
    let namespace = active.client.default_namespace().to_owned();
    let (tx, rx) = watch::channel(active);
    let client = Client::new(Rotating(rx.clone()), namespace);
    let task = tokio::spawn(renewer.run(tx));
    Ok(PerNodeClient {
        client,
        current: rx,
        task,
    })
}

struct Renewer {
    settings: CertSettings,
    bootstrap: Client,
    bootstrap_config: kube::Config,
    per_call: Duration,
}

impl Renewer {
    /// The bootstrap kubeconfig's cluster with only the certificate as credentials (as upstream,
    /// tokens, exec and auth providers of the bootstrap user are dropped).
    fn activate(&self, identity: Identity) -> Result<Active, CertificateError> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut config = self.bootstrap_config.clone();
        config.auth_info = AuthInfo {
            client_certificate_data: Some(b64(&identity.cert_pem)),
            client_key_data: Some(SecretString::from(b64(&identity.key_pem))),
            ..AuthInfo::default()
        };
        let client = super::super::build_client(config, self.per_call)
            .map_err(CertificateError::BuildClient)?;
        Ok(Active { client, identity })
    }

    async fn run(self, tx: watch::Sender<Active>) {
        let mut retry = RETRY_FIRST;
        loop {
            let current = tx.borrow().clone();
            let due = renewal_time(&current.identity, rand::random::<f64>());
            tracing::info!(cert.serial = %current.identity.serial, renew_in = ?until(due), "per-node certificate renewal scheduled");
            sleep_until(due).await;
            match self.renew(&current).await {
                Ok(next) => {
                    tracing::info!(cert.serial = %next.identity.serial, previous.serial = %current.identity.serial, "per-node certificate renewed; client switched");
                    tx.send_replace(next);
                    retry = RETRY_FIRST;
                }
                Err(error) => {
                    tracing::warn!(error = %error, retry_in = ?retry, expires_in = ?until(current.identity.not_after), "per-node certificate renewal failed");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// One renewal: request with the current certificate while it is valid (as upstream), with
    /// the bootstrap credentials otherwise or when the API server refuses the current one.
    async fn renew(&self, current: &Active) -> Result<Active, CertificateError> {
        let identity = if current.identity.is_valid_at(SystemTime::now()) {
            match csr::request(&current.client, &self.settings).await {
                Err(CertificateError::CreateCsr(kube::Error::Api(status)))
                    if status.code == 401 || status.code == 403 =>
                {
                    tracing::info!(
                        code = status.code,
                        "current certificate may not request another; using the bootstrap credentials"
                    );
                    csr::request(&self.bootstrap, &self.settings).await?
                }
                other => other?,
            }
        } else {
            csr::request(&self.bootstrap, &self.settings).await?
        };
        let path = self.settings.cert_path();
        // The new certificate is usable even if the disk is not; the next start requests again.
        if let Err(error) = identity::write(&path, &identity) {
            tracing::error!(cert.path = %path.display(), error = %error, "storing the renewed per-node certificate failed");
        }
        self.activate(identity)
    }
}

fn until(t: SystemTime) -> Duration {
    t.duration_since(SystemTime::now()).unwrap_or_default()
}

async fn sleep_until(t: SystemTime) {
    loop {
        let left = until(t);
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(MAX_NAP)).await;
    }
}
