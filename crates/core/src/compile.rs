//! Compilation: a [`ConfigDocument`] is checked and turned into an
//! [`Evaluator`] once, so that evaluation is lookups and comparisons only.
//! Every problem a document can have is found here, with the entity key and
//! field path in the error; evaluation itself never fails on configuration.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use serde_json::{Map, Value};

use crate::bucket::BUCKETS;
use crate::condition::{CompiledCondition, SegmentLookup, compile_condition};
use crate::model::{
    BasisPoints, Condition, ConfigDocument, Experiment, ExperimentStatus, Flag, FlagType, Serve,
    WeightedVariation,
};

/// A configuration document that cannot be compiled. The message names the
/// entity and the field: `flag "checkout": rules[2].conditions[0].value:
/// invalid regex: ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {key:?}: {field}: {message}")]
pub struct CompileError {
    /// `flag`, `segment`, `experiment`, `holdout` or `document`.
    pub kind: &'static str,
    pub key: String,
    /// Path of the offending field inside the entity, e.g. `rules[0].serve`.
    pub field: String,
    pub message: String,
}

fn error(
    kind: &'static str,
    key: &str,
    field: impl Into<String>,
    message: impl Into<String>,
) -> CompileError {
    CompileError {
        kind,
        key: key.to_string(),
        field: field.into(),
        message: message.into(),
    }
}

/// The compiled, immutable configuration of one environment.
#[derive(Debug)]
pub struct Evaluator {
    pub(crate) environment: String,
    pub(crate) revision: u64,
    pub(crate) flags: Vec<CompiledFlag>,
    pub(crate) flag_index: HashMap<String, usize>,
    pub(crate) segments: Vec<CompiledSegment>,
    pub(crate) experiments: Vec<CompiledExperiment>,
    pub(crate) holdouts: Vec<CompiledHoldout>,
}

#[derive(Debug)]
pub(crate) struct CompiledFlag {
    pub(crate) key: String,
    pub(crate) flag_type: FlagType,
    pub(crate) variation_keys: Vec<String>,
    pub(crate) values: Vec<Value>,
    pub(crate) enabled: bool,
    pub(crate) off: usize,
    pub(crate) prerequisites: Vec<(usize, Vec<usize>)>,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) fallthrough: CompiledServe,
    pub(crate) metadata: Map<String, Value>,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) id: Option<String>,
    pub(crate) conditions: Vec<CompiledCondition>,
    pub(crate) serve: CompiledServe,
}

#[derive(Debug)]
pub(crate) enum CompiledServe {
    Variation(usize),
    /// Exclusive upper bucket bounds with their variation, ascending.
    Split {
        bucket_by: String,
        ranges: Vec<(u32, usize)>,
    },
    Experiment(usize),
}

#[derive(Debug)]
pub(crate) struct CompiledSegment {
    pub(crate) included: HashSet<String>,
    pub(crate) excluded: HashSet<String>,
    pub(crate) rules: Vec<Vec<CompiledCondition>>,
}

#[derive(Debug)]
pub(crate) struct CompiledExperiment {
    pub(crate) key: String,
    pub(crate) status: ExperimentStatus,
    /// `[start, end)` bucket ranges with the variation index of the flag.
    pub(crate) arms: Vec<(u32, u32, usize)>,
    pub(crate) bucket_by: String,
    pub(crate) conditions: Vec<CompiledCondition>,
    pub(crate) layer: Option<(String, u32, u32)>,
    pub(crate) holdouts: Vec<usize>,
    pub(crate) winner: Option<usize>,
}

#[derive(Debug)]
pub(crate) struct CompiledHoldout {
    pub(crate) key: String,
    pub(crate) size: u32,
    pub(crate) bucket_by: String,
}

/// Compiles a document into an evaluator.
pub fn compile(doc: &ConfigDocument) -> Result<Evaluator, CompileError> {
    if doc.schema != 1 {
        return Err(error(
            "document",
            "",
            "schema",
            format!("unsupported schema {}", doc.schema),
        ));
    }
    let segment_index = unique_index("segment", doc.segments.iter().map(|s| s.key.as_str()))?;
    let flag_index = unique_index("flag", doc.flags.iter().map(|f| f.key.as_str()))?;
    let experiment_index =
        unique_index("experiment", doc.experiments.iter().map(|e| e.key.as_str()))?;
    let holdout_index = unique_index("holdout", doc.holdouts.iter().map(|h| h.key.as_str()))?;

    let mut holdouts = Vec::with_capacity(doc.holdouts.len());
    for h in &doc.holdouts {
        check_bp("holdout", &h.key, "size", h.size)?;
        check_attribute("holdout", &h.key, "bucket_by", &h.bucket_by)?;
        holdouts.push(CompiledHoldout {
            key: h.key.clone(),
            size: h.size,
            bucket_by: h.bucket_by.clone(),
        });
    }

    let mut segments = Vec::with_capacity(doc.segments.len());
    for s in &doc.segments {
        let mut rules = Vec::with_capacity(s.rules.len());
        for (ri, r) in s.rules.iter().enumerate() {
            let prefix = format!("rules[{ri}]");
            rules.push(compile_conditions(
                "segment",
                &s.key,
                &prefix,
                &r.conditions,
                None,
            )?);
        }
        segments.push(CompiledSegment {
            included: s.included.iter().cloned().collect(),
            excluded: s.excluded.iter().cloned().collect(),
            rules,
        });
    }
    let seg_lookup = |k: &str| segment_index.get(k).copied();

    // Experiments need their flag's variation keys.
    let mut experiments = Vec::with_capacity(doc.experiments.len());
    for e in &doc.experiments {
        let Some(&fi) = flag_index.get(e.flag.as_str()) else {
            return Err(error(
                "experiment",
                &e.key,
                "flag",
                format!("unknown flag {:?}", e.flag),
            ));
        };
        experiments.push(compile_experiment(
            e,
            &doc.flags[fi],
            &holdout_index,
            &seg_lookup,
        )?);
    }

    let mut flags = Vec::with_capacity(doc.flags.len());
    for f in &doc.flags {
        flags.push(compile_flag(
            f,
            &doc.flags,
            &flag_index,
            &experiment_index,
            &doc.experiments,
            &seg_lookup,
        )?);
    }
    check_prerequisite_cycles(&flags)?;

    Ok(Evaluator {
        environment: doc.environment.clone(),
        revision: doc.revision,
        flags,
        flag_index,
        segments,
        experiments,
        holdouts,
    })
}

fn unique_index<'a>(
    kind: &'static str,
    keys: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, usize>, CompileError> {
    let mut index = HashMap::default();
    for (i, k) in keys.enumerate() {
        if k.is_empty() {
            return Err(error(kind, k, "key", "must not be empty"));
        }
        if index.insert(k.to_string(), i).is_some() {
            return Err(error(kind, k, "key", format!("duplicate {kind} key")));
        }
    }
    Ok(index)
}

fn check_bp(
    kind: &'static str,
    key: &str,
    field: &str,
    v: BasisPoints,
) -> Result<(), CompileError> {
    if v > BUCKETS {
        return Err(error(
            kind,
            key,
            field,
            format!("{v} is out of range 0..=10000"),
        ));
    }
    Ok(())
}

fn check_attribute(
    kind: &'static str,
    key: &str,
    field: &str,
    a: &str,
) -> Result<(), CompileError> {
    if a.is_empty() {
        return Err(error(kind, key, field, "must name an attribute"));
    }
    Ok(())
}

fn compile_conditions(
    kind: &'static str,
    key: &str,
    prefix: &str,
    conditions: &[Condition],
    segments: Option<SegmentLookup<'_>>,
) -> Result<Vec<CompiledCondition>, CompileError> {
    conditions
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            compile_condition(c, segments).map_err(|(field, e)| {
                error(kind, key, format!("{prefix}.conditions[{ci}].{field}"), e.0)
            })
        })
        .collect()
}

fn variation_lookup(
    kind: &'static str,
    key: &str,
    keys: &[String],
    field: &str,
    wanted: &str,
) -> Result<usize, CompileError> {
    keys.iter()
        .position(|k| k == wanted)
        .ok_or_else(|| error(kind, key, field, format!("unknown variation {wanted:?}")))
}

/// Weights (basis points) to cumulative `[start, end)` ranges.
fn weighted_ranges(
    kind: &'static str,
    key: &str,
    field: &str,
    weights: &[WeightedVariation],
    variation_keys: &[String],
) -> Result<Vec<(u32, u32, usize)>, CompileError> {
    if weights.is_empty() {
        return Err(error(kind, key, field, "needs at least one variation"));
    }
    let mut start = 0u32;
    let mut out = Vec::with_capacity(weights.len());
    for (i, w) in weights.iter().enumerate() {
        let vi = variation_lookup(
            kind,
            key,
            variation_keys,
            &format!("{field}[{i}].variation"),
            &w.variation,
        )?;
        let end = start.saturating_add(w.weight);
        out.push((start, end, vi));
        start = end;
    }
    if start != BUCKETS {
        return Err(error(
            kind,
            key,
            field,
            format!("weights add up to {start}, not 10000"),
        ));
    }
    Ok(out)
}

fn compile_experiment(
    e: &Experiment,
    flag: &Flag,
    holdout_index: &HashMap<String, usize>,
    seg_lookup: &dyn Fn(&str) -> Option<usize>,
) -> Result<CompiledExperiment, CompileError> {
    const K: &str = "experiment";
    let variation_keys: Vec<String> = flag.variations.iter().map(|v| v.key.clone()).collect();
    check_bp(K, &e.key, "coverage", e.coverage)?;
    check_attribute(K, &e.key, "bucket_by", &e.bucket_by)?;
    let ranges = weighted_ranges(K, &e.key, "variations", &e.variations, &variation_keys)?;
    let arms = ranges
        .into_iter()
        .zip(&e.variations)
        .map(|((start, _end, vi), w)| {
            let width = (u64::from(w.weight) * u64::from(e.coverage) / u64::from(BUCKETS)) as u32;
            (start, start + width, vi)
        })
        .collect();
    let layer = match &e.layer {
        None => None,
        Some(l) => {
            if l.key.is_empty() || l.start > l.end || l.end > BUCKETS {
                return Err(error(
                    K,
                    &e.key,
                    "layer",
                    format!(
                        "needs a key and 0 <= start <= end <= 10000, got [{}, {})",
                        l.start, l.end
                    ),
                ));
            }
            Some((l.key.clone(), l.start, l.end))
        }
    };
    let mut holdouts = Vec::with_capacity(e.holdouts.len());
    for (i, h) in e.holdouts.iter().enumerate() {
        match holdout_index.get(h.as_str()) {
            Some(&hi) => holdouts.push(hi),
            None => {
                return Err(error(
                    K,
                    &e.key,
                    format!("holdouts[{i}]"),
                    format!("unknown holdout {h:?}"),
                ));
            }
        }
    }
    let winner = match &e.winner {
        None => None,
        Some(w) => Some(variation_lookup(K, &e.key, &variation_keys, "winner", w)?),
    };
    Ok(CompiledExperiment {
        key: e.key.clone(),
        status: e.status,
        arms,
        bucket_by: e.bucket_by.clone(),
        conditions: compile_conditions(K, &e.key, "", &e.conditions, Some(seg_lookup)).map_err(
            |mut err| {
                err.field = err.field.trim_start_matches('.').to_string();
                err
            },
        )?,
        layer,
        holdouts,
        winner,
    })
}

fn compile_flag(
    f: &Flag,
    all_flags: &[Flag],
    flag_index: &HashMap<String, usize>,
    experiment_index: &HashMap<String, usize>,
    experiments: &[Experiment],
    seg_lookup: &dyn Fn(&str) -> Option<usize>,
) -> Result<CompiledFlag, CompileError> {
    const K: &str = "flag";
    let key = f.key.as_str();
    if f.variations.is_empty() {
        return Err(error(K, key, "variations", "needs at least one variation"));
    }
    let mut variation_keys = Vec::with_capacity(f.variations.len());
    for (i, v) in f.variations.iter().enumerate() {
        if v.key.is_empty() {
            return Err(error(
                K,
                key,
                format!("variations[{i}].key"),
                "must not be empty",
            ));
        }
        if variation_keys.contains(&v.key) {
            return Err(error(
                K,
                key,
                format!("variations[{i}].key"),
                format!("duplicate variation {:?}", v.key),
            ));
        }
        if !f.flag_type.admits(&v.value) {
            return Err(error(
                K,
                key,
                format!("variations[{i}].value"),
                format!("is not a {} value", f.flag_type.as_str()),
            ));
        }
        variation_keys.push(v.key.clone());
    }
    let off = variation_lookup(K, key, &variation_keys, "off_variation", &f.off_variation)?;

    let mut prerequisites = Vec::with_capacity(f.prerequisites.len());
    for (i, p) in f.prerequisites.iter().enumerate() {
        let Some(&pi) = flag_index.get(p.flag.as_str()) else {
            return Err(error(
                K,
                key,
                format!("prerequisites[{i}].flag"),
                format!("unknown flag {:?}", p.flag),
            ));
        };
        let pkeys: Vec<String> = all_flags[pi]
            .variations
            .iter()
            .map(|v| v.key.clone())
            .collect();
        let mut wanted = Vec::with_capacity(p.variations.len());
        for (j, v) in p.variations.iter().enumerate() {
            wanted.push(variation_lookup(
                K,
                key,
                &pkeys,
                &format!("prerequisites[{i}].variations[{j}]"),
                v,
            )?);
        }
        prerequisites.push((pi, wanted));
    }

    let serve = |field: &str, s: &Serve| -> Result<CompiledServe, CompileError> {
        match s {
            Serve::Variation(v) => Ok(CompiledServe::Variation(variation_lookup(
                K,
                key,
                &variation_keys,
                &format!("{field}.variation"),
                v,
            )?)),
            Serve::Split(split) => {
                check_attribute(
                    K,
                    key,
                    &format!("{field}.split.bucket_by"),
                    &split.bucket_by,
                )?;
                let ranges = weighted_ranges(
                    K,
                    key,
                    &format!("{field}.split.weights"),
                    &split.weights,
                    &variation_keys,
                )?;
                Ok(CompiledServe::Split {
                    bucket_by: split.bucket_by.clone(),
                    ranges: ranges
                        .into_iter()
                        .filter(|(s, e, _)| e > s)
                        .map(|(_, e, v)| (e, v))
                        .collect(),
                })
            }
            Serve::Experiment(e) => {
                let Some(&ei) = experiment_index.get(e.as_str()) else {
                    return Err(error(
                        K,
                        key,
                        format!("{field}.experiment"),
                        format!("unknown experiment {e:?}"),
                    ));
                };
                if experiments[ei].flag != f.key {
                    return Err(error(
                        K,
                        key,
                        format!("{field}.experiment"),
                        format!(
                            "experiment {e:?} belongs to flag {:?}",
                            experiments[ei].flag
                        ),
                    ));
                }
                Ok(CompiledServe::Experiment(ei))
            }
        }
    };

    let mut rules = Vec::with_capacity(f.rules.len());
    for (ri, r) in f.rules.iter().enumerate() {
        let prefix = format!("rules[{ri}]");
        rules.push(CompiledRule {
            id: r.id.clone(),
            conditions: compile_conditions(K, key, &prefix, &r.conditions, Some(seg_lookup))?,
            serve: serve(&format!("{prefix}.serve"), &r.serve)?,
        });
    }
    let fallthrough = serve("fallthrough", &f.fallthrough)?;
    // OFREP (and OpenFeature's flag metadata) carry booleans, strings and
    // numbers only.
    for (name, value) in &f.metadata {
        if !(value.is_boolean() || value.is_string() || value.is_number()) {
            return Err(error(
                K,
                key,
                format!("metadata.{name}"),
                "must be a boolean, string or number",
            ));
        }
    }

    Ok(CompiledFlag {
        key: f.key.clone(),
        flag_type: f.flag_type,
        values: f.variations.iter().map(|v| v.value.clone()).collect(),
        variation_keys,
        enabled: f.enabled,
        off,
        prerequisites,
        rules,
        fallthrough,
        metadata: f.metadata.clone(),
    })
}

/// Rejects prerequisite cycles (depth-first
/// search with colours).
fn check_prerequisite_cycles(flags: &[CompiledFlag]) -> Result<(), CompileError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    /// `path` holds (flag, index of the prerequisite followed out of it).
    fn visit(
        i: usize,
        flags: &[CompiledFlag],
        marks: &mut [Mark],
        path: &mut Vec<(usize, usize)>,
    ) -> Result<(), CompileError> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Active => {
                let start = path.iter().position(|&(p, _)| p == i).unwrap_or(0);
                let mut names: Vec<&str> = path[start..]
                    .iter()
                    .map(|&(p, _)| flags[p].key.as_str())
                    .collect();
                names.push(flags[i].key.as_str());
                // Blame the edge that closes the cycle.
                let (from, edge) = path.last().copied().unwrap_or((i, 0));
                return Err(error(
                    "flag",
                    &flags[from].key,
                    format!("prerequisites[{edge}].flag"),
                    format!("prerequisite cycle: {}", names.join(" -> ")),
                ));
            }
            Mark::New => {}
        }
        marks[i] = Mark::Active;
        for (edge, (p, _)) in flags[i].prerequisites.iter().enumerate() {
            path.push((i, edge));
            visit(*p, flags, marks, path)?;
            path.pop();
        }
        marks[i] = Mark::Done;
        Ok(())
    }
    let mut marks = vec![Mark::New; flags.len()];
    let mut path = Vec::new();
    for i in 0..flags.len() {
        visit(i, flags, &mut marks, &mut path)?;
    }
    Ok(())
}
