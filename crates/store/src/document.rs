//! Building one environment's [`ConfigDocument`] from stored definitions,
//! and checking it with the evaluator's compiler. Pure: no I/O.

use switchyard_core::model::{ConfigDocument, Flag, Holdout, Segment};

use crate::error::{Result, StoreError};
use crate::types::{ExperimentDefinition, FlagDefinition, HoldoutDefinition, SegmentDefinition};

/// Everything that goes into one environment's document.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    pub flags: Vec<FlagDefinition>,
    pub segments: Vec<SegmentDefinition>,
    pub experiments: Vec<ExperimentDefinition>,
    pub holdouts: Vec<HoldoutDefinition>,
}

/// The document of `environment`: its non-archived flags with their settings
/// there, every segment of the project, its experiments and holdouts.
pub(crate) fn build(environment: &str, revision: u64, parts: Parts) -> ConfigDocument {
    let flags = parts
        .flags
        .into_iter()
        .filter(|f| !f.archived)
        .map(|f| {
            let settings = f.settings_for(environment);
            Flag {
                key: f.key,
                flag_type: f.flag_type,
                variations: f.variations,
                enabled: settings.enabled,
                off_variation: settings.off_variation,
                prerequisites: settings.prerequisites,
                rules: settings.rules,
                fallthrough: settings.fallthrough,
                metadata: f.metadata,
            }
        })
        .collect();
    let segments = parts
        .segments
        .into_iter()
        .map(|s| Segment {
            key: s.key,
            included: s.included,
            excluded: s.excluded,
            rules: s.rules,
        })
        .collect();
    let experiments = parts
        .experiments
        .into_iter()
        .map(|e| e.to_model())
        .collect();
    let holdouts = parts
        .holdouts
        .into_iter()
        .map(|h| Holdout {
            key: h.key,
            size: h.size,
            bucket_by: h.bucket_by,
        })
        .collect();
    ConfigDocument {
        schema: 1,
        environment: environment.to_string(),
        revision,
        flags,
        segments,
        experiments,
        holdouts,
    }
}

/// Rejects a document the evaluator would not load, naming the environment.
pub(crate) fn check(doc: &ConfigDocument) -> Result<()> {
    switchyard_core::compile(doc)
        .map(|_| ())
        .map_err(|e| StoreError::Invalid(format!("environment {:?}: {e}", doc.environment)))
}
