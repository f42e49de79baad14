//! The split of a request's time by span, from what the bench's OTLP receiver
//! ([`crate::otlp::Receiver`]) got: each span's self time (its duration less its children's),
//! summed by name, so every millisecond of the daemon's time is named and the names add up to
//! the request span.
use std::collections::BTreeMap;

pub use crate::otlp::{Receiver, Span};

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
            ..Span::default()
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
