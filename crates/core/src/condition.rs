//! Conditions compiled from [`crate::model::Condition`]: operands parsed
//! once (regexes, versions, instants, sets), so matching does no parsing of
//! the configuration, only of the context value.

use rustc_hash::FxHashSet as HashSet;
use std::cmp::Ordering;

use regex_automata::meta::Regex;
use serde_json::{Number, Value};

use crate::context::Context;
use crate::limits::{
    REGEX_CACHE_PER_PROGRAM_BYTE, REGEX_MAX_CACHE, REGEX_MAX_INPUT, REGEX_MAX_LEN, REGEX_MIN_CACHE,
    REGEX_SIZE_LIMIT,
};
use crate::model::{Condition, Operator};

/// A compiled regex and the memory it accounts for.
#[derive(Debug)]
pub(crate) struct Pattern {
    re: Regex,
    /// Program plus the largest caches one thread can grow for it: two
    /// lazy DFAs of the capacity it was built with, and the NFA
    /// simulation's, at most the program's size.
    memory: usize,
}

/// Resolves a segment key to its index in the evaluator.
pub(crate) type SegmentLookup<'a> = &'a dyn Fn(&str) -> Option<usize>;

#[derive(Debug)]
pub(crate) struct CompiledCondition {
    pub(crate) attribute: String,
    pub(crate) test: Test,
}

#[derive(Debug)]
pub(crate) enum Test {
    Equals(Scalar, bool),
    In(ScalarSet, bool),
    Contains(String, bool),
    StartsWith(String),
    EndsWith(String),
    Matches(Box<Pattern>, bool),
    Number(Cmp, f64),
    Semver(Cmp, Box<semver::Version>),
    Instant(Cmp, i128),
    Exists(bool),
    /// Segment indices into the evaluator's segment table; `bool` = negated.
    InSegment(Vec<usize>, bool),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Cmp {
    Lt,
    Lte,
    Gt,
    Gte,
    Eq,
}

impl Cmp {
    #[inline]
    fn holds(self, o: Ordering) -> bool {
        match self {
            Cmp::Lt => o == Ordering::Less,
            Cmp::Lte => o != Ordering::Greater,
            Cmp::Gt => o == Ordering::Greater,
            Cmp::Gte => o != Ordering::Less,
            Cmp::Eq => o == Ordering::Equal,
        }
    }
}

/// A scalar operand for equality and membership.
#[derive(Debug, Clone)]
pub(crate) enum Scalar {
    Str(String),
    Num(f64),
    Bool(bool),
}

impl Scalar {
    fn from_value(v: &Value) -> Option<Scalar> {
        match v {
            Value::String(s) => Some(Scalar::Str(s.clone())),
            Value::Number(n) => n.as_f64().map(Scalar::Num),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            _ => None,
        }
    }

    #[inline]
    fn eq_value(&self, v: &Value) -> bool {
        match (self, v) {
            (Scalar::Str(a), Value::String(b)) => a == b,
            (Scalar::Num(a), Value::Number(b)) => b.as_f64() == Some(*a),
            (Scalar::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }
}

/// Membership set: small lists are scanned, large string lists hashed.
#[derive(Debug)]
pub(crate) struct ScalarSet {
    small: Vec<Scalar>,
    strings: HashSet<String>,
}

const HASH_THRESHOLD: usize = 12;

impl ScalarSet {
    fn new(items: Vec<Scalar>) -> Self {
        if items.len() <= HASH_THRESHOLD {
            return ScalarSet {
                small: items,
                strings: HashSet::default(),
            };
        }
        let mut small = Vec::new();
        let mut strings = HashSet::default();
        for s in items {
            match s {
                Scalar::Str(s) => {
                    strings.insert(s);
                }
                other => small.push(other),
            }
        }
        ScalarSet { small, strings }
    }

    #[inline]
    fn contains(&self, v: &Value) -> bool {
        if let Value::String(s) = v
            && self.strings.contains(s.as_str())
        {
            return true;
        }
        self.small.iter().any(|s| s.eq_value(v))
    }
}

/// Why a condition's operand is unusable; the caller adds flag and path.
#[derive(Debug)]
pub(crate) struct OperandError(pub(crate) String);

/// Parses a semantic version leniently: a leading `v`, and a missing minor
/// or patch (`1`, `1.2`) are accepted.
pub fn parse_semver(s: &str) -> Option<semver::Version> {
    let s = s.trim();
    let s = s
        .strip_prefix('v')
        .or_else(|| s.strip_prefix('V'))
        .unwrap_or(s);
    if let Ok(v) = semver::Version::parse(s) {
        return Some(v);
    }
    // Pad the numeric core: split off pre-release/build first.
    let cut = s.find(['-', '+']).unwrap_or(s.len());
    let (core, rest) = s.split_at(cut);
    let parts = core.split('.').count();
    let padded = match parts {
        1 => format!("{core}.0.0{rest}"),
        2 => format!("{core}.0{rest}"),
        _ => return None,
    };
    semver::Version::parse(&padded).ok()
}

/// An instant as nanoseconds since the Unix epoch, from an RFC 3339 string
/// or a number of seconds.
pub fn parse_instant(v: &Value) -> Option<i128> {
    match v {
        Value::String(s) => {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|t| t.unix_timestamp_nanos())
        }
        Value::Number(n) => number_to_nanos(n),
        _ => None,
    }
}

fn number_to_nanos(n: &Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        return i128::from(i).checked_mul(1_000_000_000);
    }
    let f = n.as_f64()?;
    if !f.is_finite() || f.abs() > 1e15 {
        return None;
    }
    Some((f * 1e9).round() as i128)
}

/// Compiles one condition. `segment_index` resolves segment keys; it is
/// `None` where segment operators are not allowed (inside segments).
pub(crate) fn compile_condition(
    c: &Condition,
    segment_index: Option<SegmentLookup<'_>>,
) -> Result<CompiledCondition, (String, OperandError)> {
    let err = |field: &str, msg: String| Err((field.to_string(), OperandError(msg)));
    if c.attribute.is_empty() {
        return err("attribute", "must not be empty".into());
    }
    let v = &c.value;
    let need_string = |what: &str| -> Result<String, (String, OperandError)> {
        match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err((
                "value".to_string(),
                OperandError(format!("{what} needs a string operand")),
            )),
        }
    };
    let test = match c.op {
        Operator::Equals | Operator::NotEquals => match Scalar::from_value(v) {
            Some(s) => Test::Equals(s, c.op == Operator::NotEquals),
            None => return err("value", "needs a string, number or boolean operand".into()),
        },
        Operator::In | Operator::NotIn => {
            let Value::Array(items) = v else {
                return err("value", "needs a list operand".into());
            };
            let mut set = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match Scalar::from_value(item) {
                    Some(s) => set.push(s),
                    None => {
                        return err(
                            &format!("value[{i}]"),
                            "list elements must be strings, numbers or booleans".into(),
                        );
                    }
                }
            }
            Test::In(ScalarSet::new(set), c.op == Operator::NotIn)
        }
        Operator::Contains | Operator::NotContains => {
            Test::Contains(need_string("contains")?, c.op == Operator::NotContains)
        }
        Operator::StartsWith => Test::StartsWith(need_string("starts_with")?),
        Operator::EndsWith => Test::EndsWith(need_string("ends_with")?),
        Operator::Matches | Operator::NotMatches => {
            let src = need_string("matches")?;
            if src.len() > REGEX_MAX_LEN {
                return err(
                    "value",
                    format!("invalid regex: longer than {REGEX_MAX_LEN} bytes"),
                );
            }
            let pattern =
                build_pattern(&src).map_err(|e| ("value".to_string(), OperandError(e)))?;
            Test::Matches(Box::new(pattern), c.op == Operator::NotMatches)
        }
        Operator::Lt | Operator::Lte | Operator::Gt | Operator::Gte => {
            let Some(n) = v.as_f64() else {
                return err("value", "needs a number operand".into());
            };
            Test::Number(cmp_of(c.op), n)
        }
        Operator::SemverEq
        | Operator::SemverLt
        | Operator::SemverLte
        | Operator::SemverGt
        | Operator::SemverGte => {
            let s = need_string("semver operators")?;
            let Some(ver) = parse_semver(&s) else {
                return err("value", format!("invalid semantic version {s:?}"));
            };
            Test::Semver(cmp_of(c.op), Box::new(ver))
        }
        Operator::Before | Operator::After => {
            let Some(t) = parse_instant(v) else {
                return err(
                    "value",
                    "needs an RFC 3339 date-time string or a number of Unix seconds".into(),
                );
            };
            Test::Instant(
                if c.op == Operator::Before {
                    Cmp::Lt
                } else {
                    Cmp::Gt
                },
                t,
            )
        }
        Operator::Exists | Operator::NotExists => {
            if !v.is_null() {
                return err("value", "exists/not_exists take no operand".into());
            }
            Test::Exists(c.op == Operator::NotExists)
        }
        Operator::InSegment | Operator::NotInSegment => {
            let Some(lookup) = segment_index else {
                return err("op", "segment rules cannot use segment operators".into());
            };
            let Value::Array(items) = v else {
                return err("value", "needs a list of segment keys".into());
            };
            let mut idx = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Some(key) = item.as_str() else {
                    return err(&format!("value[{i}]"), "segment keys are strings".into());
                };
                match lookup(key) {
                    Some(j) => idx.push(j),
                    None => return err(&format!("value[{i}]"), format!("unknown segment {key:?}")),
                }
            }
            Test::InSegment(idx, c.op == Operator::NotInSegment)
        }
    };
    Ok(CompiledCondition {
        attribute: c.attribute.clone(),
        test,
    })
}

/// Compiles a pattern with a lazy DFA cache that suits its program:
/// [`REGEX_CACHE_PER_PROGRAM_BYTE`] times its size, within
/// [`REGEX_MIN_CACHE`]..=[`REGEX_MAX_CACHE`]. Most hand-written patterns
/// fit the smallest cache and are built once; a larger program is rebuilt
/// with a larger cache, without which its lazy DFA would not run and
/// every match would take the far slower NFA simulation.
fn build_pattern(src: &str) -> Result<Pattern, String> {
    let cache_for = |re: &Regex| {
        (re.memory_usage() * REGEX_CACHE_PER_PROGRAM_BYTE).clamp(REGEX_MIN_CACHE, REGEX_MAX_CACHE)
    };
    let mut re = build_regex(src, REGEX_MIN_CACHE)?;
    let cache = cache_for(&re);
    if cache > REGEX_MIN_CACHE {
        re = build_regex(src, cache)?;
    }
    Ok(Pattern {
        memory: 2 * re.memory_usage() + 2 * cache,
        re,
    })
}

/// Compiles a pattern with the `regex` crate's semantics (Unicode, UTF-8,
/// leftmost-first), through its engine `regex_automata::meta`, which can
/// say how much memory the compiled pattern holds. The program size and
/// the lazy DFA's cache are both capped (`crate::limits`).
fn build_regex(src: &str, cache: usize) -> Result<Regex, String> {
    use regex_automata::util::syntax;
    let config = Regex::config()
        .utf8_empty(true)
        .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
        .hybrid_cache_capacity(cache)
        // Only `is_match` is used: engines that serve capture groups
        // would hold memory for nothing (the backtracker's visited set is
        // 256 KiB per thread and regex, and not configurable here).
        .backtrack(false)
        .onepass(false);
    Regex::builder()
        .configure(config)
        .syntax(syntax::Config::new().utf8(true))
        .build(src)
        .map_err(|e| {
            if let Some(limit) = e.size_limit() {
                format!("invalid regex: its compiled program exceeds the limit of {limit} bytes")
            } else if let Some(syntax) = e.syntax_error() {
                format!("invalid regex: {syntax}")
            } else {
                format!("invalid regex: {e}")
            }
        })
}

fn cmp_of(op: Operator) -> Cmp {
    match op {
        Operator::Lt | Operator::SemverLt => Cmp::Lt,
        Operator::Lte | Operator::SemverLte => Cmp::Lte,
        Operator::Gt | Operator::SemverGt => Cmp::Gt,
        Operator::Gte | Operator::SemverGte => Cmp::Gte,
        _ => Cmp::Eq,
    }
}

/// Checks a condition that may not use segment operators; the message
/// says what is wrong with its operand.
pub(crate) fn check_condition(c: &Condition) -> Result<CompiledCondition, String> {
    compile_condition(c, None).map_err(|(field, e)| format!("{field}: {}", e.0))
}

impl CompiledCondition {
    /// Heap memory a regex operand may hold: its compiled program plus the
    /// largest cache one evaluating thread can grow for it. Zero for every
    /// other operator.
    pub(crate) fn regex_memory(&self) -> usize {
        match &self.test {
            Test::Matches(p, _) => p.memory,
            _ => 0,
        }
    }

    /// Cost of one test, in the units of
    /// [`crate::limits::MAX_EVALUATION_COST`]: one, and for a regex one
    /// more per [`crate::limits::REGEX_BYTES_PER_UNIT`] of its program
    /// (matching time on an input of [`REGEX_MAX_INPUT`] bytes grows with
    /// the program). Segment references are added by the caller.
    pub(crate) fn cost(&self) -> u64 {
        match &self.test {
            Test::Matches(p, _) => {
                1 + (p.re.memory_usage() / crate::limits::REGEX_BYTES_PER_UNIT) as u64
            }
            _ => 1,
        }
    }

    /// The segments a segment operator refers to; empty for every other
    /// operator.
    pub(crate) fn segments(&self) -> &[usize] {
        match &self.test {
            Test::InSegment(segments, _) => segments,
            _ => &[],
        }
    }

    /// Whether the condition holds. Segment tests are delegated to
    /// `in_segment(segment_index, unit)`.
    #[inline]
    pub(crate) fn holds(
        &self,
        ctx: &Context,
        in_segment: &dyn Fn(usize, Option<&Value>) -> bool,
    ) -> bool {
        let attr = ctx.get(&self.attribute);
        if let Test::InSegment(segments, negated) = &self.test {
            let any = segments.iter().any(|&s| in_segment(s, attr));
            return any != *negated;
        }
        let Some(v) = attr else {
            return matches!(self.test, Test::Exists(true));
        };
        match &self.test {
            // JSON equality over any present value: a different type is
            // simply not equal (so `not_equals` holds).
            Test::Equals(s, neg) => s.eq_value(v) != *neg,
            Test::In(set, neg) => match v {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => set.contains(v) != *neg,
                _ => false,
            },
            Test::Contains(needle, neg) => match v {
                Value::String(s) => s.contains(needle.as_str()) != *neg,
                _ => false,
            },
            Test::StartsWith(p) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
            Test::EndsWith(p) => v.as_str().is_some_and(|s| s.ends_with(p.as_str())),
            // A longer string is unusable, like a type mismatch: matching
            // costs up to (program size x input length).
            Test::Matches(p, neg) => match v {
                Value::String(s) if s.len() <= REGEX_MAX_INPUT => p.re.is_match(s) != *neg,
                _ => false,
            },
            Test::Number(cmp, n) => match v.as_f64() {
                Some(x) if v.is_number() => x.partial_cmp(n).is_some_and(|o| cmp.holds(o)),
                _ => false,
            },
            Test::Semver(cmp, want) => match v.as_str().and_then(parse_semver) {
                Some(have) => cmp.holds(have.cmp_precedence(want)),
                None => false,
            },
            Test::Instant(cmp, t) => match parse_instant(v) {
                Some(have) => cmp.holds(have.cmp(t)),
                None => false,
            },
            Test::Exists(neg) => !*neg,
            Test::InSegment(..) => false,
        }
    }
}
