//! Compilation: a [`ConfigDocument`] is checked and turned into an
//! [`Evaluator`] once, so that evaluation is lookups and comparisons only.
//! Every problem a document can have is found here, with the entity key and
//! field path in the error; evaluation itself never fails on configuration.

use hashbrown::HashTable;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use serde_json::{Map, Value};

use crate::bucket::{BUCKETS, Salted};
use crate::condition::bytes_eq;
use crate::condition::{CompiledCondition, SegmentLookup, compile_condition};
use crate::context::{AttributeName, hash_name};
use crate::limits::{MAX_EVALUATION_COST, MAX_PREREQUISITE_DEPTH, REGEX_MEMORY_LIMIT};
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
    /// Positions in `flags` by the key's [`hash_name`].
    pub(crate) flag_index: HashTable<u32>,
    pub(crate) segments: Vec<CompiledSegment>,
    pub(crate) experiments: Vec<CompiledExperiment>,
    pub(crate) holdouts: Vec<CompiledHoldout>,
    /// Flag indices with every flag after its prerequisites; empty when no
    /// flag has prerequisites (document order then serves).
    pub(crate) order: Vec<u32>,
    /// Cost of evaluating every flag once (see `crate::limits`).
    pub(crate) cost: u64,
    /// Memory the regexes account for (see `crate::limits::regex_memory`).
    pub(crate) regex_memory: usize,
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
        bucket_by: AttributeName,
        /// The flag key, hashed once.
        salt: Salted,
        ranges: Vec<(u32, usize)>,
    },
    Experiment(usize),
}

#[derive(Debug)]
pub(crate) struct CompiledSegment {
    pub(crate) included: HashSet<String>,
    pub(crate) excluded: HashSet<String>,
    pub(crate) rules: Vec<Vec<CompiledCondition>>,
    /// Cost of one membership test.
    pub(crate) cost: u64,
}

#[derive(Debug)]
pub(crate) struct CompiledExperiment {
    pub(crate) key: String,
    /// What the assignment bucket is salted with (the key unless set),
    /// hashed once.
    pub(crate) salt: Salted,
    pub(crate) phase: u32,
    pub(crate) status: ExperimentStatus,
    /// `[start, end)` bucket ranges with the variation index of the flag.
    pub(crate) arms: Vec<(u32, u32, usize)>,
    pub(crate) bucket_by: AttributeName,
    pub(crate) conditions: Vec<CompiledCondition>,
    /// The layer's salted hash and its `[start, end)` bucket range.
    pub(crate) layer: Option<(Salted, u32, u32)>,
    pub(crate) holdouts: Vec<usize>,
    pub(crate) winner: Option<usize>,
    /// Cost of one assignment.
    pub(crate) cost: u64,
}

#[derive(Debug)]
pub(crate) struct CompiledHoldout {
    /// The holdout key, hashed once as the salt.
    pub(crate) salt: Salted,
    pub(crate) size: u32,
    pub(crate) bucket_by: AttributeName,
}

impl Evaluator {
    /// The position of the flag `key` in `flags`.
    #[inline]
    pub(crate) fn position(&self, key: &str) -> Option<usize> {
        self.flag_index
            .find(hash_name(key), |&i| {
                self.flags
                    .get(i as usize)
                    .is_some_and(|f| bytes_eq(&f.key, key.as_bytes()))
            })
            .map(|&i| i as usize)
    }
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
            salt: Salted::new(&h.key),
            size: h.size,
            bucket_by: AttributeName::new(&h.bucket_by),
        });
    }

    let mut regex_memory = 0usize;
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
                &mut regex_memory,
            )?);
        }
        // Two set lookups, then the rules (whose conditions cannot name
        // segments).
        let cost = rules
            .iter()
            .map(|r| conditions_cost(r, &[]).saturating_add(1))
            .fold(2u64, u64::saturating_add);
        segments.push(CompiledSegment {
            included: s.included.iter().cloned().collect(),
            excluded: s.excluded.iter().cloned().collect(),
            rules,
            cost,
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
        let mut compiled = compile_experiment(
            e,
            &doc.flags[fi],
            &holdout_index,
            &seg_lookup,
            &mut regex_memory,
        )?;
        compiled.cost =
            2 + compiled.holdouts.len() as u64 + conditions_cost(&compiled.conditions, &segments);
        experiments.push(compiled);
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
            &mut regex_memory,
        )?);
    }
    let order = prerequisite_order(&flags)?;
    check_prerequisite_depth(&flags, &order)?;
    let cost = check_evaluation_cost(&flags, &segments, &experiments)?;
    let order = if flags.iter().any(|f| !f.prerequisites.is_empty()) {
        order
    } else {
        Vec::new()
    };

    let mut by_key = HashTable::with_capacity(flags.len());
    for (i, f) in flags.iter().enumerate() {
        by_key.insert_unique(hash_name(&f.key), i as u32, |&j: &u32| {
            hash_name(&flags[j as usize].key)
        });
    }
    Ok(Evaluator {
        environment: doc.environment.clone(),
        revision: doc.revision,
        flag_index: by_key,
        flags,
        segments,
        experiments,
        holdouts,
        order,
        cost,
        regex_memory,
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

/// Compiles conditions, adding their regexes' memory to `regex_memory`
/// and refusing the regex that would take it over the environment's limit
/// (so that at most one pattern beyond the limit is ever built).
fn compile_conditions(
    kind: &'static str,
    key: &str,
    prefix: &str,
    conditions: &[Condition],
    segments: Option<SegmentLookup<'_>>,
    regex_memory: &mut usize,
) -> Result<Vec<CompiledCondition>, CompileError> {
    let mut out = Vec::with_capacity(conditions.len());
    for (ci, c) in conditions.iter().enumerate() {
        let compiled = compile_condition(c, segments).map_err(|(field, e)| {
            error(kind, key, format!("{prefix}.conditions[{ci}].{field}"), e.0)
        })?;
        let memory = compiled.regex_memory();
        if memory > 0 {
            *regex_memory = regex_memory.saturating_add(memory);
            if *regex_memory > REGEX_MEMORY_LIMIT {
                return Err(error(
                    kind,
                    key,
                    format!("{prefix}.conditions[{ci}].value"),
                    format!(
                        "the environment's regexes would hold {} KiB, over the limit of {} KiB \
                         (this one {} KiB)",
                        *regex_memory >> 10,
                        REGEX_MEMORY_LIMIT >> 10,
                        memory >> 10
                    ),
                ));
            }
        }
        out.push(compiled);
    }
    Ok(out)
}

/// Cost of testing every condition of a list (see `crate::limits`): one
/// unit each, plus the membership tests of the segments it names.
fn conditions_cost(conditions: &[CompiledCondition], segments: &[CompiledSegment]) -> u64 {
    conditions
        .iter()
        .map(|c| {
            c.segments()
                .iter()
                .map(|&s| segments[s].cost)
                .fold(c.cost(), u64::saturating_add)
        })
        .fold(0u64, u64::saturating_add)
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
    regex_memory: &mut usize,
) -> Result<CompiledExperiment, CompileError> {
    const K: &str = "experiment";
    let variation_keys: Vec<String> = flag.variations.iter().map(|v| v.key.clone()).collect();
    check_bp(K, &e.key, "coverage", e.coverage)?;
    check_attribute(K, &e.key, "bucket_by", &e.bucket_by)?;
    if e.salt.as_deref() == Some("") {
        return Err(error(K, &e.key, "salt", "must not be empty when set"));
    }
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
            Some((Salted::new(&l.key), l.start, l.end))
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
        salt: Salted::new(e.salt()),
        phase: e.phase,
        status: e.status,
        arms,
        bucket_by: AttributeName::new(&e.bucket_by),
        conditions: compile_conditions(
            K,
            &e.key,
            "",
            &e.conditions,
            Some(seg_lookup),
            regex_memory,
        )
        .map_err(|mut err| {
            err.field = err.field.trim_start_matches('.').to_string();
            err
        })?,
        layer,
        holdouts,
        winner,
        cost: 0,
    })
}

fn compile_flag(
    f: &Flag,
    all_flags: &[Flag],
    flag_index: &HashMap<String, usize>,
    experiment_index: &HashMap<String, usize>,
    experiments: &[Experiment],
    seg_lookup: &dyn Fn(&str) -> Option<usize>,
    regex_memory: &mut usize,
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
                    bucket_by: AttributeName::new(&split.bucket_by),
                    salt: Salted::new(key),
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
            conditions: compile_conditions(
                K,
                key,
                &prefix,
                &r.conditions,
                Some(seg_lookup),
                regex_memory,
            )?,
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

/// Orders the flags so that every flag comes after its prerequisites,
/// rejecting prerequisite cycles: a depth-first search with colours, on an
/// explicit stack (a chain of any length cannot overflow the thread's).
fn prerequisite_order(flags: &[CompiledFlag]) -> Result<Vec<u32>, CompileError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; flags.len()];
    let mut order = Vec::with_capacity(flags.len());
    // (flag, number of its prerequisites followed so far): the path from
    // the root; the edge followed out of each entry is `followed - 1`.
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..flags.len() {
        if marks[root] != Mark::New {
            continue;
        }
        marks[root] = Mark::Active;
        stack.push((root, 0));
        while let Some(top) = stack.last_mut() {
            let (i, followed) = *top;
            let Some((p, _)) = flags[i].prerequisites.get(followed) else {
                marks[i] = Mark::Done;
                order.push(i as u32);
                stack.pop();
                continue;
            };
            top.1 += 1;
            match marks[*p] {
                Mark::Done => {}
                Mark::New => {
                    marks[*p] = Mark::Active;
                    stack.push((*p, 0));
                }
                Mark::Active => {
                    let start = stack.iter().position(|&(q, _)| q == *p).unwrap_or(0);
                    let mut names: Vec<&str> = stack[start..]
                        .iter()
                        .map(|&(q, _)| flags[q].key.as_str())
                        .collect();
                    names.push(flags[*p].key.as_str());
                    // Blame the edge that closes the cycle.
                    return Err(error(
                        "flag",
                        &flags[i].key,
                        format!("prerequisites[{followed}].flag"),
                        format!("prerequisite cycle: {}", names.join(" -> ")),
                    ));
                }
            }
        }
    }
    Ok(order)
}

/// Rejects a prerequisite chain deeper than [`MAX_PREREQUISITE_DEPTH`],
/// naming the first flag (in `order`) at which it gets too deep, with the
/// chain below it.
fn check_prerequisite_depth(flags: &[CompiledFlag], order: &[u32]) -> Result<(), CompileError> {
    let mut depth = vec![0usize; flags.len()];
    for &i in order {
        let i = i as usize;
        let Some(deepest) = flags[i]
            .prerequisites
            .iter()
            .map(|(p, _)| depth[*p] + 1)
            .max()
        else {
            continue;
        };
        depth[i] = deepest;
        if deepest > MAX_PREREQUISITE_DEPTH {
            let mut chain = vec![flags[i].key.as_str()];
            let mut at = i;
            while let Some((p, _)) = flags[at]
                .prerequisites
                .iter()
                .max_by_key(|(p, _)| depth[*p])
            {
                at = *p;
                chain.push(flags[at].key.as_str());
                if depth[at] == 0 {
                    break;
                }
            }
            let shown = if chain.len() > 6 {
                format!(
                    "{} -> ... -> {}",
                    chain[..3].join(" -> "),
                    chain[chain.len() - 2..].join(" -> ")
                )
            } else {
                chain.join(" -> ")
            };
            return Err(error(
                "flag",
                &flags[i].key,
                "prerequisites",
                format!(
                    "prerequisite chain {shown} is {deepest} levels deep; the limit is \
                     {MAX_PREREQUISITE_DEPTH}"
                ),
            ));
        }
    }
    Ok(())
}

/// The cost of evaluating every flag once (each prerequisite's result is
/// memoised, so this bounds any single evaluation too), rejected over
/// [`MAX_EVALUATION_COST`] naming the most expensive flag.
fn check_evaluation_cost(
    flags: &[CompiledFlag],
    segments: &[CompiledSegment],
    experiments: &[CompiledExperiment],
) -> Result<u64, CompileError> {
    let serve_cost = |s: &CompiledServe| match s {
        CompiledServe::Variation(_) => 0,
        CompiledServe::Split { .. } => 1,
        CompiledServe::Experiment(e) => experiments[*e].cost,
    };
    let mut total = 0u64;
    let mut most = (0u64, 0usize);
    for (i, f) in flags.iter().enumerate() {
        let cost = f
            .rules
            .iter()
            .map(|r| {
                (1 + serve_cost(&r.serve)).saturating_add(conditions_cost(&r.conditions, segments))
            })
            .fold(
                1 + f.prerequisites.len() as u64 + serve_cost(&f.fallthrough),
                u64::saturating_add,
            );
        total = total.saturating_add(cost);
        if cost > most.0 {
            most = (cost, i);
        }
    }
    if total > MAX_EVALUATION_COST {
        let (cost, i) = most;
        return Err(error(
            "flag",
            &flags[i].key,
            "rules",
            format!(
                "evaluating every flag of the environment would cost {total} units, over the \
                 limit of {MAX_EVALUATION_COST}; this flag, the most expensive, costs {cost} \
                 (a unit is about one condition test; segments count once per reference)"
            ),
        ));
    }
    Ok(total)
}
