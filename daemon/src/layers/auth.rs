//! Auth: only callers whose SO_PEERCRED uid or gid is allowed (root by default) reach any service
//! on the socket, health and reflection included. Outermost, so a refused caller is never
//! traced, timed or decoded, and never reaches the engine.
use std::task::{Context, Poll};

use tonic::transport::server::UdsConnectInfo;
use tower::{Layer, Service};

use super::BoxFuture;
use crate::config::Config;
use crate::metrics::Metrics;

/// Who may call: uids and gids (either matching is enough).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPolicy {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

/// The peer of a connection, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

impl AuthPolicy {
    pub fn new(uids: Vec<u32>, gids: Vec<u32>) -> Self {
        Self { uids, gids }
    }

    pub fn from_config(config: &Config) -> Self {
        Self::new(config.allowed_uids.clone(), config.allowed_gids.clone())
    }

    /// Whether `peer` may call. No credentials (not a unix socket) is never allowed.
    pub fn allows(&self, peer: Option<Peer>) -> bool {
        peer.is_some_and(|p| self.uids.contains(&p.uid) || self.gids.contains(&p.gid))
    }

    /// Why `peer` is refused, naming its uid and the config keys (gRPC and HTTP alike).
    pub fn refusal_message(&self, peer: Option<Peer>) -> String {
        let who = match peer {
            Some(p) => format!("uid {} (gid {}, pid {:?})", p.uid, p.gid, p.pid),
            None => "a caller without unix credentials".to_owned(),
        };
        format!(
            "{who} may not call multus-daemon; allowed uids {:?}, gids {:?} (allowedUids, allowedGids)",
            self.uids, self.gids
        )
    }

    fn refusal(&self, peer: Option<Peer>) -> tonic::Status {
        tonic::Status::permission_denied(self.refusal_message(peer))
    }
}

/// The peer credentials tonic put into the request's extensions.
pub fn peer<B>(req: &http::Request<B>) -> Option<Peer> {
    let cred = req
        .extensions()
        .get::<UdsConnectInfo>()
        .and_then(|i| i.peer_cred)?;
    Some(Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
    })
}

/// Wraps a service with [`Auth`].
#[derive(Debug, Clone)]
pub struct AuthLayer {
    policy: AuthPolicy,
    metrics: Metrics,
}

impl AuthLayer {
    pub fn new(policy: AuthPolicy, metrics: Metrics) -> Self {
        Self { policy, metrics }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            policy: self.policy.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

// === impl Auth ===

/// Refuses callers outside the policy with PERMISSION_DENIED naming their uid.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    policy: AuthPolicy,
    metrics: Metrics,
}

impl<S, B, R> Service<http::Request<B>> for Auth<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let peer = peer(&req);
        if self.policy.allows(peer) {
            return Box::pin(self.inner.call(req));
        }
        let uid = peer.map(|p| p.uid);
        tracing::warn!(peer.uid = ?uid, peer.gid = ?peer.map(|p| p.gid), peer.pid = ?peer.and_then(|p| p.pid),
            grpc.path = %req.uri().path(), "caller refused: not in allowedUids/allowedGids");
        self.metrics.auth_rejected(uid);
        let refusal = self.policy.refusal(peer).into_http();
        Box::pin(async move { Ok(refusal) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(uid: u32, gid: u32) -> Option<Peer> {
        Some(Peer {
            uid,
            gid,
            pid: Some(1),
        })
    }

    #[test]
    fn uid_or_gid_admits_and_nothing_else_does() {
        let root_only = AuthPolicy::from_config(&Config::default());
        let mixed = AuthPolicy::new(vec![0, 1000], vec![42]);
        let cases = [
            (&root_only, p(0, 0), true),
            (&root_only, p(65534, 65534), false),
            (&root_only, p(65534, 0), false),
            (&root_only, None, false),
            (&mixed, p(1000, 1000), true),
            (&mixed, p(7, 42), true),
            (&mixed, p(7, 7), false),
        ];
        for (policy, peer, want) in cases {
            assert_eq!(policy.allows(peer), want, "{policy:?} {peer:?}");
        }
    }

    #[test]
    fn refusal_names_the_uid_and_the_keys() {
        let s = AuthPolicy::new(vec![0], vec![]).refusal(p(65534, 65534));
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        assert!(s.message().contains("uid 65534"), "{}", s.message());
        assert!(s.message().contains("allowedUids"), "{}", s.message());
    }

    #[tokio::test]
    async fn refused_request_never_reaches_the_inner_service() {
        let reached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = reached.clone();
        let inner = tower::service_fn(move |_req: http::Request<()>| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(http::Response::new(String::new())) }
        });
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new(crate::app::cache_entries(crate::engine::cache::Cache::new(
            dir.path(),
        )));
        let mut svc =
            AuthLayer::new(AuthPolicy::new(vec![0], vec![]), metrics.clone()).layer(inner);
        // No UdsConnectInfo: no credentials, refused.
        let resp = svc.call(http::Request::new(())).await.unwrap();
        let status = tonic::Status::from_header_map(resp.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(!reached.load(std::sync::atomic::Ordering::SeqCst));
        assert!(
            metrics
                .encode()
                .unwrap()
                .contains("multus_rs_auth_rejections_total{uid=\"unknown\"} 1")
        );
    }
}
