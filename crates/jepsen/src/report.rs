//! `report.html`: a timeline of operations per client with the fault windows shaded, and a
//! latency-over-time plot. Self-contained SVG, no scripts.
//!
//! Its size is bounded whatever the run's length: up to [`DETAIL_LIMIT`] operations each one is
//! drawn (with its own tooltip); beyond, operations are drawn per pixel column instead, one mark
//! per client lane (coloured by the worst outcome in it: unknown, then failed, then ok; the tooltip
//! counts them) and, on the latency plot, the median and the maximum per kind. Fault windows,
//! cluster events and every operation the checker could not order are always in full. The raw
//! history (`history.jsonl`) keeps everything.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::history::{Event, EventType, Process};
use crate::run::{RunResults, lane};

const WIDTH: f64 = 1200.0;
const LANE: f64 = 12.0;
const PLOT_HEIGHT: f64 = 260.0;
/// Runs with more operations than this are drawn per pixel column.
pub const DETAIL_LIMIT: usize = 5_000;
/// Pixel columns of the aggregated drawing.
const COLUMNS: usize = WIDTH as usize;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Writes the report for a finished run.
pub fn write_html(path: &Path, events: &[Event], results: &RunResults) -> std::io::Result<()> {
    let setting = |name: &str| results.settings.get(name).and_then(|c| c.parse::<u64>().ok());
    let slots: u64 = setting("concurrency").unwrap_or(10) + setting("readers").unwrap_or(0);
    let end = events.iter().map(|e| e.time).max().unwrap_or(1).max(1) as f64;
    let x = |t: u64| t as f64 / end * WIDTH;

    // Pair operations.
    let mut pending: HashMap<u64, &Event> = HashMap::new();
    let mut ops: Vec<(&Event, Option<&Event>)> = Vec::new();
    for e in events.iter().filter(|e| e.is_client()) {
        let Process::Client(p) = e.process else { continue };
        if e.kind == EventType::Invoke {
            pending.insert(p, e);
        } else if let Some(inv) = pending.remove(&p) {
            ops.push((inv, Some(e)));
        }
    }
    ops.extend(pending.into_values().map(|inv| (inv, None)));

    let lanes = slots + 1;
    let timeline_height = lanes as f64 * LANE + 20.0;
    let mut timeline = String::new();
    for w in &results.faults {
        let _ = write!(
            timeline,
            r##"<rect x="{:.1}" y="0" width="{:.1}" height="{timeline_height}" fill="#9575cd" opacity="0.18"><title>{} {}</title></rect><text x="{:.1}" y="{:.1}" font-size="9" fill="#5e35b1">{}</text>"##,
            x(w.start),
            (x(w.end) - x(w.start)).max(1.0),
            escape(&w.fault),
            escape(&w.value),
            x(w.start) + 2.0,
            timeline_height - 4.0,
            escape(&format!("{} {}", w.fault, w.value)),
        );
    }
    for mark in &results.cluster_events {
        let _ = write!(
            timeline,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="0" y2="{timeline_height}" stroke="#00897b" stroke-width="1.5"><title>{1}: {2}</title></line><text x="{3:.1}" y="10" font-size="9" fill="#00695c">{1}</text>"##,
            x(mark.time),
            escape(&mark.kind),
            escape(&mark.message),
            x(mark.time) + 2.0,
        );
    }
    let detailed = ops.len() <= DETAIL_LIMIT;
    if !detailed {
        timeline.push_str(&aggregated_timeline(&ops, slots, end));
    }
    for (inv, done) in ops.iter().filter(|_| detailed) {
        let Some(l) = lane(&inv.process, slots) else { continue };
        let (color, end_t, outcome) = match done.map(|d| d.kind) {
            Some(EventType::Ok) => ("#43a047", done.map_or(inv.time, |d| d.time), "ok"),
            Some(EventType::Fail) => ("#e53935", done.map_or(inv.time, |d| d.time), "fail"),
            _ => ("#fb8c00", done.map_or(end as u64, |d| d.time), "info"),
        };
        let value = done.map_or(&inv.value, |d| if inv.f == "read" { &d.value } else { &inv.value });
        let _ = write!(
            timeline,
            r#"<rect x="{:.2}" y="{:.1}" width="{:.2}" height="{:.1}" fill="{color}"><title>{} {} {} {} → {outcome}</title></rect>"#,
            x(inv.time),
            l as f64 * LANE + 1.0,
            (x(end_t) - x(inv.time)).max(0.6),
            LANE - 2.0,
            escape(&format!("{:?}", inv.process)),
            escape(&inv.f),
            escape(inv.key.as_deref().unwrap_or("")),
            escape(&value.to_string()),
        );
    }

    // Latency over time, log scale from 0.1 ms to 10 s.
    let y = |ms: f64| {
        let l = (ms.max(0.1).log10() + 1.0) / 5.0;
        PLOT_HEIGHT - l.clamp(0.0, 1.0) * PLOT_HEIGHT
    };
    let mut plot = String::new();
    for w in &results.faults {
        let _ = write!(
            plot,
            r##"<rect x="{:.1}" y="0" width="{:.1}" height="{PLOT_HEIGHT}" fill="#9575cd" opacity="0.18"/>"##,
            x(w.start),
            (x(w.end) - x(w.start)).max(1.0)
        );
    }
    for ms in [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0] {
        let _ = write!(
            plot,
            r##"<line x1="0" x2="{WIDTH}" y1="{0:.1}" y2="{0:.1}" stroke="#ddd"/><text x="2" y="{1:.1}" font-size="9">{ms} ms</text>"##,
            y(ms),
            y(ms) - 2.0
        );
    }
    if !detailed {
        plot.push_str(&aggregated_latency(&ops, end, &y));
    }
    for (inv, done) in ops.iter().filter(|_| detailed) {
        let Some(done) = done else { continue };
        let color = kind_color(&inv.f);
        let ms = (done.time.saturating_sub(inv.time)) as f64 / 1e6;
        let _ =
            write!(plot, r#"<circle cx="{:.1}" cy="{:.1}" r="1.3" fill="{color}" opacity="0.6"/>"#, x(inv.time), y(ms));
    }

    let mut counts = String::new();
    for (f, by) in &results.ops {
        let _ = write!(counts, "<tr><td>{}</td>", escape(f));
        for k in ["ok", "fail", "info"] {
            let _ = write!(counts, "<td>{}</td>", by.get(k).copied().unwrap_or(0));
        }
        counts.push_str("</tr>");
    }
    let mut violations = String::new();
    for v in results.check.violations() {
        let _ = write!(violations, "<h3>key {}: these operations cannot be ordered</h3><pre>", escape(&v.key));
        for op in &v.failing {
            let _ = writeln!(violations, "{}", escape(&serde_json::to_string(op).unwrap_or_default()));
        }
        violations.push_str("</pre>");
    }
    if !results.lost_writes.is_empty() {
        let _ = write!(
            violations,
            "<h3>{} acknowledged writes lost (missing from the final read of their key)</h3><pre>",
            results.lost_writes.len()
        );
        for lost in results.lost_writes.iter().take(DETAIL_LIMIT) {
            let _ = writeln!(violations, "{}", escape(&serde_json::to_string(lost).unwrap_or_default()));
        }
        violations.push_str("</pre>");
    }
    let html = format!(
        r##"<!doctype html><html><head><meta charset="utf-8"><title>raftkv-jepsen: {verdict}</title>
<style>body{{font-family:sans-serif;margin:20px}} td,th{{padding:2px 10px;text-align:right}} svg{{border:1px solid #ccc}}</style></head><body>
<h1>raftkv-jepsen: {verdict}</h1><p>{summary}</p><p>network: {network}; settings: {settings}</p>
<table><tr><th>f</th><th>ok</th><th>fail</th><th>info</th></tr>{counts}</table>
{violations}
<h2>Operations per client (green ok, red fail, orange unknown; faults shaded)</h2>
<svg width="{WIDTH}" height="{timeline_height}" xmlns="http://www.w3.org/2000/svg">{timeline}</svg>
<h2>Latency over time (blue read, green write, purple cas)</h2>
<svg width="{WIDTH}" height="{PLOT_HEIGHT}" xmlns="http://www.w3.org/2000/svg">{plot}</svg>
</body></html>"##,
        verdict = results.check.verdict,
        summary = escape(&results.summary),
        network = escape(&results.network),
        settings = escape(&format!("{:?}", results.settings)),
    );
    std::fs::write(path, html)
}

/// The colour of an operation kind on the latency plot.
fn kind_color(f: &str) -> &'static str {
    match f {
        "read" => "#1e88e5",
        "write" => "#43a047",
        _ => "#8e24aa",
    }
}

/// The pixel column of time `t` in a run that ended at `end`.
fn column(t: u64, end: f64) -> usize {
    ((t as f64 / end * WIDTH) as usize).min(COLUMNS - 1)
}

/// The timeline of a large run: per lane and pixel column, one mark coloured by the worst outcome
/// in it, with the counts in its tooltip.
fn aggregated_timeline(ops: &[(&Event, Option<&Event>)], slots: u64, end: f64) -> String {
    // (ok, fail, info) per (lane, column).
    let mut cells: HashMap<(u64, usize), (u64, u64, u64)> = HashMap::new();
    for (inv, done) in ops {
        let Some(l) = lane(&inv.process, slots) else { continue };
        let last = done.map_or(end as u64, |d| d.time);
        for c in column(inv.time, end)..=column(last, end) {
            let cell = cells.entry((l, c)).or_default();
            match done.map(|d| d.kind) {
                Some(EventType::Ok) => cell.0 += 1,
                Some(EventType::Fail) => cell.1 += 1,
                _ => cell.2 += 1,
            }
        }
    }
    let mut out = String::new();
    let mut keys: Vec<_> = cells.keys().copied().collect();
    keys.sort_unstable();
    for (l, c) in keys {
        let (ok, fail, info) = cells[&(l, c)];
        let color = if info > 0 {
            "#fb8c00"
        } else if fail > 0 {
            "#e53935"
        } else {
            "#43a047"
        };
        let _ = write!(
            out,
            r#"<rect x="{c}" y="{:.1}" width="1" height="{:.1}" fill="{color}"><title>{ok} ok, {fail} fail, {info} unknown</title></rect>"#,
            l as f64 * LANE + 1.0,
            LANE - 2.0,
        );
    }
    out
}

/// The latency plot of a large run: per kind and pixel column, the median (dot) and the maximum
/// (tick).
fn aggregated_latency(ops: &[(&Event, Option<&Event>)], end: f64, y: &dyn Fn(f64) -> f64) -> String {
    let mut cells: HashMap<(&str, usize), Vec<f64>> = HashMap::new();
    for (inv, done) in ops {
        let Some(done) = done else { continue };
        let ms = (done.time.saturating_sub(inv.time)) as f64 / 1e6;
        cells.entry((inv.f.as_str(), column(inv.time, end))).or_default().push(ms);
    }
    let mut out = String::new();
    let mut keys: Vec<_> = cells.keys().copied().collect();
    keys.sort_unstable();
    for key in keys {
        let latencies = cells.get_mut(&key).expect("key from the map");
        latencies.sort_by(f64::total_cmp);
        let median = latencies[latencies.len() / 2];
        let max = latencies[latencies.len() - 1];
        let (f, c) = key;
        let color = kind_color(f);
        let _ = write!(
            out,
            r#"<circle cx="{c}" cy="{:.1}" r="1.3" fill="{color}" opacity="0.7"/><rect x="{c}" y="{:.1}" width="1" height="1.5" fill="{color}"><title>{} {f}: median {median:.2} ms, max {max:.2} ms</title></rect>"#,
            y(median),
            y(max),
            latencies.len(),
        );
    }
    out
}
