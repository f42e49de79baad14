//! The bench's OTLP/gRPC trace receiver (the collector's `TraceService`, served by tonic on a
//! loopback port inside the node namespace), and the split of a request's time by span: each
//! span's self time (its duration less its children's), summed by name, so every millisecond of
//! the daemon's time is named and the names add up to the request span.
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};

use crate::netns::Netns;

/// One received span, ids in lower-case hex, times in ns since the epoch.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    pub trace: String,
    pub id: String,
    pub parent: String,
    pub start: u64,
    pub end: u64,
}

impl Span {
    pub fn ms(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let ns = self.end.saturating_sub(self.start) as f64;
        ns / 1e6
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Default, Clone)]
struct Store(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Store {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut out = self
            .0
            .lock()
            .map_err(|_| tonic::Status::internal("store poisoned"))?;
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                out.extend(ss.spans.into_iter().map(|s| Span {
                    name: s.name,
                    trace: hex(&s.trace_id),
                    id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    start: s.start_time_unix_nano,
                    end: s.end_time_unix_nano,
                }));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The receiver; stops with its runtime on drop.
pub struct Receiver {
    pub port: u16,
    store: Store,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    /// Listens on 127.0.0.1 inside `ns`, where the daemon under test runs.
    pub fn start_in(ns: &Netns) -> Result<Self> {
        let path = ns.path();
        let listener = std::thread::scope(|s| {
            s.spawn(|| -> Result<std::net::TcpListener> {
                let fd = std::fs::File::open(&path)?;
                nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)?;
                Ok(std::net::TcpListener::bind("127.0.0.1:0")?)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the receiver's bind thread panicked"))
        })??;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let store = Store::default();
        let service = TraceServiceServer::new(store.clone());
        let listener = {
            let _enter = runtime.enter();
            tokio::net::TcpListener::from_std(listener).context("receiver listener")?
        };
        runtime.spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
            {
                eprintln!("bench OTLP receiver stopped: {e}");
            }
        });
        Ok(Self {
            port,
            store,
            _runtime: runtime,
        })
    }

    pub fn spans(&self) -> Vec<Span> {
        self.store.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Self time by span name within one trace under the span named `root` (which is included
/// under its own name); `None` while that root has not arrived.
pub fn self_times(spans: &[Span], trace: &str, root: &str) -> Option<(f64, BTreeMap<String, f64>)> {
    let mine: Vec<&Span> = spans.iter().filter(|s| s.trace == trace).collect();
    let top = mine.iter().find(|s| s.name == root)?;
    let mut out = BTreeMap::new();
    let mut stack = vec![*top];
    while let Some(s) = stack.pop() {
        let children: Vec<&Span> = mine.iter().copied().filter(|c| c.parent == s.id).collect();
        let inner: f64 = children.iter().map(|c| c.ms()).sum();
        *out.entry(s.name.clone()).or_insert(0.0) += (s.ms() - inner).max(0.0);
        stack.extend(children);
    }
    Some((top.ms(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(name: &str, id: &str, parent: &str, start: u64, end: u64) -> Span {
        Span {
            name: name.into(),
            trace: "t".into(),
            id: id.into(),
            parent: parent.into(),
            start: start * 1_000_000,
            end: end * 1_000_000,
        }
    }

    #[test]
    fn self_times_add_up_to_the_root() {
        let spans = [
            span("CNI ADD", "r", "p", 0, 10),
            span("delegate", "d1", "r", 1, 5),
            span("plugin_exec", "e1", "d1", 1, 4),
            span("delegate", "d2", "r", 5, 9),
            span("plugin_exec", "e2", "d2", 5, 8),
            span("cache.write", "c", "r", 9, 10),
        ];
        let (total, by) = self_times(&spans, "t", "CNI ADD").unwrap();
        assert!((total - 10.0).abs() < 1e-9);
        assert!((by.values().sum::<f64>() - 10.0).abs() < 1e-9, "{by:?}");
        assert!((by["plugin_exec"] - 6.0).abs() < 1e-9);
        assert!((by["delegate"] - 2.0).abs() < 1e-9);
        assert!((by["CNI ADD"] - 1.0).abs() < 1e-9);
        assert!(self_times(&spans, "other", "CNI ADD").is_none());
    }
}
