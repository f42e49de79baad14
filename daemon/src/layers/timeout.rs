//! Timeout: the one deadline of a CNI request, per verb from `requestTimeouts`, shortened to the
//! client's `grpc-timeout` when that is sooner. On expiry the inner future is dropped and the
//! client gets CNI code 11: dropping kills running delegates (`kill_on_drop`), and the service
//! runs ADD in a task that rolls back when its request is dropped. Innermost, so the deadline
//! bounds the work only and the trace layer still sees (and records) the code 11.
//!
//! tonic keeps its own `grpc-timeout` guard outside every user layer; this deadline ends a
//! margin before the client's, so the client gets the CNI error and that guard never fires.
use std::task::{Context, Poll};
use std::time::Duration;

use multus_common::{Command, code};
use tower::{Layer, Service};

use super::BoxFuture;
use crate::config::{Config, RequestTimeouts};
use crate::engine::CniCode;

/// The most an answer is moved ahead of the client's deadline.
const MAX_MARGIN: Duration = Duration::from_millis(250);

/// Per-verb request deadlines.
#[derive(Debug, Clone, PartialEq)]
pub struct Deadlines {
    timeouts: RequestTimeouts,
}

impl Deadlines {
    pub fn new(timeouts: RequestTimeouts) -> Self {
        Self { timeouts }
    }

    pub fn from_config(config: &Config) -> Self {
        Self::new(config.request_timeouts.clone())
    }

    /// The configured deadline of `verb` (VERSION never reaches the daemon).
    fn configured(&self, verb: Command) -> Option<Duration> {
        let t = &self.timeouts;
        let secs = match verb {
            Command::Add => t.add,
            Command::Del => t.del,
            Command::Check => t.check,
            Command::Status => t.status,
            Command::Gc => t.gc,
            Command::Version => return None,
        };
        Some(Duration::from_secs(secs.max(1)))
    }

    /// The deadline for `verb` given the client's `grpc-timeout`, if any.
    pub fn effective(&self, verb: Command, client: Option<Duration>) -> Option<Duration> {
        let configured = self.configured(verb)?;
        let Some(client) = client else {
            return Some(configured);
        };
        let ahead = client.saturating_sub((client / 10).min(MAX_MARGIN));
        Some(configured.min(ahead))
    }
}

/// `grpc-timeout` as the gRPC spec writes it: up to 8 digits and a unit (H M S m u n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 || !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A request's deadline passed: CNI code 11, so the runtime retries.
#[derive(Debug, thiserror::Error)]
#[error("{verb} did not finish within its deadline of {} ms; its delegates were stopped{}",
    .after.as_millis(), if *.verb == Command::Add { " and are rolled back" } else { "" })]
pub struct Expired {
    pub verb: Command,
    pub after: Duration,
}

impl CniCode for Expired {
    fn cni_code(&self) -> u32 {
        code::TRY_AGAIN_LATER
    }
}

/// The status a request gets when its deadline passes (gRPC DEADLINE_EXCEEDED).
pub fn expired(verb: Command, after: Duration) -> tonic::Status {
    crate::service::status_with(&Expired { verb, after }, tonic::Code::DeadlineExceeded)
}

/// Wraps a service with [`Timeout`].
#[derive(Debug, Clone)]
pub struct TimeoutLayer {
    deadlines: Deadlines,
}

impl TimeoutLayer {
    pub fn new(deadlines: Deadlines) -> Self {
        Self { deadlines }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            deadlines: self.deadlines.clone(),
        }
    }
}

// === impl Timeout ===

/// Bounds each CNI request by its verb's deadline; health and reflection are not bounded.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    deadlines: Deadlines,
}

impl<S, B, R> Service<http::Request<B>> for Timeout<S>
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
        let Some(verb) = super::verb(req.uri().path()) else {
            return Box::pin(self.inner.call(req));
        };
        let client = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let Some(after) = self.deadlines.effective(verb, client) else {
            return Box::pin(self.inner.call(req));
        };
        let work = self.inner.call(req);
        Box::pin(async move {
            match tokio::time::timeout(after, work).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(cni.command = %verb, deadline_ms = after.as_millis() as u64,
                        client_timeout_ms = client.map(|c| c.as_millis() as u64), "request deadline passed");
                    Ok(expired(verb, after).into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use multus_common::CniError;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn grpc_timeout_values() {
        let cases = [
            ("5S", Some(S(5))),
            ("1500m", Some(MS(1500))),
            ("2M", Some(S(120))),
            ("1H", Some(S(3600))),
            ("7u", Some(Duration::from_micros(7))),
            ("12345678n", Some(Duration::from_nanos(12_345_678))),
            ("123456789S", None),
            ("5", None),
            ("S", None),
            ("5s", None),
            ("-5S", None),
        ];
        for (v, want) in cases {
            assert_eq!(parse_grpc_timeout(v), want, "{v}");
        }
    }

    #[test]
    fn the_sooner_deadline_wins_and_answers_ahead_of_the_client() {
        let d = Deadlines::new(RequestTimeouts {
            add: 60,
            del: 60,
            check: 30,
            status: 10,
            gc: 60,
        });
        let cases = [
            (Command::Add, None, Some(S(60))),
            (Command::Status, None, Some(S(10))),
            (Command::Add, Some(S(120)), Some(S(60))),
            (Command::Add, Some(S(5)), Some(MS(4750))),
            (Command::Del, Some(MS(1000)), Some(MS(900))),
            (Command::Version, None, None),
        ];
        for (verb, client, want) in cases {
            assert_eq!(d.effective(verb, client), want, "{verb} {client:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_answers_code_11_and_drops_the_work() {
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct OnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let flag = dropped.clone();
        let inner = tower::service_fn(move |_req: http::Request<()>| {
            let guard = OnDrop(flag.clone());
            async move {
                tokio::time::sleep(S(3600)).await;
                drop(guard);
                Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
            }
        });
        let timeouts = RequestTimeouts {
            add: 2,
            ..RequestTimeouts::default()
        };
        let mut svc = TimeoutLayer::new(Deadlines::new(timeouts)).layer(inner);
        let req = http::Request::builder()
            .uri("/multus.cni.v1.Cni/Add")
            .header("grpc-timeout", "10S")
            .body(())
            .unwrap();
        let resp = svc.call(req).await.unwrap();
        let status = tonic::Status::from_header_map(resp.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        let cni = CniError::from_wire(status.details()).unwrap();
        assert_eq!(cni.code, code::TRY_AGAIN_LATER);
        assert!(cni.msg.contains("2000 ms"), "{}", cni.msg);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    }
}
