//! Charts as inline SVG, rendered on the server: the effect of each
//! variation with its interval (a forest plot), and the effect over time
//! with its interval band. No script draws them; each has a text
//! alternative (`role="img"` and a label saying what it shows), and the
//! numbers are in the table beside it.

use maud::{Markup, html};

/// Which way an interval points, for its colour (the text says it too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Wholly on the good side of zero.
    Better,
    /// Wholly on the bad side of zero.
    Worse,
    /// Crosses zero, or not enough data.
    Unclear,
}

impl Verdict {
    fn colour(self) -> &'static str {
        match self {
            Verdict::Better => "#1a7f37",
            Verdict::Worse => "#c62828",
            Verdict::Unclear => "#5b6472",
        }
    }
}

/// One row of the interval chart: a variation's relative effect.
#[derive(Debug, Clone)]
pub struct IntervalRow {
    pub label: String,
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    pub verdict: Verdict,
}

/// A relative change as a signed percentage: `+3.1%`.
pub fn signed_pct(x: f64) -> String {
    if !x.is_finite() {
        return if x > 0.0 {
            "+∞".into()
        } else {
            "−∞".into()
        };
    }
    let v = x * 100.0;
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{:.*}", digits, v.abs());
    if s.trim_start_matches(['0', '.']).is_empty() {
        return format!("{s}%");
    }
    format!("{}{s}%", if v < 0.0 { "−" } else { "+" })
}

/// Tick marks: about `n` round values covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).abs();
    if !span.is_finite() || span == 0.0 {
        return vec![lo];
    }
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut out = Vec::new();
    let mut t = (lo / step).ceil() * step;
    while t <= hi + step * 1e-9 && out.len() < 50 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// A symmetric domain around zero that holds every finite value given,
/// with a margin; at least ±1 %.
fn symmetric(values: impl Iterator<Item = f64>) -> f64 {
    let m = values
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    (m * 1.15).max(0.01)
}

/// Width of the charts' coordinate system: two fit side by side on a
/// desktop, and each stays legible at phone width.
const W: f64 = 480.0;
const LABEL_W: f64 = 84.0;
const RIGHT: f64 = 14.0;

/// The effect of each variation against the baseline with its interval,
/// on one axis with zero marked. `level` names the interval ("95%").
pub fn intervals(rows: &[IntervalRow], level: &str, title: &str) -> Markup {
    let row_h = 40.0;
    let top = 8.0;
    let axis_h = 26.0;
    let h = top + row_h * rows.len() as f64 + axis_h;
    let d = symmetric(rows.iter().flat_map(|r| [r.lower, r.upper, r.estimate]));
    let plot_w = W - LABEL_W - RIGHT;
    let x = |v: f64| LABEL_W + (v.clamp(-d, d) + d) / (2.0 * d) * plot_w;
    let bottom = top + row_h * rows.len() as f64;
    let description = rows
        .iter()
        .map(|r| {
            format!(
                "{}: {} ({level} interval {} to {})",
                r.label,
                signed_pct(r.estimate),
                signed_pct(r.lower),
                signed_pct(r.upper)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    html! {
        svg.chart.intervals viewBox=(format!("0 0 {W} {h}")) width=(W) height=(h) role="img"
            aria-label=(format!("{title}. {description}")) {
            title { (title) ". " (description) }
            @for t in ticks(-d, d, 6) {
                line x1=(fx(x(t))) x2=(fx(x(t))) y1=(fx(top)) y2=(fx(bottom)) stroke="#e3e6ea" {}
                text x=(fx(x(t))) y=(fx(bottom + 16.0)) text-anchor="middle" { (signed_pct(t)) }
            }
            line x1=(fx(x(0.0))) x2=(fx(x(0.0))) y1=(fx(top - 4.0)) y2=(fx(bottom)) stroke="#6b7280" stroke-width="1.5" {}
            @for (i, r) in rows.iter().enumerate() {
                @let y = top + row_h * (i as f64 + 0.5);
                @let c = r.verdict.colour();
                text.label x=(fx(LABEL_W - 10.0)) y=(fx(y + 4.0)) text-anchor="end" { (truncate(&r.label, 12)) }
                text.value x=(fx(x(r.estimate))) y=(fx(y - 11.0)) text-anchor="middle" style=(format!("fill:{c}")) { (signed_pct(r.estimate)) }
                line x1=(fx(x(r.lower))) x2=(fx(x(r.upper))) y1=(fx(y)) y2=(fx(y)) stroke=(c) stroke-width="7" stroke-linecap="butt" opacity="0.35" {}
                @if !r.lower.is_finite() || r.lower < -d {
                    path d=(format!("M{} {}l8 -6v12z", fx(LABEL_W), fx(y))) fill=(c) {}
                }
                @if !r.upper.is_finite() || r.upper > d {
                    path d=(format!("M{} {}l-8 -6v12z", fx(W - RIGHT), fx(y))) fill=(c) {}
                }
                line x1=(fx(x(r.estimate))) x2=(fx(x(r.estimate))) y1=(fx(y - 9.0)) y2=(fx(y + 9.0)) stroke=(c) stroke-width="3" {}
            }
        }
    }
}

/// One point of the effect over time.
#[derive(Debug, Clone, Copy)]
pub struct SeriesPoint {
    pub time_ms: i64,
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
}

/// The cumulative effect over time as a line with its interval band and
/// zero marked. Early points with very wide intervals are cut at the
/// chart's edge (the later, narrower ones set the scale).
pub fn over_time(points: &[SeriesPoint], level: &str, title: &str) -> Markup {
    let h = 220.0;
    let (left, right, top, bottom) = (56.0, 12.0, 10.0, 26.0);
    let pw = W - left - right;
    let ph = h - top - bottom;
    // The scale: the later three quarters of the points, and zero.
    let skip = points.len() / 4;
    let scale = &points[skip.min(points.len())..];
    let mut lo = 0.0f64;
    let mut hi = 0.0f64;
    for p in scale {
        for v in [p.lower, p.upper, p.estimate] {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    let pad = ((hi - lo) * 0.08).max(0.005);
    let (lo, hi) = (lo - pad, hi + pad);
    let (t0, t1) = match (points.first(), points.last()) {
        (Some(a), Some(b)) => (a.time_ms, b.time_ms.max(a.time_ms + 1)),
        _ => (0, 1),
    };
    let x = |t: i64| left + (t - t0) as f64 / (t1 - t0) as f64 * pw;
    let y = |v: f64| {
        let v = if v.is_finite() {
            v
        } else if v > 0.0 {
            hi
        } else {
            lo
        };
        top + (hi - v.clamp(lo, hi)) / (hi - lo) * ph
    };
    let line: String = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "{}{} {}",
                if i == 0 { "M" } else { "L" },
                fx(x(p.time_ms)),
                fx(y(p.estimate))
            )
        })
        .collect();
    let band: String = {
        let upper = points
            .iter()
            .map(|p| format!("{},{}", fx(x(p.time_ms)), fx(y(p.upper))));
        let lower = points
            .iter()
            .rev()
            .map(|p| format!("{},{}", fx(x(p.time_ms)), fx(y(p.lower))));
        upper.chain(lower).collect::<Vec<_>>().join(" ")
    };
    let last = points.last();
    let label = match last {
        Some(p) => format!(
            "{title}: from {} to {}, now {} ({level} interval {} to {})",
            day_hour(t0),
            day_hour(t1),
            signed_pct(p.estimate),
            signed_pct(p.lower),
            signed_pct(p.upper)
        ),
        None => title.to_string(),
    };
    html! {
        svg.chart.series viewBox=(format!("0 0 {W} {h}")) width=(W) height=(h) role="img" aria-label=(label) {
            title { (label) }
            @for t in ticks(lo, hi, 5) {
                line x1=(fx(left)) x2=(fx(W - right)) y1=(fx(y(t))) y2=(fx(y(t))) stroke="#e3e6ea" {}
                text x=(fx(left - 6.0)) y=(fx(y(t) + 4.0)) text-anchor="end" { (signed_pct(t)) }
            }
            polygon points=(band) fill="#1d4ed8" opacity="0.15" {}
            line x1=(fx(left)) x2=(fx(W - right)) y1=(fx(y(0.0))) y2=(fx(y(0.0))) stroke="#6b7280" stroke-width="1.5" {}
            path d=(line) fill="none" stroke="#1d4ed8" stroke-width="2" {}
            @if let Some(p) = last {
                circle cx=(fx(x(p.time_ms))) cy=(fx(y(p.estimate))) r="3.5" fill="#1d4ed8" {}
            }
            text x=(fx(left)) y=(fx(h - 6.0)) text-anchor="start" { (day_hour(t0)) }
            text x=(fx(W - right)) y=(fx(h - 6.0)) text-anchor="end" { (day_hour(t1)) }
        }
    }
}

/// `12-04 18:00` (UTC) from milliseconds since the epoch.
fn day_hour(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| {
            format!(
                "{:02}-{:02} {:02}:{:02}",
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_default()
}

/// A coordinate with one decimal: small markup, no `NaN`.
fn fx(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "0".into()
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_signed_and_rounded_to_what_matters() {
        assert_eq!(signed_pct(0.03141), "+3.14%");
        assert_eq!(signed_pct(-0.1234), "−12.3%");
        assert_eq!(signed_pct(0.0), "0.00%");
        assert_eq!(signed_pct(f64::INFINITY), "+∞");
        assert_eq!(signed_pct(2.5), "+250%");
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(-0.1, 0.1, 4), vec![-0.1, -0.05, 0.0, 0.05, 0.1]);
        assert_eq!(ticks(1.0, 1.0, 4), vec![1.0]);
    }

    #[test]
    fn charts_hold_no_nan_and_clip_unbounded_intervals() {
        let rows = [IntervalRow {
            label: "treatment".into(),
            estimate: 0.05,
            lower: f64::NEG_INFINITY,
            upper: 0.2,
            verdict: Verdict::Unclear,
        }];
        let svg = intervals(&rows, "95%", "Purchase rate").into_string();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(
            svg.contains("+5.00%"),
            "the estimate is in the label: {svg}"
        );
        let points: Vec<SeriesPoint> = (0..10)
            .map(|i| SeriesPoint {
                time_ms: 1_700_000_000_000 + i * 3_600_000,
                estimate: 0.1,
                lower: if i == 0 { f64::NEG_INFINITY } else { 0.0 },
                upper: 0.2,
            })
            .collect();
        let svg = over_time(&points, "95%", "Effect").into_string();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(svg.contains("<polygon"), "{svg}");
    }
}
