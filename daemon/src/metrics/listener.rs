//! The `metricsPort` HTTP listener: `GET /metrics` in the OpenMetrics text format, 404 for
//! anything else. Plain hyper: one route needs no web framework.
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use super::Metrics;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The listener could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("binding the metrics listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds `address:port`; the returned listener is served by [`serve`]. An IPv6 address is bound
/// with IPV6_V6ONLY off, so `::` also accepts IPv4. When `address` is `::` and the kernel has no
/// IPv6 at all (booted with `ipv6.disable=1`), it falls back to `0.0.0.0` and logs that.
pub async fn bind(ip: IpAddr, port: u16) -> Result<TcpListener, ListenerError> {
    let addr = SocketAddr::new(ip, port);
    let bound = match bind_socket(addr) {
        Err(e) if ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED) && no_ipv6(&e) => {
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
            tracing::warn!(error = %e, fallback = %v4, "no IPv6 in this kernel: metrics listen on IPv4 only");
            return bind_socket(v4).map_err(|source| ListenerError::Bind { addr: v4, source });
        }
        other => other,
    };
    bound.map_err(|source| ListenerError::Bind { addr, source })
}

/// The errors a kernel without IPv6 gives for an AF_INET6 socket or a bind of `::`.
fn no_ipv6(e: &std::io::Error) -> bool {
    e.raw_os_error().is_some_and(|code| {
        code == nix::errno::Errno::EAFNOSUPPORT as i32
            || code == nix::errno::Errno::EADDRNOTAVAIL as i32
    })
}

fn bind_socket(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // Linux's default follows net.ipv6.bindv6only; say what we mean.
        socket.set_only_v6(false)?;
    }
    // As tokio's TcpListener::bind: a restarted daemon rebinds at once past TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Serves scrapes until the task is dropped/aborted; a failed connection only ends itself.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&metrics, &req)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}

fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    match metrics.encode() {
        Ok(text) => {
            let mut r = Response::new(Full::new(Bytes::from(text)));
            if let Ok(v) = http::HeaderValue::from_str(CONTENT_TYPE) {
                r.headers_mut().insert(http::header::CONTENT_TYPE, v);
            }
            r
        }
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        ),
    }
}

#[cfg(test)]
mod bind_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_a_kernel_without_ipv6_falls_back() {
        let os = |e: nix::errno::Errno| std::io::Error::from_raw_os_error(e as i32);
        assert!(no_ipv6(&os(nix::errno::Errno::EAFNOSUPPORT)));
        assert!(no_ipv6(&os(nix::errno::Errno::EADDRNOTAVAIL)));
        // A port in use or a permission problem is reported, not hidden by an IPv4 fallback.
        assert!(!no_ipv6(&os(nix::errno::Errno::EADDRINUSE)));
        assert!(!no_ipv6(&os(nix::errno::Errno::EACCES)));
    }
}
