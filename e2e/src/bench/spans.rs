//! The split of a request's time by span, from what the bench's OTLP receiver
//! ([`crate::otlp::Receiver`]) got: each span's self time (its duration less its children's),
//! summed by name, so every millisecond of the daemon's time is named and the names add up to
//! the request span.
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use super::{
    Bench, check,
    report::{Section, Table},
    stats::{Stats, ms, percentile},
};
pub use crate::otlp::{Receiver, Span};
use crate::{netns::Netns, scenario::Cluster, shim::Invocation};

/// What [`traced_rounds`] measured: each request's trace id, verb and wall time as the runtime
/// saw it (shim exec to exit), and every span the receiver got.
pub struct Traced {
    walls: Vec<(String, &'static str, Duration)>,
    spans: Vec<Span>,
}

/// One untimed warm-up ADD+DEL (`invocation(None, ..)`), then `rounds` timed ADD+DELs
/// (`invocation(Some(i), ..)`), each into a fresh namespace and with its own `TRACEPARENT`;
/// returns once the receiver has the request span of every timed one (at most 15 s).
pub fn traced_rounds(
    b: &Bench,
    receiver: &Receiver,
    cluster: &Cluster,
    rounds: usize,
    invocation: impl Fn(Option<usize>, &Netns) -> Invocation,
) -> Result<Traced> {
    let pod_ns = Netns::new("mrsbp")?;
    let warm = invocation(None, &pod_ns);
    check("warm-up ADD", &warm.run()?, cluster)?;
    check("warm-up DEL", &warm.with_command("DEL").run()?, cluster)?;
    drop(pod_ns);
    let mut walls = Vec::new();
    for i in 0..rounds {
        let pod_ns = Netns::new("mrsbp")?;
        for verb in ["ADD", "DEL"] {
            let trace = format!(
                "{:016x}{:016x}",
                u64::from(std::process::id()) + 1,
                (i as u64) << 1 | u64::from(verb == "DEL")
            );
            let mut inv = invocation(Some(i), &pod_ns).with_command(verb);
            inv.env.push((
                "TRACEPARENT".into(),
                Some(format!("00-{trace}-00f067aa0ba902b7-01")),
            ));
            let start = Instant::now();
            let out = inv.run()?;
            walls.push((trace, verb, start.elapsed()));
            check(verb, &out, cluster)?;
        }
        b.step();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut spans = receiver.spans();
    while walls
        .iter()
        .any(|(t, v, _)| self_times(&spans, t, &format!("CNI {v}")).is_none())
    {
        if Instant::now() > deadline {
            bail!("the daemon's spans did not all reach the receiver in 15 s");
        }
        std::thread::sleep(Duration::from_millis(100));
        spans = receiver.spans();
    }
    Ok(Traced { walls, spans })
}

/// Per verb, a table of each span name's self time per request (mean, median, p99) with the
/// part outside the daemon's request span (shim exec, connect, RPC), and a figure with the sum
/// of all but the delegates' own work.
pub fn split_tables(s: &mut Section, path: &str, short: &str, traced: &Traced) {
    for verb in ["ADD", "DEL"] {
        let root = format!("CNI {verb}");
        let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut n = 0usize;
        for (trace, _, wall) in traced.walls.iter().filter(|(_, v, _)| *v == verb) {
            let Some((total, split)) = self_times(&traced.spans, trace, &root) else {
                continue;
            };
            n += 1;
            by.entry("outside the daemon's span: shim exec, connect, RPC".into())
                .or_default()
                .push(ms(*wall) - total);
            for (name, v) in split {
                let name = if name == root {
                    format!("{root} (self: engine outside child spans)")
                } else {
                    name
                };
                by.entry(name).or_default().push(v);
            }
        }
        let mut rows: Vec<(f64, Vec<String>)> = by
            .iter()
            .map(|(name, v)| {
                let mut v = v.clone();
                v.resize(n, 0.0); // a span absent from a request took 0 ms in it
                let st = Stats::of_ms(&v);
                let mut sorted = v.clone();
                sorted.sort_by(f64::total_cmp);
                (
                    st.mean_ms,
                    vec![
                        name.clone(),
                        format!("{:.3}", st.mean_ms),
                        format!("{:.3}", percentile(&sorted, 0.5)),
                        format!("{:.3}", st.p99_ms),
                    ],
                )
            })
            .collect();
        rows.sort_by(|a, b| b.0.total_cmp(&a.0));
        let overhead: f64 = rows
            .iter()
            .filter(|(_, r)| r[0] != "plugin_exec")
            .map(|(m, _)| m)
            .sum();
        s.figure(
            &format!("{short} {verb}: overhead by spans (mean, all but plugin_exec)"),
            overhead,
            "ms",
        );
        s.tables.push(Table {
            title: format!("{path} {verb}: where the time goes, self time per span name per request ({n} warm requests; plugin_exec is the delegates' own work, every other row is overhead)"),
            header: vec!["span".into(), "mean ms".into(), "median ms".into(), "p99 ms".into()],
            rows: rows.into_iter().map(|(_, r)| r).collect(),
        });
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
