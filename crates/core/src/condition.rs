//! Conditions compiled from [`crate::model::Condition`]: operands parsed
//! once (regexes, versions, instants, sets), so matching does no parsing of
//! the configuration, only of the context value.

use rustc_hash::FxHashSet as HashSet;
use std::cmp::Ordering;

use regex_automata::meta::Regex;
use serde_json::{Number, Value};

use crate::context::{AttributeName, Context};
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
    pub(crate) attribute: AttributeName,
    pub(crate) test: Test,
}

#[derive(Debug)]
pub(crate) enum Test {
    Equals(Scalar, bool),
    In(ScalarSet, bool),
    Contains(String, bool),
    StartsWith(Text),
    EndsWith(Text),
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

/// Whether two byte strings are equal, comparing strings of up to 16
/// bytes (attribute names, country codes, plans) with a few loads instead
/// of a call to `memcmp`.
#[inline(always)]
pub(crate) fn bytes_eq(a: impl AsRef<[u8]>, b: &[u8]) -> bool {
    let a = a.as_ref();
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // In range: `n` is at least the width read.
    let word = |s: &[u8], i: usize| <[u8; 8]>::try_from(&s[i..i + 8]).ok();
    let half = |s: &[u8], i: usize| <[u8; 4]>::try_from(&s[i..i + 4]).ok();
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// A string operand with a fingerprint of its bytes, so that comparing it
/// with the short strings contexts hold is a few integer compares instead
/// of a call to `memcmp`.
#[derive(Debug, Clone)]
pub(crate) struct Text {
    text: String,
    head: u64,
}

/// Up to eight bytes of `b` that, together with its length, determine a
/// string of at most eight bytes: all of it from 8 bytes down; for 4 to 7
/// bytes the first four and the last four (overlapping); for 1 to 3 bytes
/// the first, middle and last byte. Longer strings also compare the rest.
#[inline(always)]
fn head(b: &[u8]) -> u64 {
    let n = b.len();
    if n >= 8 {
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    } else if n >= 4 {
        let first = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let last = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]);
        u64::from(first) | (u64::from(last) << 32)
    } else if n > 0 {
        u64::from(b[0]) | (u64::from(b[n / 2]) << 8) | (u64::from(b[n - 1]) << 16)
    } else {
        0
    }
}

impl Text {
    fn new(text: String) -> Self {
        Text {
            head: head(text.as_bytes()),
            text,
        }
    }

    /// Whether `b`, whose [`head`] is `h`, is this text.
    #[inline(always)]
    fn is(&self, b: &[u8], h: u64) -> bool {
        self.head == h && self.text.len() == b.len() && (b.len() <= 8 || bytes_eq(&self.text, b))
    }

    #[inline]
    fn eq_str(&self, s: &str) -> bool {
        self.is(s.as_bytes(), head(s.as_bytes()))
    }

    #[inline]
    fn is_prefix_of(&self, s: &str) -> bool {
        s.as_bytes()
            .get(..self.text.len())
            .is_some_and(|p| self.is(p, head(p)))
    }

    #[inline]
    fn is_suffix_of(&self, s: &str) -> bool {
        let b = s.as_bytes();
        b.len()
            .checked_sub(self.text.len())
            .is_some_and(|start| self.is(&b[start..], head(&b[start..])))
    }
}

/// A scalar operand for equality and membership.
#[derive(Debug, Clone)]
pub(crate) enum Scalar {
    Str(Text),
    Num(f64),
    Bool(bool),
}

impl Scalar {
    fn from_value(v: &Value) -> Option<Scalar> {
        match v {
            Value::String(s) => Some(Scalar::Str(Text::new(s.clone()))),
            Value::Number(n) => n.as_f64().map(Scalar::Num),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            _ => None,
        }
    }

    #[inline(always)]
    fn eq_value(&self, v: &Value) -> bool {
        match (self, v) {
            (Scalar::Str(a), Value::String(b)) => a.eq_str(b),
            (Scalar::Num(a), Value::Number(b)) => b.as_f64() == Some(*a),
            (Scalar::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }
}

/// Membership set: small lists are scanned (strings by fingerprint, see
/// [`Text`]), large string lists hashed.
#[derive(Debug)]
pub(crate) struct ScalarSet {
    /// The strings of a small list.
    texts: Vec<Text>,
    /// Numbers and booleans (of any list).
    others: Vec<Scalar>,
    /// The strings of a large list.
    strings: HashSet<String>,
}

const HASH_THRESHOLD: usize = 12;

impl ScalarSet {
    fn new(items: Vec<Scalar>) -> Self {
        let hashed = items.len() > HASH_THRESHOLD;
        let mut set = ScalarSet {
            texts: Vec::new(),
            others: Vec::new(),
            strings: HashSet::default(),
        };
        for s in items {
            match s {
                Scalar::Str(t) if hashed => {
                    set.strings.insert(t.text);
                }
                Scalar::Str(t) => set.texts.push(t),
                other => set.others.push(other),
            }
        }
        set
    }

    #[inline(always)]
    fn contains(&self, v: &Value) -> bool {
        match v {
            Value::String(s) => {
                let (b, h) = (s.as_bytes(), head(s.as_bytes()));
                self.texts.iter().any(|t| t.is(b, h))
                    || (!self.strings.is_empty() && self.strings.contains(s.as_str()))
            }
            _ => self.others.iter().any(|s| s.eq_value(v)),
        }
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

/// The numeric core of a plain release version, `MAJOR[.MINOR[.PATCH]]`
/// with an optional leading `v` or `V`, each number of at most 19 digits
/// (so within `u64`) without leading zeros: the common form of a context's
/// version, read without the parser. `None` for anything else, valid or
/// not (surrounding space, pre-release, build metadata, longer numbers):
/// [`cmp_semver`] then uses [`parse_semver`], which reads every string
/// accepted here as the same release.
#[inline]
fn plain_release(s: &str) -> Option<[u64; 3]> {
    let b = match s.as_bytes() {
        [b'v' | b'V', rest @ ..] => rest,
        b => b,
    };
    let mut core = [0u64; 3];
    let mut i = 0;
    for (part, slot) in core.iter_mut().enumerate() {
        let start = i;
        let mut n = 0u64;
        while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|&d| d <= 9) {
            // Wraps only past 19 digits, which are refused below.
            n = n.wrapping_mul(10).wrapping_add(u64::from(d));
            i += 1;
        }
        let len = i - start;
        if len == 0 || len > 19 || (len > 1 && b[start] == b'0') {
            return None;
        }
        *slot = n;
        match b.get(i) {
            None => return Some(core),
            Some(b'.') if part < 2 => i += 1,
            Some(_) => return None,
        }
    }
    None
}

/// The SemVer precedence of the context's version `have` against `want`;
/// `None` when `have` is not a version ([`parse_semver`]). A plain release
/// (the common case) is compared without parsing or allocating.
#[inline]
pub(crate) fn cmp_semver(have: &str, want: &semver::Version) -> Option<Ordering> {
    if let Some(core) = plain_release(have) {
        let o = core.cmp(&[want.major, want.minor, want.patch]);
        // A release comes after the pre-releases of the same core.
        return Some(if o == Ordering::Equal && !want.pre.is_empty() {
            Ordering::Greater
        } else {
            o
        });
    }
    cmp_parsed(have, want)
}

/// [`cmp_semver`] for what is not a plain release.
#[cold]
#[inline(never)]
fn cmp_parsed(have: &str, want: &semver::Version) -> Option<Ordering> {
    parse_semver(have).map(|h| h.cmp_precedence(want))
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
        Operator::StartsWith => Test::StartsWith(Text::new(need_string("starts_with")?)),
        Operator::EndsWith => Test::EndsWith(Text::new(need_string("ends_with")?)),
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
        attribute: AttributeName::new(&c.attribute),
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
    #[inline(always)]
    pub(crate) fn holds(
        &self,
        ctx: &Context,
        in_segment: &dyn Fn(usize, Option<&Value>) -> bool,
    ) -> bool {
        let attr = ctx.get_named(&self.attribute);
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
            Test::StartsWith(p) => v.as_str().is_some_and(|s| p.is_prefix_of(s)),
            Test::EndsWith(p) => v.as_str().is_some_and(|s| p.is_suffix_of(s)),
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
            Test::Semver(cmp, want) => match v.as_str().and_then(|s| cmp_semver(s, want)) {
                Some(o) => cmp.holds(o),
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What `cmp_semver` must equal: the parser, then SemVer precedence.
    fn parsed_cmp(have: &str, want: &semver::Version) -> Option<Ordering> {
        parse_semver(have).map(|h| h.cmp_precedence(want))
    }

    /// Version-like strings: plain releases of one to four parts, with
    /// leading zeros, numbers past `u64`, a `v` prefix, surrounding space,
    /// pre-release and build parts, and stray characters.
    fn version_like() -> impl Strategy<Value = String> {
        let number = prop_oneof![
            4 => (0u64..20).prop_map(|n| n.to_string()),
            1 => any::<u64>().prop_map(|n| n.to_string()),
            1 => Just("18446744073709551616".to_string()),
            1 => "0[0-9]{1,2}",
            1 => Just(String::new()),
        ];
        (
            prop_oneof![4 => Just(""), 1 => Just("v"), 1 => Just("V"), 1 => Just(" "), 1 => Just("vv")],
            proptest::collection::vec(number, 1..=4),
            prop_oneof![
                4 => Just(String::new()),
                1 => "-[0-9A-Za-z]{1,4}(\\.[0-9A-Za-z-]{1,4}){0,2}",
                1 => "\\+[0-9A-Za-z]{1,4}",
                1 => "-(alpha|beta|rc)\\.[0-9]\\+b[0-9]",
                1 => "[ .x-]",
            ],
        )
            .prop_map(|(prefix, parts, suffix)| format!("{prefix}{}{suffix}", parts.join(".")))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn fast_semver_comparison_agrees_with_the_parser(
            have in version_like(),
            want in version_like(),
        ) {
            if let Some(want) = parse_semver(&want) {
                prop_assert_eq!(cmp_semver(&have, &want), parsed_cmp(&have, &want), "{} vs {}", have, want);
            }
        }

        #[test]
        fn a_plain_release_is_what_the_parser_reads(have in version_like()) {
            if let Some([major, minor, patch]) = plain_release(&have) {
                let v = parse_semver(&have);
                prop_assert!(v.is_some(), "{:?} read as plain but the parser refuses it", have);
                let v = v.unwrap();
                prop_assert_eq!((v.major, v.minor, v.patch), (major, minor, patch));
                prop_assert!(v.pre.is_empty() && v.build.is_empty());
            }
        }

        #[test]
        fn text_comparisons_agree_with_str(a in "[ab]{0,10}", b in "[ab]{0,10}") {
            let t = Text::new(a.clone());
            prop_assert_eq!(t.eq_str(&b), a == b);
            prop_assert_eq!(t.is_prefix_of(&b), b.starts_with(&a));
            prop_assert_eq!(t.is_suffix_of(&b), b.ends_with(&a));
        }
    }

    #[test]
    fn fast_semver_comparison_handles_pre_releases_and_edge_forms() {
        let v = |s: &str| parse_semver(s).unwrap();
        let cases = [
            ("2.4.1", "2.0.0", Some(Ordering::Greater)),
            ("2.0.0", "2.0.0-rc.1", Some(Ordering::Greater)),
            ("2.0.0-rc.1", "2.0.0", Some(Ordering::Less)),
            ("v2", "2.0.0", Some(Ordering::Equal)),
            ("2.1", "2.1.0+build", Some(Ordering::Equal)),
            (" 2.1.0 ", "2.1.0", Some(Ordering::Equal)),
            ("01.2.3", "1.2.3", None),
            ("1.2.3.4", "1.2.3", None),
            ("18446744073709551616.0.0", "1.0.0", None),
            ("", "1.0.0", None),
        ];
        for (have, want, expected) in cases {
            assert_eq!(cmp_semver(have, &v(want)), expected, "{have} vs {want}");
            assert_eq!(parsed_cmp(have, &v(want)), expected, "{have} vs {want}");
        }
        assert_eq!(
            plain_release("v9999999999999999999.0"),
            Some([9_999_999_999_999_999_999, 0, 0])
        );
        // Twenty digits go to the parser, which still reads `u64::MAX`.
        assert_eq!(plain_release("18446744073709551615.0.0"), None);
        assert_eq!(
            cmp_semver("18446744073709551615.0.0", &v("1.0.0")),
            Some(Ordering::Greater)
        );
        assert_eq!(plain_release("1.2.3-rc.1"), None);
    }

    #[test]
    fn short_and_long_strings_compare_by_every_byte() {
        // Same length, same first/middle/last bytes where a fingerprint
        // could collide if it looked at fewer bytes.
        let pairs = [
            ("abc", "abc", true),
            ("abc", "aXc", false),
            ("abcde", "abXde", false),
            ("abcdefg", "abcXefg", false),
            ("abcdefgh", "abcdefgX", false),
            ("abcdefghij", "abcdefghiX", false),
            ("abcdefghij", "abcdefghij", true),
            ("", "", true),
            ("a", "", false),
        ];
        for (a, b, eq) in pairs {
            assert_eq!(Text::new(a.into()).eq_str(b), eq, "{a} vs {b}");
            assert_eq!(Text::new(b.into()).eq_str(a), eq, "{b} vs {a}");
        }
        let set = ScalarSet::new(
            ["DE", "FR", "NL", "SE", "NO"]
                .map(|s| Scalar::Str(Text::new(s.into())))
                .into_iter()
                .chain([Scalar::Num(5.0), Scalar::Bool(true)])
                .collect(),
        );
        assert!(set.contains(&Value::from("NL")));
        assert!(!set.contains(&Value::from("US")));
        assert!(!set.contains(&Value::from("N")));
        assert!(set.contains(&Value::from(5)));
        assert!(set.contains(&Value::from(true)));
        assert!(!set.contains(&Value::from("5")));
    }
}
