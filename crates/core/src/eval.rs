//! Evaluation of a compiled configuration for one context. Nothing here
//! allocates on the common paths: results borrow from the evaluator.
//!
//! Prerequisites are resolved without recursion: an explicit stack, never
//! deeper than [`MAX_PREREQUISITE_DEPTH`] (the compiler's bound), and a
//! memo of what each prerequisite flag served, so a flag reached along
//! many paths is evaluated once per evaluation (a bulk evaluation shares
//! one memo across all flags, in prerequisite order).

use serde::Serialize;
use serde::ser::SerializeStruct;
use serde_json::{Map, Value};

use rustc_hash::FxHashMap;

use crate::compile::{CompiledExperiment, CompiledFlag, CompiledServe, Evaluator};
use crate::context::Context;
use crate::limits::MAX_PREREQUISITE_DEPTH;
use crate::model::{ExperimentStatus, FlagType};

/// Why a value was served, in OpenFeature's vocabulary plus
/// `PREREQUISITE_FAILED` (the corpus `spec/eval/v1` pins it). OpenFeature
/// has no such reason: the OFREP layer sends it as `DEFAULT` and keeps
/// this one in the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    Static,
    Default,
    TargetingMatch,
    Split,
    Disabled,
    PrerequisiteFailed,
    Error,
}

impl Reason {
    /// Every reason, for callers that map or check them all.
    pub const ALL: [Reason; 7] = [
        Reason::Static,
        Reason::Default,
        Reason::TargetingMatch,
        Reason::Split,
        Reason::Disabled,
        Reason::PrerequisiteFailed,
        Reason::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::Default => "DEFAULT",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Disabled => "DISABLED",
            Reason::PrerequisiteFailed => "PREREQUISITE_FAILED",
            Reason::Error => "ERROR",
        }
    }
}

/// OFREP error codes an evaluation can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    FlagNotFound,
    TargetingKeyMissing,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
        }
    }
}

/// The unit was assigned to an experiment arm: the caller logs an exposure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Exposure<'a> {
    pub experiment: &'a str,
    pub variation: &'a str,
    /// The attribute the experiment buckets by: the exposed unit is
    /// `context.unit(bucket_by)`.
    #[serde(skip)]
    pub bucket_by: &'a str,
    /// The experiment's phase: a unit exposed again in a new phase is a
    /// new exposure, however recent the last one.
    #[serde(skip)]
    pub phase: u32,
}

/// The result of evaluating one flag.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation<'a> {
    pub key: &'a str,
    pub flag_type: Option<FlagType>,
    /// Absent exactly when `reason` is `Error`.
    pub value: Option<&'a Value>,
    pub variant: Option<&'a str>,
    pub reason: Reason,
    pub error_code: Option<ErrorCode>,
    /// Index of the rule that served, if one did.
    pub rule: Option<usize>,
    pub rule_id: Option<&'a str>,
    pub exposure: Option<Exposure<'a>>,
    pub metadata: Option<&'a Map<String, Value>>,
}

impl Serialize for Evaluation<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Evaluation", 8)?;
        st.serialize_field("key", self.key)?;
        st.serialize_field("value", &self.value)?;
        st.serialize_field("variant", &self.variant)?;
        st.serialize_field("reason", &self.reason)?;
        st.serialize_field("errorCode", &self.error_code)?;
        st.serialize_field("rule", &self.rule)?;
        st.serialize_field("exposure", &self.exposure)?;
        st.serialize_field("metadata", &self.metadata)?;
        st.end()
    }
}

/// Where a serve landed, before it is turned into an [`Evaluation`].
enum Outcome {
    Served {
        variation: usize,
        reason: Reason,
        exposure: Option<usize>,
    },
    NotAssigned,
    MissingUnit,
}

/// What a flag served, before it is turned into an [`Evaluation`].
#[derive(Clone, Copy)]
enum Served {
    Variation {
        variation: usize,
        reason: Reason,
        rule: Option<usize>,
        exposure: Option<usize>,
    },
    MissingUnit,
}

impl Served {
    fn variation(self) -> Option<usize> {
        match self {
            Served::Variation { variation, .. } => Some(variation),
            Served::MissingUnit => None,
        }
    }
}

/// The variation each prerequisite flag served during one evaluation
/// (`None`: it had none, an error).
enum Memo {
    /// One evaluation of one flag: only the flags it reaches.
    Sparse(FxHashMap<u32, Option<u32>>),
    /// A bulk evaluation: every flag, by index.
    Dense(Vec<Option<Option<u32>>>),
}

impl Memo {
    fn get(&self, flag: usize) -> Option<Option<usize>> {
        let v = match self {
            Memo::Sparse(map) => map.get(&(flag as u32)).copied(),
            Memo::Dense(all) => all.get(flag).copied().flatten(),
        };
        v.map(|v| v.map(|v| v as usize))
    }

    fn set(&mut self, flag: usize, variation: Option<usize>) {
        let variation = variation.map(|v| v as u32);
        match self {
            Memo::Sparse(map) => {
                map.insert(flag as u32, variation);
            }
            Memo::Dense(all) => {
                if let Some(slot) = all.get_mut(flag) {
                    *slot = Some(variation);
                }
            }
        }
    }
}

impl Evaluator {
    pub fn environment(&self) -> &str {
        &self.environment
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Number of flags in the configuration.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Flag keys in document order.
    pub fn flag_keys(&self) -> impl Iterator<Item = &str> {
        self.flags.iter().map(|f| f.key.as_str())
    }

    /// The type of a flag, if it exists.
    pub fn flag_type(&self, key: &str) -> Option<FlagType> {
        self.position(key).map(|i| self.flags[i].flag_type)
    }

    /// Evaluates one flag for `ctx`.
    pub fn evaluate<'a>(&'a self, key: &'a str, ctx: &Context) -> Evaluation<'a> {
        match self.position(key) {
            Some(i) => self.evaluate_at(i, ctx),
            None => Evaluation {
                key,
                flag_type: None,
                value: None,
                variant: None,
                reason: Reason::Error,
                error_code: Some(ErrorCode::FlagNotFound),
                rule: None,
                rule_id: None,
                exposure: None,
                metadata: None,
            },
        }
    }

    /// The position of a flag in document order, for callers that keep
    /// per-flag state beside the evaluator (see [`Evaluator::evaluate_at`]).
    #[inline]
    pub fn index_of(&self, key: &str) -> Option<usize> {
        self.position(key)
    }

    /// Evaluates every flag for `ctx`, in document order. Each flag is
    /// evaluated once: flags are visited in prerequisite order and what a
    /// prerequisite served is remembered.
    pub fn evaluate_all<'a>(&'a self, ctx: &Context) -> Vec<Evaluation<'a>> {
        if self.order.is_empty() {
            return (0..self.flags.len())
                .map(|i| self.evaluate_at(i, ctx))
                .collect();
        }
        let mut memo = Memo::Dense(vec![None; self.flags.len()]);
        let mut out: Vec<Option<Evaluation<'a>>> = vec![None; self.flags.len()];
        for &i in &self.order {
            let i = i as usize;
            let served = self.resolve(i, ctx, &mut memo);
            memo.set(i, served.variation());
            out[i] = Some(self.evaluation(i, served));
        }
        out.into_iter().flatten().collect()
    }

    /// Evaluates the flag at `i` (document order, as given by
    /// [`Evaluator::index_of`] or the position in [`Evaluator::flag_keys`]).
    ///
    /// # Panics
    /// If `i` is not below [`Evaluator::len`].
    pub fn evaluate_at(&self, i: usize, ctx: &Context) -> Evaluation<'_> {
        // An empty map does not allocate: only prerequisites fill it.
        let served = self.resolve(i, ctx, &mut Memo::Sparse(FxHashMap::default()));
        self.evaluation(i, served)
    }

    /// The cost of evaluating every flag once, in the units of
    /// [`crate::limits::MAX_EVALUATION_COST`].
    pub fn evaluation_cost(&self) -> u64 {
        self.cost
    }

    /// The memory the environment's regexes account for, in bytes (see
    /// [`crate::limits::REGEX_MEMORY_LIMIT`]).
    pub fn regex_memory(&self) -> usize {
        self.regex_memory
    }

    fn evaluation(&self, i: usize, served: Served) -> Evaluation<'_> {
        let f = &self.flags[i];
        match served {
            Served::Variation {
                variation,
                reason,
                rule,
                exposure,
            } => Evaluation {
                key: &f.key,
                flag_type: Some(f.flag_type),
                value: Some(&f.values[variation]),
                variant: Some(&f.variation_keys[variation]),
                reason,
                error_code: None,
                rule,
                rule_id: rule.and_then(|r| f.rules[r].id.as_deref()),
                exposure: exposure.map(|e| Exposure {
                    experiment: &self.experiments[e].key,
                    variation: &f.variation_keys[variation],
                    bucket_by: self.experiments[e].bucket_by.as_str(),
                    phase: self.experiments[e].phase,
                }),
                metadata: Some(&f.metadata),
            },
            Served::MissingUnit => missing_unit(f),
        }
    }

    /// What flag `i` serves: off, prerequisites, rules, fallthrough.
    fn resolve(&self, i: usize, ctx: &Context, memo: &mut Memo) -> Served {
        let f = &self.flags[i];
        let off = |reason| Served::Variation {
            variation: f.off,
            reason,
            rule: None,
            exposure: None,
        };
        if !f.enabled {
            return off(Reason::Disabled);
        }
        if !f.prerequisites.is_empty() && !self.prerequisites_hold(i, ctx, memo) {
            return off(Reason::PrerequisiteFailed);
        }
        self.targeting(f, ctx)
    }

    /// Whether every prerequisite of the enabled flag `root` holds, in
    /// order (the first failing one decides). A prerequisite not yet in
    /// `memo` that has prerequisites of its own is pushed on a stack and
    /// resolved first; the stack holds one path of the prerequisite graph,
    /// which the compiler keeps within [`MAX_PREREQUISITE_DEPTH`].
    fn prerequisites_hold(&self, root: usize, ctx: &Context, memo: &mut Memo) -> bool {
        // (flag, index of the prerequisite to check next).
        let mut stack = [(0usize, 0usize); MAX_PREREQUISITE_DEPTH + 1];
        stack[0] = (root, 0);
        let mut len = 1;
        loop {
            let (i, mut next) = stack[len - 1];
            let f = &self.flags[i];
            let mut holds = true;
            let mut descend = None;
            while let Some((p, wanted)) = f.prerequisites.get(next) {
                let served = match memo.get(*p) {
                    Some(served) => served,
                    None => {
                        let pf = &self.flags[*p];
                        if pf.enabled && !pf.prerequisites.is_empty() {
                            descend = Some(*p);
                            break;
                        }
                        let served = self.resolve(*p, ctx, memo).variation();
                        memo.set(*p, served);
                        served
                    }
                };
                if !served.is_some_and(|v| wanted.contains(&v)) {
                    holds = false;
                    break;
                }
                next += 1;
            }
            if let Some(p) = descend {
                stack[len - 1].1 = next;
                if len < stack.len() {
                    stack[len] = (p, 0);
                    len += 1;
                    continue;
                }
                // Deeper than the compiler allows: cannot happen for a
                // compiled document; fail rather than go on.
                holds = false;
            }
            len -= 1;
            if len == 0 {
                return holds;
            }
            // `i` was a prerequisite of the flag below it: record what it
            // serves, then go back to that flag.
            let served = if holds {
                self.targeting(f, ctx).variation()
            } else {
                Some(f.off)
            };
            memo.set(i, served);
        }
    }

    /// Rules, then the fallthrough, of an enabled flag whose prerequisites
    /// hold.
    fn targeting(&self, f: &CompiledFlag, ctx: &Context) -> Served {
        #[cfg(test)]
        tests::TARGETED.with(|n| n.set(n.get() + 1));
        for (ri, rule) in f.rules.iter().enumerate() {
            if !rule
                .conditions
                .iter()
                .all(|c| c.holds(ctx, &|s, u| self.in_segment(s, u, ctx)))
            {
                continue;
            }
            match self.serve(&rule.serve, ctx, Reason::TargetingMatch) {
                Outcome::Served {
                    variation,
                    reason,
                    exposure,
                } => {
                    return Served::Variation {
                        variation,
                        reason,
                        rule: Some(ri),
                        exposure,
                    };
                }
                Outcome::NotAssigned => continue,
                Outcome::MissingUnit => return Served::MissingUnit,
            }
        }
        let plain = if f.rules.is_empty() && f.prerequisites.is_empty() {
            Reason::Static
        } else {
            Reason::Default
        };
        match self.serve(&f.fallthrough, ctx, plain) {
            Outcome::Served {
                variation,
                reason,
                exposure,
            } => Served::Variation {
                variation,
                reason,
                rule: None,
                exposure,
            },
            Outcome::NotAssigned => Served::Variation {
                variation: f.off,
                reason: Reason::Default,
                rule: None,
                exposure: None,
            },
            Outcome::MissingUnit => Served::MissingUnit,
        }
    }

    fn serve(&self, serve: &CompiledServe, ctx: &Context, fixed: Reason) -> Outcome {
        match serve {
            CompiledServe::Variation(v) => Outcome::Served {
                variation: *v,
                reason: fixed,
                exposure: None,
            },
            CompiledServe::Split {
                bucket_by,
                salt,
                ranges,
            } => {
                let Some(unit) = ctx.unit_named(bucket_by) else {
                    return Outcome::MissingUnit;
                };
                let b = salt.bucket(&unit);
                match ranges.iter().find(|(end, _)| b < *end) {
                    Some(&(_, v)) => Outcome::Served {
                        variation: v,
                        reason: Reason::Split,
                        exposure: None,
                    },
                    // Unreachable for a compiled split (weights add to 10 000).
                    None => Outcome::NotAssigned,
                }
            }
            CompiledServe::Experiment(e) => self.assign(*e, ctx),
        }
    }

    fn assign(&self, ei: usize, ctx: &Context) -> Outcome {
        let e: &CompiledExperiment = &self.experiments[ei];
        match e.status {
            ExperimentStatus::Running => {}
            ExperimentStatus::Stopped => {
                return match e.winner {
                    Some(w) => Outcome::Served {
                        variation: w,
                        reason: Reason::TargetingMatch,
                        exposure: None,
                    },
                    None => Outcome::NotAssigned,
                };
            }
            ExperimentStatus::Draft | ExperimentStatus::Paused => return Outcome::NotAssigned,
        }
        if !e
            .conditions
            .iter()
            .all(|c| c.holds(ctx, &|s, u| self.in_segment(s, u, ctx)))
        {
            return Outcome::NotAssigned;
        }
        for &h in &e.holdouts {
            let h = &self.holdouts[h];
            if let Some(unit) = ctx.unit_named(&h.bucket_by)
                && h.salt.bucket(&unit) < h.size
            {
                return Outcome::NotAssigned;
            }
        }
        let Some(unit) = ctx.unit_named(&e.bucket_by) else {
            return Outcome::NotAssigned;
        };
        if let Some((layer, start, end)) = &e.layer {
            let b = layer.bucket(&unit);
            if b < *start || b >= *end {
                return Outcome::NotAssigned;
            }
        }
        let b = e.salt.bucket(&unit);
        match e.arms.iter().find(|(s, end, _)| b >= *s && b < *end) {
            Some(&(_, _, v)) => Outcome::Served {
                variation: v,
                reason: Reason::Split,
                exposure: Some(ei),
            },
            None => Outcome::NotAssigned,
        }
    }

    fn in_segment(&self, s: usize, unit: Option<&Value>, ctx: &Context) -> bool {
        let seg = &self.segments[s];
        if let Some(unit) = unit.and_then(crate::context::unit_text) {
            if seg.excluded.contains(unit.as_ref()) {
                return false;
            }
            if seg.included.contains(unit.as_ref()) {
                return true;
            }
        }
        // Segment rules cannot use segment operators, so this never recurses.
        seg.rules
            .iter()
            .any(|r| r.iter().all(|c| c.holds(ctx, &|_, _| false)))
    }
}

fn missing_unit(f: &CompiledFlag) -> Evaluation<'_> {
    Evaluation {
        key: &f.key,
        flag_type: Some(f.flag_type),
        value: None,
        variant: None,
        reason: Reason::Error,
        error_code: Some(ErrorCode::TargetingKeyMissing),
        rule: None,
        rule_id: None,
        exposure: None,
        metadata: Some(&f.metadata),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use serde_json::json;

    use super::*;

    thread_local! {
        /// How many times a flag's targeting was evaluated on this thread.
        pub(super) static TARGETED: Cell<usize> = const { Cell::new(0) };
    }

    fn targeted(run: impl FnOnce()) -> usize {
        TARGETED.with(|n| n.set(0));
        run();
        TARGETED.with(Cell::get)
    }

    #[test]
    fn prerequisites_that_fan_in_are_evaluated_once_per_flag() {
        // Flag i requires flags i-1 and i-2: the top flag reaches the
        // bottom one along a Fibonacci number of paths (over a million).
        let n = 31;
        let flags: Vec<_> = (0..n)
            .map(|i: usize| {
                json!({
                    "key": format!("f{i}"), "type": "boolean",
                    "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                    "enabled": true, "off_variation": "off",
                    "prerequisites": (i.saturating_sub(2)..i)
                        .map(|p| json!({"flag": format!("f{p}"), "variations": ["on"]}))
                        .collect::<Vec<_>>(),
                    "fallthrough": {"variation": "on"}
                })
            })
            .collect();
        let doc = serde_json::from_value(json!({"flags": flags})).unwrap();
        let ev = crate::compile(&doc).unwrap();
        let ctx = Context::from_value(json!({"targetingKey": "u"})).unwrap();
        let top = format!("f{}", n - 1);
        assert_eq!(
            targeted(|| assert_eq!(ev.evaluate(&top, &ctx).variant, Some("on"))),
            n
        );
        assert_eq!(targeted(|| assert_eq!(ev.evaluate_all(&ctx).len(), n)), n);
    }
}
