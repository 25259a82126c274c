//! Evaluation of a compiled configuration for one context. Nothing here
//! allocates on the common paths: results borrow from the evaluator.

use serde::Serialize;
use serde::ser::SerializeStruct;
use serde_json::{Map, Value};

use crate::bucket::bucket;
use crate::compile::{CompiledExperiment, CompiledFlag, CompiledServe, Evaluator};
use crate::context::Context;
use crate::model::{ExperimentStatus, FlagType};

/// Why a value was served, in OpenFeature/OFREP vocabulary (plus
/// `PREREQUISITE_FAILED`, which OFREP allows as a custom reason).
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
        st.serialize_field("error_code", &self.error_code)?;
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
        self.flag_index.get(key).map(|&i| self.flags[i].flag_type)
    }

    /// Evaluates one flag for `ctx`.
    pub fn evaluate<'a>(&'a self, key: &'a str, ctx: &Context) -> Evaluation<'a> {
        match self.flag_index.get(key) {
            Some(&i) => self.evaluate_at(i, ctx),
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
        self.flag_index.get(key).copied()
    }

    /// Evaluates every flag for `ctx`, in document order.
    pub fn evaluate_all<'a>(&'a self, ctx: &Context) -> Vec<Evaluation<'a>> {
        (0..self.flags.len())
            .map(|i| self.evaluate_at(i, ctx))
            .collect()
    }

    /// Evaluates the flag at `i` (document order, as given by
    /// [`Evaluator::index_of`] or the position in [`Evaluator::flag_keys`]).
    ///
    /// # Panics
    /// If `i` is not below [`Evaluator::len`].
    pub fn evaluate_at(&self, i: usize, ctx: &Context) -> Evaluation<'_> {
        let f = &self.flags[i];
        let done =
            |variation: usize, reason: Reason, rule: Option<usize>, exposure: Option<usize>| {
                Evaluation {
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
                        bucket_by: &self.experiments[e].bucket_by,
                    }),
                    metadata: Some(&f.metadata),
                }
            };
        if !f.enabled {
            return done(f.off, Reason::Disabled, None, None);
        }
        for (p, wanted) in &f.prerequisites {
            if !self.prerequisite_holds(*p, wanted, ctx) {
                return done(f.off, Reason::PrerequisiteFailed, None, None);
            }
        }
        for (ri, rule) in f.rules.iter().enumerate() {
            if !rule
                .conditions
                .iter()
                .all(|c| c.holds(ctx, &|s, u| self.in_segment(s, u, ctx)))
            {
                continue;
            }
            match self.serve(f, &rule.serve, ctx, Reason::TargetingMatch) {
                Outcome::Served {
                    variation,
                    reason,
                    exposure,
                } => {
                    return done(variation, reason, Some(ri), exposure);
                }
                Outcome::NotAssigned => continue,
                Outcome::MissingUnit => return missing_unit(f),
            }
        }
        let plain = if f.rules.is_empty() && f.prerequisites.is_empty() {
            Reason::Static
        } else {
            Reason::Default
        };
        match self.serve(f, &f.fallthrough, ctx, plain) {
            Outcome::Served {
                variation,
                reason,
                exposure,
            } => done(variation, reason, None, exposure),
            Outcome::NotAssigned => done(f.off, Reason::Default, None, None),
            Outcome::MissingUnit => missing_unit(f),
        }
    }

    fn prerequisite_holds(&self, p: usize, wanted: &[usize], ctx: &Context) -> bool {
        let e = self.evaluate_at(p, ctx);
        let Some(variant) = e.variant else {
            return false;
        };
        let pf = &self.flags[p];
        wanted.iter().any(|&w| pf.variation_keys[w] == variant)
    }

    fn serve(
        &self,
        f: &CompiledFlag,
        serve: &CompiledServe,
        ctx: &Context,
        fixed: Reason,
    ) -> Outcome {
        match serve {
            CompiledServe::Variation(v) => Outcome::Served {
                variation: *v,
                reason: fixed,
                exposure: None,
            },
            CompiledServe::Split { bucket_by, ranges } => {
                let Some(unit) = ctx.unit(bucket_by) else {
                    return Outcome::MissingUnit;
                };
                let b = bucket(&f.key, &unit);
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
            ExperimentStatus::Draft => return Outcome::NotAssigned,
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
            if let Some(unit) = ctx.unit(&h.bucket_by)
                && bucket(&h.key, &unit) < h.size
            {
                return Outcome::NotAssigned;
            }
        }
        let Some(unit) = ctx.unit(&e.bucket_by) else {
            return Outcome::NotAssigned;
        };
        if let Some((layer, start, end)) = &e.layer {
            let b = bucket(layer, &unit);
            if b < *start || b >= *end {
                return Outcome::NotAssigned;
            }
        }
        let b = bucket(&e.key, &unit);
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
