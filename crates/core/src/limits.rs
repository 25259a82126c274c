//! Bounds on what one environment's configuration may cost to evaluate.
//!
//! Configuration is written by editors, but it is evaluated on every
//! request of every client SDK. [`crate::compile`] therefore rejects a
//! document whose evaluation would be unbounded in stack, time or memory,
//! naming the entity that breaks the bound; evaluation itself never
//! recurses (prerequisites are resolved with an explicit stack no deeper
//! than [`MAX_PREREQUISITE_DEPTH`], and memoised within one evaluation).
//! `docs/evaluation.md` states the limits and why they are what they are;
//! `cargo bench -p switchyard-core --bench limits` measures them.

/// Longest chain of prerequisites: a flag with one prerequisite that has
/// none is at depth 1.
pub const MAX_PREREQUISITE_DEPTH: usize = 32;

/// Largest cost of evaluating every flag of an environment (a bulk
/// evaluation; one flag's evaluation costs at most as much), in units of
/// [`evaluation cost`](crate::Evaluator::evaluation_cost): roughly one
/// condition test each.
pub const MAX_EVALUATION_COST: u64 = 1_000_000;

/// Largest compiled program of one regex, in bytes; guards against
/// patterns whose automaton explodes (`(a{1000}){1000}`, `\w{500}`).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Longest accepted regex source, in bytes.
pub const REGEX_MAX_LEN: usize = 4096;

/// Lazy DFA cache capacity of a regex, per byte of its program, per
/// evaluating thread (each regex has a forward and a reverse one), within
/// [`REGEX_MIN_CACHE`]..=[`REGEX_MAX_CACHE`]: enough for its lazy DFA to
/// run without thrashing on ordinary input.
pub const REGEX_CACHE_PER_PROGRAM_BYTE: usize = 4;

/// Smallest lazy DFA cache; hand-written patterns' programs (2 to 12 KiB
/// for the common shapes) get this one.
pub const REGEX_MIN_CACHE: usize = 32 << 10;

/// Largest lazy DFA cache.
pub const REGEX_MAX_CACHE: usize = 256 << 10;

/// Largest memory the regexes of one environment may account for: each
/// counts twice its program (the program, and the NFA simulation's cache)
/// plus its two lazy DFA caches (one evaluating thread's worth).
pub const REGEX_MEMORY_LIMIT: usize = 64 << 20;

/// Longest string a regex is matched against. A longer attribute value is
/// unusable for `matches` / `not_matches` (both are false), like a value of
/// another type: a match costs up to program size times input length.
pub const REGEX_MAX_INPUT: usize = 4 << 10;

/// Program bytes of a regex that count as one more unit of evaluation
/// cost: a match on [`REGEX_MAX_INPUT`] bytes of hostile input takes up
/// to a few nanoseconds per program byte.
pub const REGEX_BYTES_PER_UNIT: usize = 4;
