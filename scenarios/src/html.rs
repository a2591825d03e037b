//! The HTML report of a compare: the guarantee matrix in colour, and for each variant whose
//! runs broke a property a timeline of its smallest failing seed, re-run (runs are
//! deterministic, so the page shows exactly the run the matrix counted):
//! - the anomaly's explanation ([`sim::explain`]) and a sequence diagram (SVG) of its message
//!   between hosts, one lifeline per host (every host the explanation names among them),
//!   events in order, faults shaded on the hosts they hit;
//! - per-queue charts over simulated time: depth, in flight and redeliveries (what nsqadmin
//!   shows for a live cluster), from the `gauge` events the model recorded and from the
//!   history itself, with the fault periods shaded.
//!
//! Everything is drawn from the recorded history; the page has no script and no external
//! resource, so it renders the same anywhere and diffs as text.

use crate::compare::{Matrix, Row};
use crate::Loaded;
use sim::checker::Anomaly;
use sim::explain::{ms, Explainer, Explanation};
use sim::history::{Event, EventKind, MsgId};
use sim::promise::Kept;
use sim::verdict::Property;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Events a sequence diagram shows at most (the anomaly's message, faults and notes near it).
const DIAGRAM_EVENTS_MAX: usize = 60;
/// Faults after the message's last event that its diagram still shows.
const FAULTS_AFTER: usize = 3;
const LANE_WIDTH: usize = 130;
const ROW_HEIGHT: usize = 22;
const CHART_WIDTH: usize = 900;
const CHART_HEIGHT: usize = 120;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The run a row's timeline shows: its smallest seed that broke the promise, else that fell
/// outside it, else that violated anything other than ordering. Rows whose only violations
/// are ordering (which NSQ never promises) get no timeline.
fn chosen(row: &Row) -> Option<(u64, &'static str)> {
    if let Some(seed) = row.kept.smallest_broken_seed {
        return Some((seed, "promise broken"));
    }
    let smallest = |properties: &mut dyn Iterator<Item = &String>| {
        properties
            .filter_map(|p| row.cells.get(p).and_then(|c| c.smallest_seed))
            .min()
    };
    if row.kept.outside > 0 {
        if let Some(seed) = smallest(&mut row.variant.promised.iter()) {
            return Some((seed, "outside the promise"));
        }
    }
    let all: Vec<String> = row
        .cells
        .keys()
        .filter(|p| !p.starts_with("ordered"))
        .cloned()
        .collect();
    smallest(&mut all.iter()).map(|seed| (seed, "violated, not promised"))
}

/// The page. Re-runs each chosen seed from the variant's scenario file (its path taken
/// relative to `root`).
pub fn report(matrix: &Matrix, root: &std::path::Path) -> Result<String, String> {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>jetsam guarantee matrix, seeds {}..{}</title>\n<style>{}</style></head><body>\n",
        matrix.seeds.0, matrix.seeds.1, STYLE
    );
    let _ = write!(
        page,
        "<h1>Guarantee matrix, seeds {}..{}</h1>\n<p class=\"legend\"><span class=\"held\">held</span> \
         <span class=\"outside\">violated in a documented window (outside the promise)</span> \
         <span class=\"broken\">promise broken</span> <span class=\"unpromised\">violated, never \
         promised</span>. Each cell: seeds held or violated, the smallest violating seed, and the \
         anomaly kinds. Columns are explained in reports/README.md.</p>\n",
        matrix.seeds.0, matrix.seeds.1
    );
    page.push_str(&matrix_table(matrix));
    for (index, row) in matrix.rows.iter().enumerate() {
        let Some((seed, why)) = chosen(row) else {
            continue;
        };
        let full = root.join(&row.variant.path);
        let mut loaded = Loaded::load(&full.to_string_lossy())
            .map_err(|e| format!("the HTML report re-runs each failing seed: {e}"))?;
        loaded.scenario.path = row.variant.path.clone();
        page.push_str(&timeline_section(index, row, &loaded, seed, why));
    }
    page.push_str("</body></html>\n");
    Ok(page)
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table.matrix{border-collapse:collapse;font-size:12px}\
table.matrix td,table.matrix th{border:1px solid #bbb;padding:4px;vertical-align:top}\
table.matrix th{background:#eee}\
.held{background:#d9f2d9}.outside{background:#ffe5b4}.broken{background:#f4a6a6;font-weight:bold}\
.unpromised{background:#eeeeee}.legend span{padding:2px 6px;margin-right:4px}\
section.timeline{margin-top:2em;border-top:2px solid #888}\
svg text{font-family:monospace;font-size:11px}\
.fault{fill:#e06666;opacity:0.3}.chart .fault{opacity:0.12}.lane{stroke:#999;stroke-dasharray:4 3}\
.arrow{stroke:#1f4e9c;stroke-width:1.5;fill:none}.dot{fill:#1f4e9c}.anomaly{fill:#c00}\
.note{fill:#888}.series{fill:none;stroke-width:1.5}\
.explanation{font-size:13px}.explanation ol{margin-top:0}";

fn matrix_table(matrix: &Matrix) -> String {
    let mut out = String::from("<table class=\"matrix\"><tr><th>variant</th><th>promise</th><th>kept</th>");
    for p in &matrix.properties {
        let _ = write!(out, "<th>{}</th>", escape(p));
    }
    out.push_str("</tr>\n");
    for (index, row) in matrix.rows.iter().enumerate() {
        let kept_class = if row.kept.broken > 0 {
            "broken"
        } else if row.kept.outside > 0 {
            "outside"
        } else {
            "held"
        };
        let link = if chosen(row).is_some() {
            format!(" <a href=\"#timeline-{index}\">timeline</a>")
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<tr><td>{}<br><code>{}</code>{link}</td><td>{}</td><td class=\"{kept_class}\">{}</td>",
            escape(&row.variant.scenario),
            escape(&row.variant.path),
            escape(&row.variant.promise),
            escape(&row.kept.text().replace("**", ""))
        );
        for p in &matrix.properties {
            let promised = row.variant.promised.contains(p);
            let (class, text) = match row.cells.get(p) {
                None => ("unpromised", "-".to_string()),
                Some(cell) if cell.violated == 0 => ("held", cell.text()),
                Some(cell) if !promised => ("unpromised", cell.text().replace("**", "")),
                Some(cell) if row.kept.broken > 0 => ("broken", cell.text().replace("**", "")),
                Some(cell) => ("outside", cell.text().replace("**", "")),
            };
            let mark = if promised { " (promised)" } else { "" };
            let _ = write!(out, "<td class=\"{class}\">{}{mark}</td>", escape(&text));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

fn timeline_section(index: usize, row: &Row, loaded: &Loaded, seed: u64, why: &str) -> String {
    let outcome = loaded.run(seed);
    let promised: Vec<Property> = row
        .variant
        .promised
        .iter()
        .filter_map(|p| Property::parse(p))
        .collect();
    // The anomaly to show: one breaking a promised property, else any but a reorder, else any.
    let violated: Vec<_> = outcome.verdicts.properties.iter().filter(|v| !v.holds).collect();
    let anomaly: Option<&Anomaly> = violated
        .iter()
        .filter(|v| promised.contains(&v.property))
        .chain(
            violated
                .iter()
                .filter(|v| !matches!(v.property, Property::Ordered(_))),
        )
        .chain(violated.iter())
        .flat_map(|v| v.safety.iter().chain(&v.liveness))
        .next();
    let mut out = String::new();
    let _ = write!(
        out,
        "<section class=\"timeline\" id=\"timeline-{index}\"><h2>{}: seed {seed} ({why})</h2>\n\
         <p><code>jetsam replay {} --seed {seed}</code></p>\n",
        escape(&row.variant.scenario),
        escape(&row.variant.path)
    );
    let kept = match &outcome.kept {
        Kept::Held => "held".to_string(),
        other => crate::report::kept_line(other),
    };
    let _ = writeln!(
        out,
        "<p>promise: {}<br>{}</p>",
        escape(&outcome.promise.text),
        escape(&kept)
    );
    if let Some(anomaly) = anomaly {
        let _ = writeln!(
            out,
            "<p class=\"anomaly-line\">{}</p>",
            escape(&anomaly.to_string())
        );
        let explanation = Explainer::new(&outcome.history).explain(anomaly);
        out.push_str(&explanation_list(&explanation));
        out.push_str(&sequence_diagram(outcome.history.events(), anomaly, &explanation));
    }
    out.push_str(&charts(outcome.history.events()));
    out.push_str("</section>\n");
    out
}

/// The anomaly's explanation beside its diagram: the summary, then each step.
fn explanation_list(explanation: &Explanation) -> String {
    let mut out = format!(
        "<div class=\"explanation\"><p><b>Why:</b> {}</p>\n<ol>\n",
        escape(&explanation.summary)
    );
    for step in &explanation.steps {
        let _ = writeln!(
            out,
            "<li><code>{}</code> {} {}</li>",
            ms(step.t_us),
            if step.host.is_empty() {
                String::new()
            } else {
                format!("<b>{}</b>", escape(&step.host))
            },
            escape(&step.text)
        );
    }
    out.push_str("</ol></div>\n");
    out
}

/// Which fault action ends which: a shaded period runs from the first to the second.
fn ends(start: &str, end: &str) -> bool {
    matches!(
        (start, end),
        ("kill" | "power_fail" | "stop", "restart")
            | ("pause", "resume")
            | ("partition", "heal")
            | ("lose_replies", "lose_replies_end")
            | ("latency", "latency_end" | "heal")
    )
}

/// Fault periods: (action, host, start, end) in microseconds.
fn fault_periods(events: &[Event]) -> Vec<(String, String, u64, u64)> {
    let end_of_run = events.last().map_or(0, |e| e.time.0);
    let mut open: Vec<(String, String, u64)> = Vec::new();
    let mut periods = Vec::new();
    for event in events {
        let EventKind::Fault { action, hosts, .. } = &event.kind else {
            continue;
        };
        let mut still = Vec::new();
        for (a, host, start) in open.drain(..) {
            let healed = ends(&a, action) && (action == "heal" || hosts.contains(&host));
            if healed {
                periods.push((a, host, start, event.time.0));
            } else {
                still.push((a, host, start));
            }
        }
        open = still;
        let is_start = [
            "kill",
            "power_fail",
            "stop",
            "pause",
            "partition",
            "lose_replies",
            "latency",
        ]
        .contains(&action.as_str());
        if is_start {
            for host in hosts {
                open.push((action.to_string(), host.clone(), event.time.0));
            }
        }
    }
    periods.extend(open.into_iter().map(|(a, h, s)| (a, h, s, end_of_run)));
    periods
}

/// The lifeline an event belongs on: the producer or consumer it names (several may share a
/// host, as go-channel's goroutines do), else the host that recorded it. A publish's outcome
/// goes on its producer's lifeline.
fn actor(event: &Event, producers: &BTreeMap<MsgId, String>) -> String {
    match &event.kind {
        EventKind::Publish { producer, .. } => producer.to_string(),
        EventKind::PublishOk { id, .. }
        | EventKind::PublishFail { id, .. }
        | EventKind::PublishInfo { id, .. } => producers
            .get(id)
            .cloned()
            .unwrap_or_else(|| event.host.to_string()),
        EventKind::Deliver { consumer, .. }
        | EventKind::Ack { consumer, .. }
        | EventKind::Effect { consumer, .. } => consumer.to_string(),
        EventKind::Fault { hosts, .. } if !hosts.is_empty() => hosts[0].clone(),
        _ => event.host.to_string(),
    }
}

fn label(kind: &EventKind) -> String {
    match kind {
        EventKind::Publish { id, .. } => format!("publish {id}"),
        EventKind::PublishOk { id, .. } => format!("publish {id}: ok"),
        EventKind::PublishFail { id, .. } => format!("publish {id}: fail"),
        EventKind::PublishInfo { id, .. } => format!("publish {id}: unknown"),
        EventKind::Deliver { id, attempt, .. } => format!("deliver {id} #{attempt}"),
        EventKind::Effect { id, .. } => format!("effect {id}"),
        EventKind::Write { id, parts, .. } => format!("write {id}: {}", parts.join("+")),
        EventKind::Ack { id, .. } => format!("ack {id}"),
        EventKind::Fault { action, .. } => format!("FAULT {action}"),
        EventKind::Note { name, .. } => name.to_string(),
        EventKind::Crash { .. } => "CRASH".into(),
        _ => String::new(),
    }
}

/// The anomaly's message between hosts: its events in order, one row each, on the lifeline
/// of the host that recorded them, joined by arrows; faults in the same span shaded on their
/// hosts' lifelines.
fn sequence_diagram(events: &[Event], anomaly: &Anomaly, explanation: &Explanation) -> String {
    let focus = anomaly.id;
    let invariant = anomaly.kind == sim::checker::invariant::INVARIANT;
    let mine = |e: &Event| {
        if invariant {
            matches!(e.kind, EventKind::Observe { .. })
        } else {
            e.kind.msg_id() == Some(focus)
        }
    };
    let first = events.iter().position(mine);
    let last = events.iter().rposition(mine);
    // The span: the message's first to last event, widened to the anomaly's witness times.
    let witness = anomaly.times.iter().map(|t| t.0);
    let from = first
        .map(|i| events[i].time.0)
        .into_iter()
        .chain(witness.clone())
        .min()
        .unwrap_or(0);
    let to = last
        .map(|i| events[i].time.0)
        .into_iter()
        .chain(witness)
        .max()
        .unwrap_or(from);
    // What happened next matters too (the kill after a delivery): the span runs on to the
    // next few faults after the message's last event.
    let to = events
        .iter()
        .filter(|e| e.time.0 > to && matches!(e.kind, EventKind::Fault { .. }))
        .take(FAULTS_AFTER)
        .last()
        .map_or(to, |e| e.time.0);
    // The events the explanation cites are always shown (so every host it names has a
    // lifeline); the rest fill the diagram up to its bound.
    let cited: BTreeSet<usize> = explanation.steps.iter().filter_map(|s| s.event).collect();
    let mut room = DIAGRAM_EVENTS_MAX.saturating_sub(cited.len());
    let shown: Vec<&Event> = events
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            if cited.contains(i) {
                return true;
            }
            let wanted = e.time.0 >= from
                && e.time.0 <= to
                && (mine(e) || matches!(e.kind, EventKind::Fault { .. } | EventKind::Crash { .. }));
            if wanted && room > 0 {
                room -= 1;
                return true;
            }
            false
        })
        .map(|(_, e)| e)
        .collect();
    let producers: BTreeMap<MsgId, String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Publish { id, producer, .. } => Some((*id, producer.to_string())),
            _ => None,
        })
        .collect();
    // A delivery that names the host it came from (NSQ: the nsqd) passes through that
    // host's lifeline on its way to the consumer.
    let known: BTreeSet<&str> = events.iter().map(|e| e.host.as_str()).collect();
    let source = |event: &Event| match &event.kind {
        EventKind::Deliver { node: Some(from), .. } if known.contains(from.as_str()) => {
            Some(from.to_string())
        }
        _ => None,
    };
    let mut hosts: Vec<String> = Vec::new();
    for event in &shown {
        let names: Vec<String> = match &event.kind {
            EventKind::Fault { hosts, .. } => hosts.clone(),
            _ => source(event)
                .into_iter()
                .chain([actor(event, &producers)])
                .collect(),
        };
        for name in names {
            if !hosts.contains(&name) {
                hosts.push(name);
            }
        }
    }
    for host in explanation.hosts(events) {
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    let lane = |host: &str| hosts.iter().position(|h| h == host).unwrap_or(0);
    let left = 110;
    let x = |host: &str| left + lane(host) * LANE_WIDTH + LANE_WIDTH / 2;
    let top = 30;
    let y = |row: usize| top + row * ROW_HEIGHT + ROW_HEIGHT / 2;
    let width = left + hosts.len().max(1) * LANE_WIDTH + 260;
    let height = top + shown.len().max(1) * ROW_HEIGHT + 10;
    let mut svg = format!(
        "<svg class=\"sequence\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\">\n"
    );
    // Fault periods overlapping the span, shaded over the rows they cover.
    let row_of = |t: u64| shown.iter().position(|e| e.time.0 >= t).unwrap_or(shown.len());
    for (action, host, start, end) in fault_periods(events) {
        if end < from || start > to || !hosts.contains(&host) {
            continue;
        }
        let (r0, r1) = (
            row_of(start.max(from)),
            row_of(end.min(to) + 1).max(row_of(start.max(from)) + 1),
        );
        let _ = writeln!(
            svg,
            "<rect class=\"fault\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{action} {host}</title></rect>",
            left + lane(&host) * LANE_WIDTH + 8,
            top + r0 * ROW_HEIGHT,
            LANE_WIDTH - 16,
            (r1 - r0) * ROW_HEIGHT
        );
    }
    for host in &hosts {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"16\" text-anchor=\"middle\">{}</text><line class=\"lane\" x1=\"{x0}\" y1=\"{top}\" x2=\"{x0}\" y2=\"{height}\"/>",
            x(host),
            escape(host),
            x0 = x(host)
        );
    }
    let mut previous: Option<(usize, usize)> = None;
    for (row, event) in shown.iter().enumerate() {
        let (cx, cy) = (x(&actor(event, &producers)), y(row));
        let _ = writeln!(
            svg,
            "<text x=\"4\" y=\"{}\">{:.3} ms</text>",
            cy + 4,
            event.time.0 as f64 / 1000.0
        );
        if mine(event) {
            if let Some((px, py)) = previous {
                let via = source(event)
                    .map(|from| format!(" L{},{}", x(&from), cy - ROW_HEIGHT / 2))
                    .unwrap_or_default();
                if px != cx || !via.is_empty() {
                    let _ = writeln!(
                        svg,
                        "<path class=\"arrow\" d=\"M{px},{py}{via} L{cx},{cy}\" marker-end=\"url(#head)\"/>"
                    );
                }
            }
            previous = Some((cx, cy));
        }
        let witness = anomaly.times.iter().any(|t| t.0 == event.time.0) && mine(event);
        let class = if witness {
            "anomaly"
        } else if mine(event) {
            "dot"
        } else {
            "note"
        };
        let _ = writeln!(
            svg,
            "<circle class=\"{class}\" cx=\"{cx}\" cy=\"{cy}\" r=\"4\"/><text x=\"{}\" y=\"{}\">{}</text>",
            cx + 7,
            cy + 4,
            escape(&label(&event.kind))
        );
    }
    svg.push_str(
        "<defs><marker id=\"head\" markerWidth=\"8\" markerHeight=\"8\" refX=\"7\" refY=\"4\" orient=\"auto\">\
         <path d=\"M0,0 L8,4 L0,8 z\" fill=\"#1f4e9c\"/></marker></defs>\n</svg>\n",
    );
    svg
}

/// Series over simulated time: per (chart, line) the points (time in µs, value).
type Series = BTreeMap<String, BTreeMap<String, Vec<(u64, i64)>>>;

/// The queue charts: for each gauge kind (depth, in flight, deferred, requeued, timed out)
/// one chart with a line per host and queue; plus, from the history, messages acknowledged
/// to producers but not yet processed, and cumulative redeliveries.
fn charts(events: &[Event]) -> String {
    let mut series: Series = BTreeMap::new();
    let (mut outstanding, mut redelivered) = (0i64, 0i64);
    let mut processed: BTreeSet<MsgId> = BTreeSet::new();
    for event in events {
        let t = event.time.0;
        match &event.kind {
            EventKind::Gauge { name, value } => {
                let (queue, metric) = name.rsplit_once(' ').unwrap_or((name.as_str(), "value"));
                series
                    .entry(metric.to_string())
                    .or_default()
                    .entry(format!("{} {queue}", event.host))
                    .or_default()
                    .push((t, *value));
            }
            EventKind::PublishOk { .. } => {
                outstanding += 1;
                push(&mut series, "not yet processed", "all", t, outstanding);
            }
            EventKind::Effect { id, .. } if processed.insert(*id) => {
                outstanding -= 1;
                push(&mut series, "not yet processed", "all", t, outstanding);
            }
            EventKind::Deliver { attempt, .. } if *attempt > 1 => {
                redelivered += 1;
                push(&mut series, "redeliveries", "all", t, redelivered);
            }
            _ => {}
        }
    }
    let end = events.last().map_or(1, |e| e.time.0.max(1));
    let periods = fault_periods(events);
    let mut out = String::from("<div class=\"charts\">\n");
    for (metric, lines) in &series {
        out.push_str(&chart(metric, lines, end, &periods));
    }
    out.push_str("</div>\n");
    out
}

fn push(series: &mut Series, chart: &str, line: &str, t: u64, value: i64) {
    series
        .entry(chart.to_string())
        .or_default()
        .entry(line.to_string())
        .or_default()
        .push((t, value));
}

const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

fn chart(
    metric: &str,
    lines: &BTreeMap<String, Vec<(u64, i64)>>,
    end: u64,
    periods: &[(String, String, u64, u64)],
) -> String {
    let (left, top, w, h) = (50usize, 20usize, CHART_WIDTH, CHART_HEIGHT);
    let max = lines
        .values()
        .flat_map(|points| points.iter().map(|(_, v)| *v))
        .max()
        .unwrap_or(1)
        .max(1);
    let px = |t: u64| left as f64 + t as f64 / end as f64 * w as f64;
    let py = |v: i64| (top + h) as f64 - v as f64 / max as f64 * h as f64;
    let mut svg = format!(
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\">\
         <text x=\"{left}\" y=\"14\">{} (max {max}) over {:.1} s simulated</text>\n",
        left + w + 260,
        top + h + 34,
        escape(metric),
        end as f64 / 1e6
    );
    // Shade the faults on the hosts this chart's lines come from ("all": any host).
    let hosts: BTreeSet<&str> = lines.keys().map(|l| l.split(' ').next().unwrap_or("")).collect();
    for (action, host, start, stop) in periods {
        if !hosts.contains("all") && !hosts.contains(host.as_str()) {
            continue;
        }
        let _ = writeln!(
            svg,
            "<rect class=\"fault\" x=\"{:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{h}\"><title>{action} {host}</title></rect>",
            px(*start),
            (px(*stop) - px(*start)).max(1.0)
        );
    }
    let _ = writeln!(
        svg,
        "<line class=\"lane\" x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
        top + h,
        left + w,
        top + h
    );
    // Simulated-time ticks on the axis, and the value scale on the left.
    for step in 0..=4u64 {
        let t = end * step / 4;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{:.1} s</text>",
            px(t),
            top + h + 14,
            t as f64 / 1e6
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
        left - 4,
        top + 10,
        left - 4,
        top + h
    );
    for (i, (name, points)) in lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        // A step line: each value holds until the next change, then to the end.
        let mut d = String::new();
        let mut last: Option<i64> = None;
        for (t, v) in points {
            match last {
                None => {
                    let _ = write!(d, "M{:.1},{:.1} ", px(*t), py(*v));
                }
                Some(previous) => {
                    let _ = write!(
                        d,
                        "L{:.1},{:.1} L{:.1},{:.1} ",
                        px(*t),
                        py(previous),
                        px(*t),
                        py(*v)
                    );
                }
            }
            last = Some(*v);
        }
        if let Some(v) = last {
            let _ = write!(d, "L{:.1},{:.1}", px(end), py(v));
        }
        let _ = writeln!(
            svg,
            "<path class=\"series\" stroke=\"{colour}\" d=\"{d}\"/><text x=\"{}\" y=\"{}\" fill=\"{colour}\">{}</text>",
            left + w + 8,
            top + 12 + i * 14,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::history::{History, SimTime};

    fn at(t_us: u64, host: &str, kind: EventKind) -> Event {
        Event {
            time: SimTime(t_us),
            host: host.into(),
            kind,
        }
    }

    #[test]
    fn the_sequence_diagram_has_a_lifeline_for_every_host_the_explanation_names() {
        let ok = |id, offset| EventKind::PublishOk {
            id: MsgId(id),
            partition: Some("t-0".into()),
            offset: Some(offset),
        };
        let publish = |id| EventKind::Publish {
            id: MsgId(id),
            producer: "p".into(),
            seq: id,
            key: None,
        };
        let note = EventKind::Note {
            name: "kafka.truncated_to_high_watermark".into(),
            detail: None,
        };
        let read = EventKind::Deliver {
            id: MsgId(2),
            attempt: 1,
            consumer: "c".into(),
            partition: Some("t-0".into()),
            node: None,
            offset: Some(1),
        };
        let history = History::from_events(vec![
            at(10, "p", publish(1)),
            at(20, "p", ok(1, 0)),
            at(30, "p", publish(2)),
            at(40, "p", ok(2, 1)),
            at(50, "broker2", note),
            at(60, "c", read),
        ]);
        let findings = sim::checker::check_all(&history);
        let anomaly = &findings.get(sim::checker::lost_write::LOST_WRITE)[0];
        let explanation = Explainer::new(&history).explain(anomaly);
        assert!(explanation.summary.contains("broker2"), "{explanation:?}");
        let svg = sequence_diagram(history.events(), anomaly, &explanation);
        for host in explanation.hosts(history.events()) {
            assert!(
                svg.contains(&format!(">{host}</text>")),
                "no lifeline for {host}:\n{svg}"
            );
        }
        assert!(explanation_list(&explanation).contains("kafka.truncated_to_high_watermark"));
    }
}
