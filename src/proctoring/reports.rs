//! Reports: a printable HTML page per session (identity checks, timeline
//! with snapshots, metric chart, score terms, conclusion) and a CSV export
//! of a host's sessions with filters. Every value from a user is escaped:
//! `html_escape` for HTML, and cells that a spreadsheet would run as a
//! formula are prefixed with `'`.

use super::metrics::Score;
use super::protocol::{Entry, Kind};
use super::sessions::{Session, Status};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use std::fmt::Write as _;

/// Which sessions a CSV export lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Sessions that started (or, never started, were created) at or after this Unix time.
    pub from: Option<u64>,
    /// … and before this one.
    pub to: Option<u64>,
    pub status: Option<Status>,
    pub score_min: Option<f64>,
    pub score_max: Option<f64>,
    /// Every one of these tags.
    pub tags: Vec<String>,
    pub proctor: Option<String>,
}

impl Filter {
    pub fn matches(&self, s: &Session) -> bool {
        let when = s.started_at.unwrap_or(s.created_at);
        self.from.is_none_or(|t| when >= t)
            && self.to.is_none_or(|t| when < t)
            && self.status.is_none_or(|st| s.status == st)
            && self
                .score_min
                .is_none_or(|m| s.score.is_some_and(|x| x >= m))
            && self
                .score_max
                .is_none_or(|m| s.score.is_some_and(|x| x <= m))
            && self.tags.iter().all(|t| s.tags.contains(t))
            && self.proctor.as_ref().is_none_or(|p| s.proctors.contains(p))
    }
}

/// Parses `YYYY-MM-DD` (midnight UTC) or Unix seconds.
pub fn parse_date(value: &str) -> Option<u64> {
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    let mut parts = value.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    u64::try_from(date.midnight().assume_utc().unix_timestamp()).ok()
}

/// RFC 3339 in UTC, or empty.
pub fn rfc3339(secs: Option<u64>) -> String {
    secs.and_then(|s| time::OffsetDateTime::from_unix_timestamp(s as i64).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A cell a spreadsheet will not run as a formula.
fn cell(v: &str) -> String {
    if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_string()
    }
}

pub const CSV_HEADER: &[&str] = &[
    "id",
    "identifier",
    "student",
    "subject",
    "template",
    "status",
    "created_at",
    "started_at",
    "stopped_at",
    "score",
    "review",
    "conclusion",
    "concluded_by",
    "concluded_at",
    "automatic",
    "comment",
    "proctors",
    "tags",
];

/// The CSV of `sessions`, one row each, with [`CSV_HEADER`].
pub fn csv(sessions: &[Session]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_HEADER)?;
    for s in sessions {
        let c = s.conclusion.as_ref();
        let row = [
            s.id.clone(),
            s.identifier.clone().unwrap_or_default(),
            s.student.clone(),
            s.subject.clone(),
            format!("{} v{}", s.template_id, s.template_version),
            s.status.as_str().to_string(),
            rfc3339(Some(s.created_at)),
            rfc3339(s.started_at),
            rfc3339(s.stopped_at),
            s.score.map(|x| x.to_string()).unwrap_or_default(),
            s.review.to_string(),
            c.map(|c| if c.positive { "positive" } else { "negative" })
                .unwrap_or_default()
                .to_string(),
            c.map(|c| c.by.clone()).unwrap_or_default(),
            rfc3339(c.map(|c| c.at)),
            c.map(|c| c.automatic.to_string()).unwrap_or_default(),
            c.map(|c| c.comment.clone()).unwrap_or_default(),
            s.proctors.join(";"),
            s.tags.join(";"),
        ];
        w.write_record(row.iter().map(|v| cell(v)))?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Everything the report page shows.
pub struct ReportData<'a> {
    pub session: &'a Session,
    pub host_title: &'a str,
    /// Oldest first.
    pub entries: &'a [Entry],
    pub score: &'a Score,
    /// Object keys and sizes under the session's prefix.
    pub objects: &'a [(String, u64)],
    /// The protocol chain check: entries verified, or why not.
    pub chain: Result<u64, String>,
    pub generated_at: u64,
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#111}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#eee}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.5em}code{font-size:.9em;word-break:break-all}\
.bad{color:#a00}.ok{color:#060}@media print{body{margin:0}h2{break-after:avoid}tr{break-inside:avoid}}";

/// The report page: a complete HTML document, printable, without scripts.
pub fn html(d: &ReportData) -> String {
    let s = d.session;
    let mut o = String::new();
    let title = format!("Session report: {} — {}", s.subject, s.student);
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1>",
        text(&title),
        text(&title)
    );
    let rows: [(&str, String); 12] = [
        ("Host", d.host_title.to_string()),
        ("Session", s.id.clone()),
        ("Identifier", s.identifier.clone().unwrap_or_default()),
        ("Student", s.student.clone()),
        ("Subject", s.subject.clone()),
        (
            "Template",
            format!("{} v{}", s.template_id, s.template_version),
        ),
        ("Proctors", s.proctors.join(", ")),
        ("Status", s.status.as_str().to_string()),
        ("Created", rfc3339(Some(s.created_at))),
        ("Started", rfc3339(s.started_at)),
        ("Stopped", rfc3339(s.stopped_at)),
        ("Tags", s.tags.join(", ")),
    ];
    o.push_str("<table>");
    for (k, v) in rows {
        let _ = write!(o, "<tr><th>{k}</th><td>{}</td></tr>", text(&v));
    }
    o.push_str("</table>");

    o.push_str("<h2>Identity checks</h2>");
    let checks: Vec<&Entry> = d
        .entries
        .iter()
        .filter(|e| e.kind == Kind::FaceCheck)
        .collect();
    if checks.is_empty() {
        o.push_str("<p>No identity check was recorded.</p>");
    } else {
        o.push_str("<table><tr><th>Time</th><th>By</th><th>Result</th></tr>");
        for e in checks {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                rfc3339(Some(e.time)),
                text(&e.author),
                text(&e.data.to_string())
            );
        }
        o.push_str("</table>");
    }

    o.push_str("<h2>Score</h2>");
    let _ = write!(
        o,
        "<p>Credibility <strong>{}</strong> (threshold {}){}</p>",
        d.score.score,
        d.score.threshold,
        if d.score.review {
            " — <span class=\"bad\">flagged for review</span>"
        } else {
            ""
        }
    );
    o.push_str("<table><tr><th>Metric</th><th>Meaning</th><th>Weight w</th><th>Average x</th><th>w·x</th></tr>");
    for t in &d.score.terms {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            text(&t.metric.to_string()),
            text(t.meaning),
            t.weight,
            t.average,
            t.penalty
        );
    }
    o.push_str("</table>");
    chart(&mut o, d);

    o.push_str("<h2>Conclusion</h2>");
    match &s.conclusion {
        Some(c) => {
            let _ = write!(
                o,
                "<p class=\"{}\"><strong>{}</strong> by {} at {}{}</p><p>{}</p>",
                if c.positive { "ok" } else { "bad" },
                if c.positive { "Positive" } else { "Negative" },
                text(&c.by),
                rfc3339(Some(c.at)),
                if c.automatic { " (automatic)" } else { "" },
                text(&c.comment)
            );
        }
        None => o.push_str("<p>Not concluded.</p>"),
    }

    o.push_str("<h2>Timeline</h2><table><tr><th>#</th><th>Time</th><th>By</th><th>What</th><th>Details</th><th>Attachments</th></tr>");
    for e in d.entries {
        let attachments: Vec<String> = e
            .attachments
            .iter()
            .map(|a| format!("<code>{}</code>", text(a)))
            .collect();
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            e.seq,
            rfc3339(Some(e.time)),
            text(&e.author),
            e.kind.as_str(),
            text(&e.data.to_string()),
            attachments.join("<br>")
        );
    }
    o.push_str("</table>");

    o.push_str("<h2>Recordings and snapshots</h2>");
    if d.objects.is_empty() {
        o.push_str("<p>None stored.</p>");
    } else {
        o.push_str("<table><tr><th>Object</th><th>Bytes</th></tr>");
        for (key, size) in d.objects {
            let _ = write!(
                o,
                "<tr><td><code title=\"{}\">{}</code></td><td>{size}</td></tr>",
                attr(key),
                text(key)
            );
        }
        o.push_str("</table>");
    }

    o.push_str("<h2>Integrity</h2>");
    match &d.chain {
        Ok(n) => {
            let _ = write!(
                o,
                "<p class=\"ok\">The protocol's hash chain verifies: {n} entries.</p>"
            );
        }
        Err(e) => {
            let _ = write!(
                o,
                "<p class=\"bad\">The protocol's hash chain does NOT verify: {}</p>",
                text(e)
            );
        }
    }
    let _ = write!(
        o,
        "<p>Generated {}. A signed evidence bundle of this session is available from the export.</p></body></html>",
        rfc3339(Some(d.generated_at))
    );
    o
}

/// The score after each metric period as an inline SVG line, with the
/// threshold dashed.
fn chart(o: &mut String, d: &ReportData) {
    let points: Vec<(u64, f64)> = d
        .entries
        .iter()
        .filter(|e| e.kind == Kind::Metrics)
        .filter_map(|e| Some((e.time, e.data.get("score")?.as_f64()?)))
        .collect();
    o.push_str("<h2>Score over time</h2>");
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        o.push_str("<p>No metric period was recorded.</p>");
        return;
    };
    let (w, h) = (600.0, 160.0);
    let span = (last.0.saturating_sub(first.0)).max(1) as f64;
    let x = |t: u64| (t.saturating_sub(first.0)) as f64 / span * w;
    let y = |v: f64| h - v.clamp(0.0, 100.0) / 100.0 * h;
    let line: Vec<String> = points
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
        .collect();
    let _ = write!(
        o,
        "<svg role=\"img\" aria-label=\"score after each period, 0 to 100\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" style=\"border:1px solid #bbb\">\
         <line x1=\"0\" x2=\"{w}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" stroke=\"#a00\" stroke-dasharray=\"4 4\"/>\
         <polyline fill=\"none\" stroke=\"#036\" stroke-width=\"2\" points=\"{}\"/></svg>\
         <p>{} periods from {} to {}; dashed: the threshold {}.</p>",
        line.join(" "),
        points.len(),
        rfc3339(Some(first.0)),
        rfc3339(Some(last.0)),
        d.score.threshold,
        ty = y(d.score.threshold),
    );
}

#[cfg(test)]
mod tests;
