//! An experiment's results as people read them: the warnings that make the
//! numbers untrustworthy first (sample-ratio mismatch, units exposed to
//! more than one variation, guardrail alerts, simulated traffic), then per
//! metric each variation against the control with its interval, drawn,
//! the effect over time, and the breakdown by attribute.
//!
//! The numbers come from the same function the results API uses
//! (`routes::results::aggregated`), with the analysis the person picks
//! ([`View`]: frequentist, sequential or Bayesian; a multiple-testing
//! correction; the confidence level); nothing is fetched over HTTP. Three store reads per rendering (the
//! experiment, the project's metric definitions, the alerts), however
//! many metrics. While the experiment runs the section refreshes itself
//! (`data-refresh`, every [`REFRESH_SECS`] seconds) from
//! `/ui/p/{project}/experiments/{env}/{key}/results`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use switchyard_aggregate::{AnalysisOptions, ExperimentResults, MetricDetail};
use switchyard_core::metric::{Direction, MetricKind, MetricRole};
use switchyard_core::model::ExperimentStatus;
use switchyard_stats::{Correction, Effect, Engine, MetricResult, Settings, VariationResult};
use switchyard_store::{ExperimentAlert, ExperimentDefinition, Metric};

use super::charts::{self, IntervalRow, Verdict, signed_pct};
use super::layout::{self, Viewer, error_page, store_error};
use crate::error::ApiError;
use crate::state::AppState;

/// Seconds between refreshes of a running experiment's results.
pub const REFRESH_SECS: u32 = 5;
/// Fewer units than this in an arm: no effect is shown for it, only
/// "not enough data yet" (the normal approximation behind the intervals
/// is not trustworthy below it).
pub const MIN_UNITS: u64 = 30;
/// Points of the effect-over-time chart.
const SERIES_POINTS: usize = 120;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/ui/p/{project}/experiments/{env}/{key}/results",
        get(fragment),
    )
}

async fn fragment(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((project, env, key)): Path<(String, String, String)>,
    view: Result<Query<View>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let view = view.map(|q| q.0).unwrap_or_default();
    if let Some(page) = viewer.refused(&project) {
        return page;
    }
    let (experiment, metrics, alerts) = tokio::join!(
        state.store.get_experiment(&project, &env, &key),
        state.store.list_metrics(&project),
        state.store.list_experiment_alerts(&project, &env, &key),
    );
    let loaded = experiment.and_then(|e| Ok((e, metrics?, alerts?)));
    match loaded {
        Ok((e, metrics, alerts)) => {
            layout::fragment(section(&state, &e, &metrics, &alerts, &view).await)
        }
        Err(e) => error_page(Some(&viewer), &store_error(e)),
    }
}

/// How the person wants the results analysed: the page's query. Values
/// outside the offered choices are ignored (the defaults stand).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct View {
    /// `frequentist` (default), `sequential` or `bayesian`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// `none` (default), `holm` or `benjamini_hochberg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<String>,
    /// `95` (default), `90` or `99` percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<String>,
}

const ENGINES: [(&str, &str); 3] = [
    ("frequentist", "Frequentist (fixed horizon)"),
    ("sequential", "Frequentist, sequential (peek any time)"),
    ("bayesian", "Bayesian (chance to win)"),
];
const CORRECTIONS: [(&str, &str); 3] = [
    ("none", "None"),
    ("holm", "Holm (family-wise error)"),
    (
        "benjamini_hochberg",
        "Benjamini-Hochberg (false discoveries)",
    ),
];
const CONFIDENCES: [(&str, &str); 3] = [("90", "90 %"), ("95", "95 %"), ("99", "99 %")];

impl View {
    /// The analysis settings this view asks for.
    pub fn settings(&self) -> Settings {
        let mut s = Settings::default();
        match self.engine.as_deref() {
            Some("bayesian") => s.engine = Engine::Bayesian,
            Some("sequential") => s.sequential = true,
            _ => {}
        }
        match self.correction.as_deref() {
            Some("holm") => s.correction = Correction::Holm,
            Some("benjamini_hochberg") => s.correction = Correction::BenjaminiHochberg,
            _ => {}
        }
        match self.confidence.as_deref() {
            Some("90") => s.alpha = 0.10,
            Some("99") => s.alpha = 0.01,
            _ => {}
        }
        s
    }

    /// `?engine=...` for links that keep this view (empty for the default).
    pub fn query(&self) -> String {
        match serde_urlencoded::to_string(self) {
            Ok(q) if !q.is_empty() => format!("?{q}"),
            _ => String::new(),
        }
    }
}

/// The form that picks the analysis (a GET of the experiment's page).
pub fn settings_form(action: &str, view: &View) -> Markup {
    let select =
        |id: &str, label: &str, options: &[(&str, &str)], current: Option<&str>, default: &str| {
            let current = current.unwrap_or(default);
            html! {
                div.field {
                    label for=(id) { (label) }
                    select #(id) name=(id) {
                        @for (value, text) in options {
                            option value=(value) selected[*value == current] { (text) }
                        }
                    }
                }
            }
        };
    html! {
        form.filters.analysis method="get" action=(action) aria-label="Analysis settings" {
            (select("engine", "Analysis", &ENGINES, view.engine.as_deref(), "frequentist"))
            (select("correction", "Multiple-testing correction", &CORRECTIONS, view.correction.as_deref(), "none"))
            (select("confidence", "Confidence", &CONFIDENCES, view.confidence.as_deref(), "95"))
            div.actions { button type="submit" { "Apply" } }
        }
    }
}

/// The URL the results section refreshes from, keeping the view.
pub fn fragment_url(e: &ExperimentDefinition, view: &View) -> String {
    format!(
        "/ui/p/{}/experiments/{}/{}/results{}",
        e.project,
        e.environment,
        e.key,
        view.query()
    )
}

/// The results section of an experiment's page.
pub async fn section(
    state: &AppState,
    e: &ExperimentDefinition,
    metrics: &[Metric],
    alerts: &[ExperimentAlert],
    view: &View,
) -> Markup {
    let live = e.status == ExperimentStatus::Running;
    let url = fragment_url(e, view);
    let refresh = live.then_some(url.as_str());
    if e.status == ExperimentStatus::Draft {
        return html! {
            section #results .results aria-labelledby="results-h" {
                h2 #results-h { "Results" }
                div.panel.empty { "Results appear here once the experiment is started." }
            }
        };
    }
    let opts = AnalysisOptions {
        settings: view.settings(),
        weights: e.variations.iter().map(|v| f64::from(v.weight)).collect(),
        max_points: SERIES_POINTS,
        breakdown: true,
    };
    let results = crate::routes::results::aggregated(state, e, &opts).await;
    let simulated = state
        .simulation
        .as_ref()
        .filter(|s| s.feeds(&e.project, &e.environment, &e.key))
        .map(|s| s.note());
    let now = time::OffsetDateTime::now_utc();
    let updated = format!(
        "{:02}:{:02}:{:02} UTC",
        now.hour(),
        now.minute(),
        now.second()
    );
    html! {
        section #results .results aria-labelledby="results-h" data-refresh=[refresh] data-every=(REFRESH_SECS) {
            div.toolbar {
                h2 #results-h { "Results" }
                div.small.muted {
                    @if simulated.is_some() { span.badge.info { "Simulated data" } " " }
                    "Updated " (updated)
                    @if live { " · refreshes every " (REFRESH_SECS) " s" }
                }
            }
            @match &results {
                Ok(r) => (body(e, r, metrics, alerts, simulated.as_deref())),
                Err(ApiError::Unavailable(msg)) => div.alert.info role="status" {
                    strong { "No results yet." }
                    (msg) "."
                    @if live { " This section refreshes by itself." }
                },
                Err(err) => div.alert.error role="alert" {
                    strong { "The results could not be computed." }
                    (err.public_message())
                },
            }
        }
    }
}

fn body(
    e: &ExperimentDefinition,
    r: &ExperimentResults,
    metrics: &[Metric],
    alerts: &[ExperimentAlert],
    simulated: Option<&str>,
) -> Markup {
    let names: HashMap<&str, &str> = metrics
        .iter()
        .filter(|m| !m.definition.name.is_empty())
        .map(|m| (m.definition.key.as_str(), m.definition.name.as_str()))
        .collect();
    let alerts: Vec<&ExperimentAlert> = alerts.iter().filter(|a| a.phase == r.phase).collect();
    let total: u64 = r.variations.iter().map(|v| v.units).sum();
    let srm = &r.analysis.srm;
    let level = {
        let l = (1.0 - r.analysis.alpha) * 100.0;
        if (l - l.round()).abs() < 1e-9 {
            format!("{l:.0}%")
        } else {
            format!("{l:.1}%")
        }
    };
    html! {
        // What makes the numbers untrustworthy, first and loud.
        @for w in &r.warnings {
            @if w.code == "srm_mismatch" {
                div.alert.error.loud role="alert" {
                    strong { "Sample ratio mismatch: do not trust these results yet." }
                    "The units split " (r.variations.iter().map(|v| v.units.to_string()).collect::<Vec<_>>().join(" / "))
                    " where the weights say " (r.variations.iter().map(|v| format!("{}%", whole(v.weight / 100.0))).collect::<Vec<_>>().join(" / "))
                    " (" (p_text(srm.p_value)) "). Something treats the variations differently (a redirect, a bot filter, a crash or a slow page in one arm, exposures logged in one arm only). Find the cause before reading any effect."
                }
            } @else if w.code != "simulated_traffic" {
                div.alert.warn role="status" { strong { (humanise(w.code)) } (w.message) }
            }
        }
        @if r.excluded_units > 0 {
            div.alert.error.loud role="alert" {
                strong { (r.excluded_units) " unit" (plural(r.excluded_units)) " saw more than one variation." }
                "They are left out of the analysis. A few are normal (a unit on two devices); many mean the assignment is not stable: check that the flag is evaluated with the experiment's unit ("
                code { (e.bucket_by) } ") and that nothing else changes what a unit sees."
            }
        }
        @for a in &alerts {
            div.alert.error.loud role="alert" {
                strong {
                    @if a.kind == "guardrail_harmed" { "Guardrail harmed" } @else if a.kind == "sample_ratio_mismatch" { "Sample ratio mismatch (guardrail monitor)" } @else { (humanise(&a.kind)) }
                    @if let Some(m) = &a.metric { ": " (names.get(m.as_str()).copied().unwrap_or(m)) }
                    @if let Some(v) = &a.variation { " in " (v) }
                }
                (a.message)
                @if a.action == "stopped" { " The experiment was stopped and its control is served to everyone." }
                " " span.small.muted { (layout::when(a.created_at)) }
            }
        }
        @if let Some(note) = simulated {
            div.alert.info role="status" { strong { "Simulated traffic." } (note) }
        }
        div.panel.summary {
            div.stats {
            div.stat { div.k { "Units" } div.v { (total) } }
            @for v in &r.variations {
                div.stat {
                    div.k { (v.key) }
                    div.v { (v.units) }
                    div.small.muted { (fmt_num(share(v.units, total) * 100.0)) "% of units · weight " (whole(v.weight / 100.0)) "%" }
                }
            }
            div.stat {
                div.k { "Sample ratio" }
                div.v {
                    @if srm.mismatch { span.badge.bad { "Mismatch" } } @else if total == 0 { span.badge.off { "No units yet" } } @else { span.badge.good { "OK" } }
                }
                div.small.muted { (p_text(srm.p_value)) }
            }
            }
            p.small.muted {
                "Phase " (r.phase + 1)
                @if let Some(t) = r.freshness.max_event_ms.and_then(from_ms) { " · events up to " (layout::when(t)) }
                @if r.excluded_units > 0 { " · " (r.excluded_units) " excluded" }
                " · " (engine_name(r.analysis.engine)) ", " (level) " intervals"
                @if r.analysis.sequential { " (sequential: always valid)" }
                @match r.analysis.correction {
                    Correction::Holm => " · Holm-corrected",
                    Correction::BenjaminiHochberg => " · Benjamini-Hochberg-corrected",
                    Correction::None => "",
                }
            }
        }
        @if r.metrics.is_empty() {
            div.panel.empty { "This experiment measures no metric: add one to see effects." }
        }
        @for (detail, result) in r.metrics.iter().zip(&r.analysis.metrics) {
            (metric_panel(r, detail, result, names.get(detail.key.as_str()).copied(), &level))
        }
        @if let Some(b) = &r.breakdown {
            (breakdown(r, b, &names))
        }
    }
}

fn metric_panel(
    r: &ExperimentResults,
    detail: &MetricDetail,
    result: &MetricResult,
    name: Option<&str>,
    level: &str,
) -> Markup {
    let engine = r.analysis.engine;
    let baseline = result.variations.first();
    let base_units = baseline.map_or(0, |b| b.units);
    let rows: Vec<IntervalRow> = result
        .variations
        .iter()
        .filter_map(|v| {
            let c = v.comparison.as_ref()?;
            enough(&c.relative, base_units, v.units).then(|| {
                let ci = c.relative.ci_adjusted.unwrap_or(c.relative.ci);
                IntervalRow {
                    label: v.id.clone(),
                    estimate: c.relative.estimate,
                    lower: ci.lower,
                    upper: ci.upper,
                    verdict: verdict(&c.relative, detail.direction, engine),
                }
            })
        })
        .collect();
    let title = name.unwrap_or(&detail.key);
    let id = format!("metric-{}", detail.key);
    html! {
        section.panel.metric aria-labelledby=(id) {
            div.metric-head {
                h3 #(id) { (title) }
                span.badge.(role_class(detail.role)) { (role_name(detail.role)) }
                span.small.muted { (kind_name(detail.kind)) " · " (if detail.direction == Direction::Lower { "lower is better" } else { "higher is better" }) }
            }
            div.table-wrap {
                table {
                    caption.visually-hidden { (title) ": each variation against the control" }
                    thead { tr {
                        th scope="col" { "Variation" }
                        th scope="col" .num .hide-narrow { "Units" }
                        th scope="col" .num { (mean_label(detail.kind)) }
                        th scope="col" .num { "Change vs control" }
                        th scope="col" .num .hide-narrow { @if engine == Engine::Bayesian { "Chance to win" } @else { "p-value" } }
                        th scope="col" .hide-narrow { "Verdict" }
                    } }
                    tbody {
                        @for v in &result.variations {
                            (variation_row(v, detail, engine, base_units, level))
                        }
                    }
                }
            }
            div.charts {
                figure {
                    figcaption { "Change against the control" }
                    @if !rows.is_empty() {
                        (charts::intervals(&rows, level, &format!("{title}: change against the control with {level} intervals")))
                        div.legend {
                            span { i style="background:#1a7f37" {} "better" }
                            span { i style="background:#c62828" {} "worse" }
                            span { i style="background:#5b6472" {} "unclear" }
                        }
                        p.small.muted { "Bar: the " (level) " interval of the relative change; tick: the estimate. A bar across zero is no clear difference." }
                    } @else if result.variations.len() > 1 {
                        p.muted { "Not enough data yet for an interval (see the table for why)." }
                    }
                }
                (series(r, detail, result, level, title))
            }
        }
    }
}

fn variation_row(
    v: &VariationResult,
    detail: &MetricDetail,
    engine: Engine,
    base_units: u64,
    level: &str,
) -> Markup {
    html! {
        tr {
            th scope="row" {
                (v.id)
                @if v.comparison.is_none() { " " span.tag { "control" } }
            }
            td.num.hide-narrow { (v.units) }
            td.num { @if v.units == 0 { "—" } @else { (fmt_mean(detail.kind, v.mean)) } }
            @match &v.comparison {
                None => {
                    td.num.muted { "baseline" }
                    td.num.muted.hide-narrow { "—" }
                    td.hide-narrow {}
                }
                Some(c) if !enough(&c.relative, base_units, v.units) => {
                    td.num.muted {
                        "Not enough data yet"
                        div.small { (waiting_for(&c.relative, base_units, v.units)) }
                    }
                    td.num.muted.hide-narrow { "—" }
                    td.hide-narrow { span.badge.off { "Waiting for data" } }
                }
                Some(c) => {
                    @let rel = &c.relative;
                    @let ci = rel.ci_adjusted.unwrap_or(rel.ci);
                    td.num {
                        strong { (signed_pct(rel.estimate)) }
                        div.small.muted { (level) " " (signed_pct(ci.lower)) " to " (signed_pct(ci.upper)) }
                        div.small.muted { "absolute " (fmt_abs(detail.kind, c.absolute.estimate)) }
                        div.small.muted.show-narrow { (chance_or_p(rel, engine)) }
                        div.show-narrow { (verdict_badge(verdict(rel, detail.direction, engine))) }
                    }
                    td.num.hide-narrow {
                        (chance_or_p_value(rel, engine))
                    }
                    td.hide-narrow { (verdict_badge(verdict(rel, detail.direction, engine))) }
                }
            }
        }
    }
}

fn series(
    r: &ExperimentResults,
    detail: &MetricDetail,
    result: &MetricResult,
    level: &str,
    title: &str,
) -> Markup {
    let others: Vec<&VariationResult> = result
        .variations
        .iter()
        .filter(|v| v.comparison.is_some())
        .collect();
    if others.is_empty() {
        return html! {};
    }
    html! {
        @for v in others {
            @let points: Vec<charts::SeriesPoint> = r.series.iter().filter_map(|p| {
                let arm = r.variations.iter().position(|x| x.key == v.id)?;
                if p.units.first().copied().unwrap_or(0) < MIN_UNITS || p.units.get(arm).copied().unwrap_or(0) < MIN_UNITS {
                    return None;
                }
                let m = p.metrics.iter().find(|m| m.key == detail.key)?;
                let eff = m.effects.iter().find(|x| x.variation == v.id)?;
                eff.relative.is_finite().then_some(charts::SeriesPoint {
                    time_ms: p.time_ms,
                    estimate: eff.relative,
                    lower: eff.relative_ci.lower,
                    upper: eff.relative_ci.upper,
                })
            }).collect();
            figure.over-time {
                figcaption { "Effect over time" @if others_len(result) > 1 { ": " (v.id) } }
                @if points.len() >= 2 {
                    (charts::over_time(&points, level, &format!("{title}, {} against the control, cumulative by hour of first exposure", v.id)))
                    p.small.muted { "Cumulative relative change by hour of first exposure; the band is its " (level) " interval. Early swings are noise; a band narrowing around a steady line is an effect settling." }
                } @else {
                    p.small.muted { "Drawn once there are two hours of exposures with at least " (MIN_UNITS) " units per arm." }
                }
            }
        }
    }
}

/// The p-value (adjusted when a correction applies) or the chance to win.
fn chance_or_p_value(rel: &Effect, engine: Engine) -> String {
    if engine == Engine::Bayesian {
        rel.chance_to_win
            .map_or("—".into(), |p| format!("{}%", fmt_num(p * 100.0)))
    } else {
        rel.p_value_adjusted
            .or(rel.p_value)
            .map_or("—".into(), fmt_p)
    }
}

/// "p = 0.011" or "chance to win 97%", for narrow screens.
fn chance_or_p(rel: &Effect, engine: Engine) -> String {
    if engine == Engine::Bayesian {
        format!("chance to win {}", chance_or_p_value(rel, engine))
    } else {
        rel.p_value_adjusted
            .or(rel.p_value)
            .map_or("p —".into(), p_text)
    }
}

fn others_len(result: &MetricResult) -> usize {
    result
        .variations
        .iter()
        .filter(|v| v.comparison.is_some())
        .count()
}

fn breakdown(
    r: &ExperimentResults,
    b: &switchyard_aggregate::BreakdownResults,
    names: &HashMap<&str, &str>,
) -> Markup {
    let engine = r.analysis.engine;
    let shown: Vec<(usize, &String)> = b.metrics.iter().enumerate().take(4).collect();
    html! {
        section.panel.breakdown aria-labelledby="breakdown-h" {
            h3 #breakdown-h { "By " code { (b.attribute) } }
            @if b.segments.is_empty() {
                p.muted { "No exposure carried " code { (b.attribute) } " yet." }
            } @else {
                div.table-wrap {
                    table {
                        caption.visually-hidden { "Results by " (b.attribute) }
                        thead { tr {
                            th scope="col" { (b.attribute) }
                            th scope="col" .num { "Units" }
                            @for (_, key) in &shown { th scope="col" .num { (names.get(key.as_str()).copied().unwrap_or(key)) } }
                        } }
                        tbody {
                            @for s in &b.segments {
                                tr {
                                    th scope="row" { @if s.other { em { "other values" } } @else { (s.value) } }
                                    td.num { (s.units.iter().map(u64::to_string).collect::<Vec<_>>().join(" / ")) }
                                    @for (i, key) in &shown {
                                        td.num {
                                            @if let Some(m) = s.analysis.metrics.get(*i) {
                                                @let base = m.variations.first().map_or(0, |v| v.units);
                                                @let direction = r.metrics.iter().find(|d| &d.key == *key).map_or(Direction::Higher, |d| d.direction);
                                                @for v in m.variations.iter().filter(|v| v.comparison.is_some()) {
                                                    @if let Some(c) = &v.comparison {
                                                        div {
                                                            @if others_len(m) > 1 { span.muted { (v.id) ": " } }
                                                            @if enough(&c.relative, base, v.units) {
                                                                @let ci = c.relative.ci_adjusted.unwrap_or(c.relative.ci);
                                                                @let verdict = verdict(&c.relative, direction, engine);
                                                                span class=(match verdict { Verdict::Better => "up", Verdict::Worse => "down", Verdict::Unclear => "" }) { (signed_pct(c.relative.estimate)) }
                                                                span.small.muted { " (" (signed_pct(ci.lower)) " to " (signed_pct(ci.upper)) ")" }
                                                            } @else {
                                                                span.small.muted { "not enough data" }
                                                            }
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p.small.muted {
                    "Units per variation (" (r.variations.iter().map(|v| v.key.as_str()).collect::<Vec<_>>().join(" / ")) "). "
                    "Each segment is analysed alone: with many segments some differ by chance."
                    @if b.unassigned_units > 0 { " " (b.unassigned_units) " units were exposed before the breakdown was set and are in no segment." }
                }
            }
        }
    }
}

/// Whether the effect means anything: computed, and enough units in both arms.
fn enough(effect: &Effect, base_units: u64, units: u64) -> bool {
    effect.error.is_none() && base_units >= MIN_UNITS && units >= MIN_UNITS
}

/// Better, worse or unclear, given which way is good news: the interval
/// (adjusted when a correction applies) wholly on one side of zero, or a
/// chance to win beyond 95 % either way.
fn verdict(effect: &Effect, direction: Direction, engine: Engine) -> Verdict {
    if effect.error.is_some() {
        return Verdict::Unclear;
    }
    let good_if_up = direction == Direction::Higher;
    match engine {
        Engine::Bayesian => match effect.chance_to_win {
            Some(p) if p > 0.95 => Verdict::Better,
            Some(p) if p < 0.05 => Verdict::Worse,
            _ => Verdict::Unclear,
        },
        Engine::Frequentist => {
            let ci = effect.ci_adjusted.unwrap_or(effect.ci);
            if ci.lower > 0.0 {
                if good_if_up {
                    Verdict::Better
                } else {
                    Verdict::Worse
                }
            } else if ci.upper < 0.0 {
                if good_if_up {
                    Verdict::Worse
                } else {
                    Verdict::Better
                }
            } else {
                Verdict::Unclear
            }
        }
    }
}

fn verdict_badge(v: Verdict) -> Markup {
    html! {
        @match v {
            Verdict::Better => span.badge.good { "Better" },
            Verdict::Worse => span.badge.bad { "Worse" },
            Verdict::Unclear => span.badge.off { "No clear difference" },
        }
    }
}

pub fn role_name(r: MetricRole) -> &'static str {
    match r {
        MetricRole::Goal => "goal",
        MetricRole::Secondary => "secondary",
        MetricRole::Guardrail => "guardrail",
    }
}

fn role_class(r: MetricRole) -> &'static str {
    match r {
        MetricRole::Goal => "info",
        MetricRole::Secondary => "off",
        MetricRole::Guardrail => "warn",
    }
}

pub fn kind_name(k: MetricKind) -> &'static str {
    match k {
        MetricKind::Binomial => "binomial",
        MetricKind::Count => "count",
        MetricKind::Sum => "sum",
        MetricKind::Mean => "mean",
        MetricKind::Ratio => "ratio",
    }
}

fn mean_label(k: MetricKind) -> &'static str {
    match k {
        MetricKind::Binomial => "Conversion",
        MetricKind::Count => "Events per unit",
        MetricKind::Sum => "Value per unit",
        MetricKind::Mean => "Mean value",
        MetricKind::Ratio => "Ratio",
    }
}

fn engine_name(e: Engine) -> &'static str {
    match e {
        Engine::Bayesian => "Bayesian",
        Engine::Frequentist => "frequentist",
    }
}

fn fmt_mean(kind: MetricKind, mean: f64) -> String {
    if kind == MetricKind::Binomial {
        format!("{}%", fmt_num(mean * 100.0))
    } else {
        fmt_num(mean)
    }
}

fn fmt_abs(kind: MetricKind, x: f64) -> String {
    if kind == MetricKind::Binomial {
        format!(
            "{}{} pp",
            if x < 0.0 { "−" } else { "+" },
            fmt_num((x * 100.0).abs())
        )
    } else {
        format!("{}{}", if x < 0.0 { "−" } else { "+" }, fmt_num(x.abs()))
    }
}

/// Three significant digits or two decimals, whichever is shorter to read.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    let a = x.abs();
    let digits = if a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 0.1 || a == 0.0 {
        2
    } else {
        3
    };
    format!("{x:.digits$}")
}

/// Why an effect is not shown yet.
fn waiting_for(effect: &Effect, base_units: u64, units: u64) -> String {
    use switchyard_stats::ErrorCode;
    if base_units < MIN_UNITS || units < MIN_UNITS {
        return format!(
            "{} of {MIN_UNITS} units in the smaller arm",
            base_units.min(units)
        );
    }
    match effect.error {
        Some(ErrorCode::ZeroVariance | ErrorCode::ZeroBaselineMean) => {
            "every unit has the same value so far (no conversions?)".into()
        }
        _ => "the data do not allow an estimate yet".into(),
    }
}

/// A number without decimals when it is whole: `50`, `33.33`.
fn whole(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// "p = 0.011", or "p < 0.001".
fn p_text(p: f64) -> String {
    let v = fmt_p(p);
    if v.starts_with('<') {
        format!("p {v}")
    } else {
        format!("p = {v}")
    }
}

fn fmt_p(p: f64) -> String {
    if !p.is_finite() {
        "—".into()
    } else if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.3}")
    }
}

fn share(units: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        units as f64 / total as f64
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn humanise(code: &str) -> String {
    let s = code.replace('_', " ");
    let mut c = s.chars();
    match c.next() {
        Some(f) => format!("{}{}. ", f.to_uppercase(), c.as_str()),
        None => String::new(),
    }
}

fn from_ms(ms: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_stats::Interval;

    fn effect(lower: f64, upper: f64) -> Effect {
        Effect {
            estimate: (lower + upper) / 2.0,
            stddev: 0.01,
            ci: Interval::new(lower, upper),
            p_value: Some(0.01),
            p_value_adjusted: None,
            ci_adjusted: None,
            chance_to_win: None,
            risk: None,
            error: None,
        }
    }

    #[test]
    fn the_verdict_follows_the_interval_and_the_metric_direction() {
        let up = effect(0.01, 0.05);
        assert_eq!(
            verdict(&up, Direction::Higher, Engine::Frequentist),
            Verdict::Better
        );
        assert_eq!(
            verdict(&up, Direction::Lower, Engine::Frequentist),
            Verdict::Worse
        );
        assert_eq!(
            verdict(&effect(-0.01, 0.05), Direction::Higher, Engine::Frequentist),
            Verdict::Unclear
        );
    }

    #[test]
    fn too_few_units_or_a_degenerate_effect_is_not_enough_data() {
        let e = effect(0.01, 0.05);
        assert!(enough(&e, MIN_UNITS, MIN_UNITS));
        assert!(!enough(&e, MIN_UNITS - 1, 500));
        let mut broken = e.clone();
        broken.error = Some(switchyard_stats::ErrorCode::ZeroVariance);
        assert!(!enough(&broken, 500, 500));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_mean(MetricKind::Binomial, 0.1234), "12.3%");
        assert_eq!(fmt_num(0.01234), "0.012");
        assert_eq!(fmt_p(0.0001), "< 0.001");
        assert_eq!(fmt_abs(MetricKind::Binomial, -0.02), "−2.00 pp");
    }
}
