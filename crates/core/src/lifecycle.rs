//! What may change while an experiment runs.
//!
//! A unit's arm depends only on its bucket under the experiment's salt and
//! on the arms' ranges, which start at fixed offsets and grow with coverage
//! (see `compile_experiment`). So coverage, targeting conditions and
//! holdouts can change on a running experiment: they let units in or keep
//! them out, but never move a unit from one arm to another. Everything that
//! places the arms or the unit's bucket cannot: changing it would reassign
//! units already exposed, and the analysis would mix them. Those changes
//! need a new phase (a fresh analysis window), where the experiment may also
//! be re-randomised with a new salt.

use crate::model::Experiment;

/// The fields whose change between `before` and `after` would move units
/// that are already assigned from one variation to another (or change who
/// is eligible through the mutual-exclusion layer), in a stable order. Empty
/// when `after` keeps every assigned unit in its arm (given enough coverage).
pub fn reshuffling_changes(before: &Experiment, after: &Experiment) -> Vec<&'static str> {
    let mut out = Vec::new();
    if before.key != after.key {
        out.push("key");
    }
    if before.flag != after.flag {
        out.push("flag");
    }
    if before.variations != after.variations {
        out.push("variations");
    }
    if before.bucket_by != after.bucket_by {
        out.push("bucket_by");
    }
    if before.layer != after.layer {
        out.push("layer");
    }
    if before.salt() != after.salt() {
        out.push("salt");
    }
    out
}

/// The salt of phase `phase` of experiment `key` when a restart asks for a
/// fresh randomisation: `"{key}#{phase}"`. Phases restarted without one keep
/// the salt they had, so the first phase's salt is the experiment key, as
/// the frozen bucketing contract says.
pub fn phase_salt(key: &str, phase: u32) -> String {
    format!("{key}#{phase}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn experiment(v: serde_json::Value) -> Experiment {
        let mut base = json!({
            "key": "e", "flag": "f", "status": "running",
            "variations": [{"variation": "a", "weight": 5000}, {"variation": "b", "weight": 5000}],
            "coverage": 1000
        });
        if let (Some(b), Some(o)) = (base.as_object_mut(), v.as_object()) {
            for (k, v) in o {
                b.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn coverage_conditions_and_holdouts_do_not_reshuffle() {
        let before = experiment(json!({}));
        let after = experiment(json!({
            "coverage": 5000,
            "conditions": [{"attribute": "country", "op": "equals", "value": "DE"}],
            "holdouts": ["h"],
            "status": "paused"
        }));
        assert!(reshuffling_changes(&before, &after).is_empty());
    }

    #[test]
    fn weights_bucket_by_layer_and_salt_reshuffle() {
        let before = experiment(json!({}));
        let after = experiment(json!({
            "variations": [{"variation": "a", "weight": 4000}, {"variation": "b", "weight": 6000}],
            "bucket_by": "device",
            "layer": {"key": "l", "start": 0, "end": 5000},
            "salt": "e#2"
        }));
        assert_eq!(
            reshuffling_changes(&before, &after),
            ["variations", "bucket_by", "layer", "salt"]
        );
    }

    #[test]
    fn a_salt_equal_to_the_key_is_no_change() {
        let before = experiment(json!({}));
        let after = experiment(json!({"salt": "e"}));
        assert!(reshuffling_changes(&before, &after).is_empty());
        assert_eq!(phase_salt("e", 2), "e#2");
    }
}
