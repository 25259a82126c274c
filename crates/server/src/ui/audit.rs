//! The audit log (`/ui/audit`): who changed what and when, newest first,
//! filtered by project, kind and key, paged with `before_id`; each entry
//! with a line diff of its before and after documents.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use switchyard_store::{AuditEntry, AuditFilter, StoreError};

use super::layout::{self, Frame, Nav, Viewer, error_page, store_error};
use crate::routes::control::RESOURCE_KINDS;
use crate::state::AppState;

/// Entries on one page.
const PAGE: u32 = 50;
/// Unchanged lines shown around each change.
const CONTEXT: usize = 3;
/// Above this many cells the diff does not look for common lines inside
/// the changed middle: it shows it as removed, then added.
const MAX_DIFF_CELLS: usize = 4_000_000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/ui/audit", get(audit))
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    project: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    key: String,
    /// Kept as text: a malformed cursor is ignored, not an error page.
    #[serde(default)]
    before_id: String,
}

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    Same(&'a str),
    Del(&'a str),
    Add(&'a str),
}

/// A line diff of `a` and `b` (longest common subsequence of the lines
/// between their common prefix and suffix).
pub fn diff_lines<'a>(a: &'a str, b: &'a str) -> Vec<Line<'a>> {
    let a: Vec<&str> = if a.is_empty() {
        Vec::new()
    } else {
        a.lines().collect()
    };
    let b: Vec<&str> = if b.is_empty() {
        Vec::new()
    } else {
        b.lines().collect()
    };
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut out: Vec<Line<'a>> = a[..prefix].iter().map(|l| Line::Same(l)).collect();
    if ma.len().saturating_mul(mb.len()) > MAX_DIFF_CELLS {
        out.extend(ma.iter().map(|l| Line::Del(l)));
        out.extend(mb.iter().map(|l| Line::Add(l)));
    } else {
        // lcs[i][j]: the longest common subsequence of ma[i..] and mb[j..].
        let w = mb.len() + 1;
        let mut lcs = vec![0u32; (ma.len() + 1) * w];
        for i in (0..ma.len()).rev() {
            for j in (0..mb.len()).rev() {
                lcs[i * w + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < ma.len() && j < mb.len() {
            if ma[i] == mb[j] {
                out.push(Line::Same(ma[i]));
                i += 1;
                j += 1;
            } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
                out.push(Line::Del(ma[i]));
                i += 1;
            } else {
                out.push(Line::Add(mb[j]));
                j += 1;
            }
        }
        out.extend(ma[i..].iter().map(|l| Line::Del(l)));
        out.extend(mb[j..].iter().map(|l| Line::Add(l)));
    }
    out.extend(a[a.len() - suffix..].iter().map(|l| Line::Same(l)));
    out
}

fn pretty(v: Option<&Value>) -> String {
    v.map(|v| serde_json::to_string_pretty(v).unwrap_or_default())
        .unwrap_or_default()
}

/// The diff as markup: `+`/`-` marked lines (the sign is text, the colour
/// only helps), unchanged runs longer than the context folded.
pub fn diff_markup(before: Option<&Value>, after: Option<&Value>) -> Markup {
    let (a, b) = (pretty(before), pretty(after));
    let lines = diff_lines(&a, &b);
    let changed: Vec<bool> = lines.iter().map(|l| !matches!(l, Line::Same(_))).collect();
    // Shown: every change and CONTEXT lines around it.
    let near = |i: usize| {
        let lo = i.saturating_sub(CONTEXT);
        let hi = (i + CONTEXT + 1).min(lines.len());
        changed[lo..hi].iter().any(|c| *c)
    };
    let mut parts: Vec<Markup> = Vec::new();
    let mut hidden = 0usize;
    for (i, line) in lines.iter().enumerate() {
        if let Line::Same(_) = line
            && !near(i)
        {
            hidden += 1;
            continue;
        }
        if hidden > 0 {
            parts.push(html! { span.muted { "  … " (hidden) " unchanged line" @if hidden != 1 { "s" } "\n" } });
            hidden = 0;
        }
        parts.push(match line {
            Line::Same(l) => html! { span { "  " (l) "\n" } },
            Line::Del(l) => html! { span.del { "- " (l) "\n" } },
            Line::Add(l) => html! { span.add { "+ " (l) "\n" } },
        });
    }
    if hidden > 0 {
        parts.push(
            html! { span.muted { "  … " (hidden) " unchanged line" @if hidden != 1 { "s" } "\n" } },
        );
    }
    let (adds, dels) = lines.iter().fold((0, 0), |(a, d), l| match l {
        Line::Add(_) => (a + 1, d),
        Line::Del(_) => (a, d + 1),
        Line::Same(_) => (a, d),
    });
    html! {
        @if adds + dels == 0 {
            p.small.muted { "No change in the recorded document." }
        } @else {
            p.small.muted { (adds) " line" @if adds != 1 { "s" } " added (+), " (dels) " removed (-)" }
            pre.diff aria-label="Changes: lines starting with + were added, with - removed" { @for p in &parts { (p) } }
        }
    }
}

fn action_badge(action: &str) -> Markup {
    let class = match action {
        "create" | "start" | "resume" => "badge good",
        "delete" | "revoke" | "disable" | "stop" => "badge bad",
        "update" | "pause" | "ship" | "restart" => "badge info",
        _ => "badge off",
    };
    html! { span class=(class) { (action) } }
}

fn entry(e: &AuditEntry) -> Markup {
    html! {
        article.item data-audit-id=(e.id) {
            div.item-head {
                div {
                    (action_badge(&e.action)) " "
                    span.tag { (e.resource_kind) } " "
                    strong.mono { (e.resource_key) }
                    @if let Some(p) = &e.project { span.muted { " in " span.mono { (p) } } }
                }
                div.small.muted { (layout::when(e.at)) }
            }
            div.small { "by " strong { (e.actor) } }
            details open[e.before.is_some() && e.after.is_some()] {
                summary { "Before and after" }
                (diff_markup(e.before.as_ref(), e.after.as_ref()))
            }
        }
    }
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

async fn audit(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<AuditQuery>,
) -> Response {
    // A person bound to a project sees only its entries.
    let project = match &viewer.user.project {
        Some(bound) => bound.clone(),
        None => q.project.trim().to_string(),
    };
    let kind = if RESOURCE_KINDS.contains(&q.kind.as_str()) {
        q.kind.clone()
    } else {
        String::new()
    };
    let key = q.key.trim().to_string();
    let before_id = q.before_id.trim().parse::<i64>().ok();
    let loaded = async {
        let projects = state.store.list_projects().await?;
        let entries = state
            .store
            .list_audit(AuditFilter {
                project: (!project.is_empty()).then(|| project.clone()),
                resource_kind: (!kind.is_empty()).then(|| kind.clone()),
                resource_key: (!key.is_empty()).then(|| key.clone()),
                limit: Some(PAGE),
                before_id,
            })
            .await?;
        Ok::<_, StoreError>((projects, entries))
    }
    .await;
    let (projects, entries) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(Some(&viewer), &store_error(e)),
    };
    let visible = viewer.visible(&projects);
    let older = (entries.len() == PAGE as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let body = html! {
        (layout::head(&[], "Audit log", Some(html! { "Every change, who made it and when; newest first." }), html! {}))
        form.filters method="get" role="search" aria-label="Filter the audit log" {
            div.field {
                label for="audit-project" { "Project" }
                select #audit-project name="project" {
                    @if viewer.user.project.is_none() { option value="" { "Every project" } }
                    @for p in &visible { option value=(p.key) selected[project == p.key] { (p.name) } }
                }
            }
            div.field {
                label for="audit-kind" { "Kind" }
                select #audit-kind name="kind" {
                    option value="" { "Any kind" }
                    @for k in RESOURCE_KINDS { option value=(k) selected[kind == k] { (k.replace('_', " ")) } }
                }
            }
            div.field {
                label for="audit-key" { "Key" }
                input #audit-key type="search" name="key" value=(key) placeholder="e.g. checkout-flow";
            }
            div.actions { button type="submit" { "Filter" } a href="/ui/audit" { "Clear" } }
        }
        @if before_id.is_some() {
            p.small { a href=(format!("/ui/audit{}", query_string(&[("project", &project), ("kind", &kind), ("key", &key)]))) { "← Newest entries" } }
        }
        @if entries.is_empty() {
            div.panel.empty { @if before_id.is_some() { "No older entries." } @else { "No change matches these filters." } }
        } @else {
            div #audit-entries { @for e in &entries { (entry(e)) } }
            @if let Some(id) = older {
                p { a.button href=(format!("/ui/audit{}", query_string(&[("project", &project), ("kind", &kind), ("key", &key), ("before_id", &id.to_string())]))) { "Older entries →" } }
            }
        }
    };
    layout::page(
        &viewer,
        &Frame {
            title: "Audit log",
            project: (!project.is_empty()).then_some(project.as_str()),
            nav: Nav::Audit,
            projects: &projects,
        },
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_is_removed_then_added_between_unchanged_ones() {
        let d = diff_lines("a\nb\nc\nd", "a\nB\nc\nd\ne");
        assert_eq!(
            d,
            [
                Line::Same("a"),
                Line::Del("b"),
                Line::Add("B"),
                Line::Same("c"),
                Line::Same("d"),
                Line::Add("e"),
            ]
        );
    }

    #[test]
    fn a_creation_is_all_added_and_a_deletion_all_removed() {
        assert_eq!(diff_lines("", "x\ny"), [Line::Add("x"), Line::Add("y")]);
        assert_eq!(diff_lines("x", ""), [Line::Del("x")]);
        assert!(diff_lines("", "").is_empty());
    }

    #[test]
    fn the_markup_marks_lines_with_text_and_folds_unchanged_runs() {
        let before = serde_json::json!({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8, "i": 9});
        let mut after = before.clone();
        after["i"] = serde_json::json!(10);
        let html = diff_markup(Some(&before), Some(&after)).into_string();
        assert!(
            html.contains(r#"<span class="del">-   &quot;i&quot;: 9"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<span class="add">+   &quot;i&quot;: 10"#),
            "{html}"
        );
        assert!(html.contains("6 unchanged lines"), "{html}");
        assert!(!html.contains("&quot;a&quot;: 1"), "{html}");
        assert!(html.contains("1 line added (+), 1 removed"), "{html}");
    }

    #[test]
    fn documents_are_escaped() {
        let after = serde_json::json!({"name": "<script>x</script>"});
        let html = diff_markup(None, Some(&after)).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }
}
