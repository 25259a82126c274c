use thiserror::Error;

/// Why an analysis document was rejected. Each message names the offending field
/// with a path such as `metrics[2].data[1].sum_squares`.
#[derive(Debug, Error)]
pub enum AnalyzeError {
    #[error("invalid analysis document at `{path}`: {message}")]
    Parse { path: String, message: String },
    #[error("invalid value for `{field}`: {reason}")]
    Invalid { field: String, reason: String },
    #[error("could not encode the results: {0}")]
    Encode(String),
}
