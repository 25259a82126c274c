//! Targeting as forms: conditions, rules and what they serve, shared by
//! the flag editor and the segment editor.
//!
//! Every control carries `data-key`/`data-obj`/`data-list` so that
//! `app.js` reads the form into exactly the JSON the API takes (see
//! `switchyard_core::model`), and the compiler's field paths
//! (`rules[0].conditions[1].value`, `fallthrough.split.weights`) find their
//! control by that structure. Ids for `label for` are built from a prefix;
//! templates use `__N__`, which the script replaces with a unique token.

use maud::{Markup, html};
use serde_json::Value;
use switchyard_core::model::{
    Condition, Operator, Rule, Serve, Split, Variation, WeightedVariation, default_bucket_by,
};

/// The operator's wire name (`not_in_segment`).
pub fn op_name(op: Operator) -> String {
    serde_json::to_value(op)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// How people read an operator.
pub fn op_label(op: Operator) -> &'static str {
    match op {
        Operator::Equals => "equals",
        Operator::NotEquals => "does not equal",
        Operator::In => "is one of",
        Operator::NotIn => "is none of",
        Operator::Contains => "contains",
        Operator::NotContains => "does not contain",
        Operator::StartsWith => "starts with",
        Operator::EndsWith => "ends with",
        Operator::Matches => "matches regex",
        Operator::NotMatches => "does not match regex",
        Operator::Lt => "<",
        Operator::Lte => "≤",
        Operator::Gt => ">",
        Operator::Gte => "≥",
        Operator::SemverEq => "semver =",
        Operator::SemverLt => "semver <",
        Operator::SemverLte => "semver ≤",
        Operator::SemverGt => "semver >",
        Operator::SemverGte => "semver ≥",
        Operator::Before => "is before",
        Operator::After => "is after",
        Operator::Exists => "exists",
        Operator::NotExists => "does not exist",
        Operator::InSegment => "is in segment",
        Operator::NotInSegment => "is not in segment",
    }
}

/// The kind of operand an operator takes, which decides its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operand {
    /// A string, number or boolean (JSON if it parses, else text).
    Scalar,
    /// Text.
    Text,
    Number,
    /// A list of scalars.
    List,
    /// A list of segment keys.
    Segments,
    None,
}

fn operand(op: Operator) -> Operand {
    match op {
        Operator::Equals | Operator::NotEquals | Operator::Before | Operator::After => {
            Operand::Scalar
        }
        Operator::Contains
        | Operator::NotContains
        | Operator::StartsWith
        | Operator::EndsWith
        | Operator::Matches
        | Operator::NotMatches
        | Operator::SemverEq
        | Operator::SemverLt
        | Operator::SemverLte
        | Operator::SemverGt
        | Operator::SemverGte => Operand::Text,
        Operator::Lt | Operator::Lte | Operator::Gt | Operator::Gte => Operand::Number,
        Operator::In | Operator::NotIn => Operand::List,
        Operator::InSegment | Operator::NotInSegment => Operand::Segments,
        Operator::Exists | Operator::NotExists => Operand::None,
    }
}

/// The operators taking `kind` of operand, space separated (for
/// `data-when-op`).
fn ops_taking(kind: Operand) -> String {
    Operator::ALL
        .iter()
        .filter(|op| operand(**op) == kind)
        .map(|op| op_name(*op))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A scalar as typed into a `json-or-string` input: text that would read
/// as JSON (`"3"`, `"true"`) is quoted so it stays text.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) if serde_json::from_str::<Value>(s).is_ok() => v.to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A list operand, one value a line.
fn list_text(v: &Value) -> String {
    match v {
        Value::Array(items) => items.iter().map(scalar_text).collect::<Vec<_>>().join("\n"),
        Value::Null => String::new(),
        other => scalar_text(other),
    }
}

/// A condition, readable in one line (for read-only pages).
pub fn condition_text(c: &Condition) -> String {
    let value = match operand(c.op) {
        Operand::None => String::new(),
        Operand::List | Operand::Segments => format!(
            " [{}]",
            list_text(&c.value).lines().collect::<Vec<_>>().join(", ")
        ),
        _ => format!(" {}", scalar_text(&c.value)),
    };
    format!("{} {}{}", c.attribute, op_label(c.op), value)
}

/// One condition as a repeated-group item. `segments`: the keys offered
/// for the segment operators; `None`: segment operators are not allowed
/// (inside a segment's own rules).
pub fn condition_item(id: &str, c: Option<&Condition>, segments: Option<&[String]>) -> Markup {
    let op = c.map_or(Operator::Equals, |c| c.op);
    let value = c.map(|c| &c.value).unwrap_or(&Value::Null);
    let kind = operand(op);
    let text_for = |k: Operand| -> String {
        if k != kind {
            return String::new();
        }
        match k {
            Operand::List | Operand::Segments => list_text(value),
            Operand::Text => value
                .as_str()
                .map_or_else(|| scalar_text(value), str::to_string),
            _ => scalar_text(value),
        }
    };
    let ops: Vec<Operator> = Operator::ALL
        .iter()
        .copied()
        .filter(|o| segments.is_some() || operand(*o) != Operand::Segments)
        .collect();
    html! {
        div.item.condition data-item="" {
            div.cond-row {
                div.field {
                    label for=(format!("{id}-attr")) { "Attribute" }
                    input #(format!("{id}-attr")) type="text" data-key="attribute" value=(c.map_or("", |c| c.attribute.as_str())) placeholder="country" autocomplete="off" spellcheck="false";
                    div.field-error aria-live="polite" {}
                }
                div.field {
                    label for=(format!("{id}-op")) { "Operator" }
                    select #(format!("{id}-op")) data-key="op" data-switch="op" {
                        @for o in &ops { option value=(op_name(*o)) selected[*o == op] { (op_label(*o)) } }
                    }
                    div.field-error aria-live="polite" {}
                }
                div.field.grow data-when-op=(ops_taking(Operand::Scalar)) hidden[kind != Operand::Scalar] {
                    label for=(format!("{id}-scalar")) { "Value" }
                    input #(format!("{id}-scalar")) type="text" data-key="value" data-type="json-or-string" value=(text_for(Operand::Scalar)) aria-describedby=(format!("{id}-scalar-hint"));
                    div.hint id=(format!("{id}-scalar-hint")) { "Numbers and true/false are read as such; quote text that looks like one (\"42\"). Dates: RFC 3339." }
                    div.field-error aria-live="polite" {}
                }
                div.field.grow data-when-op=(ops_taking(Operand::Text)) hidden[kind != Operand::Text] {
                    label for=(format!("{id}-text")) { "Value" }
                    input #(format!("{id}-text")) type="text" data-key="value" value=(text_for(Operand::Text)) spellcheck="false";
                    div.field-error aria-live="polite" {}
                }
                div.field.grow data-when-op=(ops_taking(Operand::Number)) hidden[kind != Operand::Number] {
                    label for=(format!("{id}-number")) { "Number" }
                    input #(format!("{id}-number")) type="text" inputmode="decimal" data-key="value" data-type="number" value=(text_for(Operand::Number));
                    div.field-error aria-live="polite" {}
                }
                div.field.grow data-when-op=(ops_taking(Operand::List)) hidden[kind != Operand::List] {
                    label for=(format!("{id}-list")) { "Values" }
                    textarea.short #(format!("{id}-list")) data-key="value" data-type="lines-json" rows="2" aria-describedby=(format!("{id}-list-hint")) { (text_for(Operand::List)) }
                    div.hint id=(format!("{id}-list-hint")) { "One a line, or separated by commas." }
                    div.field-error aria-live="polite" {}
                }
                @if let Some(keys) = segments {
                    div.field.grow data-when-op=(ops_taking(Operand::Segments)) hidden[kind != Operand::Segments] {
                        label for=(format!("{id}-seg")) { "Segments" }
                        textarea.short #(format!("{id}-seg")) data-key="value" data-type="lines" rows="2" aria-describedby=(format!("{id}-seg-hint")) { (text_for(Operand::Segments)) }
                        div.hint id=(format!("{id}-seg-hint")) {
                            @if keys.is_empty() { "Segment keys, one a line. This project has no segments yet." }
                            @else { "Segment keys, one a line: " (keys.join(", ")) ". The attribute holds the unit, usually targetingKey." }
                        }
                        div.field-error aria-live="polite" {}
                    }
                }
                div.cond-remove {
                    button.small type="button" data-remove="" aria-label="Remove this condition" { "Remove" }
                }
            }
        }
    }
}

/// A rule's conditions: the list, a template and the add button.
pub fn conditions_block(id: &str, conditions: &[Condition], segments: Option<&[String]>) -> Markup {
    html! {
        div.conditions data-repeat="" {
            div data-list="conditions" {
                div.field-error aria-live="polite" {}
                @for (i, c) in conditions.iter().enumerate() {
                    (condition_item(&format!("{id}-c{i}"), Some(c), segments))
                }
            }
            template { (condition_item(&format!("{id}-c__N__"), None, segments)) }
            button.small type="button" data-add="" { "Add condition" }
            span.small.muted.when-empty { " No conditions: the rule matches everyone." }
        }
    }
}

/// What a rule or the fallthrough serves: a variation, a percentage
/// rollout or an experiment. `name` is the JSON key (`serve`,
/// `fallthrough`).
pub fn serve_block(
    id: &str,
    name: &str,
    serve: &Serve,
    variations: &[Variation],
    experiments: &[String],
) -> Markup {
    let kind = match serve {
        Serve::Variation(_) => "variation",
        Serve::Split(_) => "split",
        Serve::Experiment(_) => "experiment",
    };
    let chosen = match serve {
        Serve::Variation(v) => v.as_str(),
        _ => "",
    };
    let even = even_split(variations);
    let split: &Split = match serve {
        Serve::Split(s) => s,
        _ => &even,
    };
    let weight_of = |key: &str| -> String {
        split
            .weights
            .iter()
            .find(|w| w.variation == key)
            .map_or_else(|| "0".to_string(), |w| percent(w.weight))
    };
    let experiment = match serve {
        Serve::Experiment(e) => e.as_str(),
        _ => "",
    };
    let mut exps: Vec<&str> = experiments.iter().map(String::as_str).collect();
    if !experiment.is_empty() && !exps.contains(&experiment) {
        exps.push(experiment);
    }
    html! {
        div.serve data-obj=(name) {
            div.field {
                label for=(format!("{id}-kind")) { "Serve" }
                select #(format!("{id}-kind")) data-switch="serve" {
                    option value="variation" selected[kind == "variation"] { "A variation" }
                    option value="split" selected[kind == "split"] { "A percentage rollout" }
                    option value="experiment" selected[kind == "experiment"] disabled[exps.is_empty()] {
                        "An experiment" @if exps.is_empty() { " (none for this flag here)" }
                    }
                }
            }
            div data-when-serve="variation" hidden[kind != "variation"] {
                div.field {
                    label for=(format!("{id}-var")) { "Variation" }
                    select #(format!("{id}-var")) data-key="variation" {
                        @for v in variations { option value=(v.key) selected[v.key == chosen] { (variation_label(v)) } }
                        @if !chosen.is_empty() && !variations.iter().any(|v| v.key == chosen) {
                            option value=(chosen) selected { (chosen) " (no such variation)" }
                        }
                    }
                    div.field-error aria-live="polite" {}
                }
            }
            div data-when-serve="split" hidden[kind != "split"] {
                div data-obj="split" {
                    div.weights data-list="weights" {
                        div.field-error aria-live="polite" {}
                        @for (i, v) in variations.iter().enumerate() {
                            div.field.weight data-item="" {
                                input type="hidden" data-key="variation" value=(v.key);
                                label for=(format!("{id}-w{i}")) { (variation_label(v)) " %" }
                                input #(format!("{id}-w{i}")) type="text" inputmode="decimal" data-key="weight" data-type="percent" value=(weight_of(&v.key));
                                div.field-error aria-live="polite" {}
                            }
                        }
                    }
                    div.field {
                        label for=(format!("{id}-by")) { "Bucket by attribute" }
                        input #(format!("{id}-by")) type="text" data-key="bucket_by" value=(split.bucket_by) spellcheck="false";
                        div.field-error aria-live="polite" {}
                    }
                    p.small.muted { "Percentages with up to two decimals; they must add up to 100." }
                }
            }
            div data-when-serve="experiment" hidden[kind != "experiment"] {
                div.field {
                    label for=(format!("{id}-exp")) { "Experiment" }
                    select #(format!("{id}-exp")) data-key="experiment" {
                        @for e in &exps { option value=(e) selected[*e == experiment] { (e) } }
                    }
                    div.field-error aria-live="polite" {}
                }
            }
        }
    }
}

/// A split over `variations` in (nearly) equal parts, adding up to 100 %.
fn even_split(variations: &[Variation]) -> Split {
    let n = u32::try_from(variations.len().max(1)).unwrap_or(1);
    let base = 10_000 / n;
    let weights = variations
        .iter()
        .enumerate()
        .map(|(i, v)| WeightedVariation {
            variation: v.key.clone(),
            weight: if i == 0 {
                10_000 - base * (n - 1)
            } else {
                base
            },
        })
        .collect();
    Split {
        bucket_by: default_bucket_by(),
        weights,
    }
}

/// Basis points as a percentage (`50`, `33.33`).
pub fn percent(bp: u32) -> String {
    if bp.is_multiple_of(100) {
        (bp / 100).to_string()
    } else {
        format!("{}.{:02}", bp / 100, bp % 100)
    }
}

/// A variation with its value (`on (true)`).
pub fn variation_label(v: &Variation) -> String {
    let value = v.value.to_string();
    let value = if value.chars().count() > 40 {
        format!("{}…", value.chars().take(40).collect::<String>())
    } else {
        value
    };
    format!("{} ({value})", v.key)
}

/// One targeting rule of a flag: its conditions and what it serves.
pub fn rule_item(
    id: &str,
    rule: Option<&Rule>,
    variations: &[Variation],
    experiments: &[String],
    segments: &[String],
) -> Markup {
    let empty = Rule {
        id: None,
        conditions: Vec::new(),
        serve: Serve::Variation(
            variations
                .first()
                .map(|v| v.key.clone())
                .unwrap_or_default(),
        ),
    };
    let r = rule.unwrap_or(&empty);
    html! {
        div.item.rule data-item="" {
            div.item-head {
                strong.rule-title { "Rule" }
                div.actions {
                    button.small type="button" data-move="up" aria-label="Move this rule up" { "↑ Up" }
                    button.small type="button" data-move="down" aria-label="Move this rule down" { "↓ Down" }
                    button.small.danger type="button" data-remove="" aria-label="Remove this rule" { "Remove" }
                }
            }
            @if let Some(rid) = &r.id { input type="hidden" data-key="id" value=(rid); }
            div.field-error aria-live="polite" {}
            h4 { "If all of these hold" }
            (conditions_block(id, &r.conditions, Some(segments)))
            h4 { "Then" }
            (serve_block(&format!("{id}-s"), "serve", &r.serve, variations, experiments))
        }
    }
}

/// A flag's ordered rules in one environment.
pub fn rules_block(
    id: &str,
    rules: &[Rule],
    variations: &[Variation],
    experiments: &[String],
    segments: &[String],
) -> Markup {
    html! {
        div data-repeat="" {
            div.rules data-list="rules" {
                div.field-error aria-live="polite" {}
                @for (i, r) in rules.iter().enumerate() {
                    (rule_item(&format!("{id}-r{i}"), Some(r), variations, experiments, segments))
                }
            }
            template { (rule_item(&format!("{id}-r__N__"), None, variations, experiments, segments)) }
            button type="button" data-add="" { "Add rule" }
        }
    }
}

/// A rule of a segment: conditions only, no segment operators.
pub fn segment_rule_item(id: &str, conditions: &[Condition]) -> Markup {
    html! {
        div.item.rule data-item="" {
            div.item-head {
                strong { "Rule" }
                div.actions {
                    button.small.danger type="button" data-remove="" aria-label="Remove this rule" { "Remove" }
                }
            }
            div.field-error aria-live="polite" {}
            (conditions_block(id, conditions, None))
        }
    }
}

/// What a serve does, in words (for read-only pages).
pub fn serve_text(s: &Serve) -> String {
    match s {
        Serve::Variation(v) => format!("serve {v}"),
        Serve::Split(split) => format!(
            "split by {}: {}",
            split.bucket_by,
            split
                .weights
                .iter()
                .map(|w| format!("{} {}%", w.variation, percent(w.weight)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Serve::Experiment(e) => format!("experiment {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operator_has_a_wire_name_and_an_operand_kind() {
        for op in Operator::ALL {
            assert!(!op_name(op).is_empty());
            let _ = operand(op);
        }
        assert_eq!(op_name(Operator::NotInSegment), "not_in_segment");
        assert!(ops_taking(Operand::List).split(' ').any(|o| o == "not_in"));
    }

    #[test]
    fn scalars_that_look_like_json_are_quoted() {
        assert_eq!(scalar_text(&Value::String("NL".into())), "NL");
        assert_eq!(scalar_text(&Value::String("42".into())), "\"42\"");
        assert_eq!(scalar_text(&serde_json::json!(42)), "42");
        assert_eq!(
            list_text(&serde_json::json!(["NL", 1, "true"])),
            "NL\n1\n\"true\""
        );
    }

    #[test]
    fn an_even_split_adds_up_to_one_hundred_percent() {
        let vs: Vec<Variation> = ["a", "b", "c"]
            .iter()
            .map(|k| Variation {
                key: (*k).into(),
                value: Value::Bool(true),
            })
            .collect();
        let s = even_split(&vs);
        assert_eq!(s.weights.iter().map(|w| w.weight).sum::<u32>(), 10_000);
        assert_eq!(percent(3334), "33.34");
        assert_eq!(percent(5000), "50");
    }
}
