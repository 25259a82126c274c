//! The experiment lifecycle as rules on a stored experiment: which steps
//! are allowed from which status, what each changes, and which edits a
//! running experiment takes. Pure: the SQL side reads, calls these, and
//! writes the result with its audit entry (`sql/experiments.rs`).

use switchyard_core::lifecycle::{phase_salt, reshuffling_changes};
use switchyard_core::model::ExperimentStatus;
use time::OffsetDateTime;

use crate::error::{Result, StoreError};
use crate::types::{ExperimentDefinition, ExperimentInput, ExperimentStep};

/// The audit action of a step.
pub(crate) fn action(step: &ExperimentStep) -> &'static str {
    match step {
        ExperimentStep::Pause => "pause",
        ExperimentStep::Resume => "resume",
        ExperimentStep::Ship { .. } => "ship",
        ExperimentStep::Restart(_) => "restart",
    }
}

fn wrong_state(e: &ExperimentDefinition, verb: &str, allowed: &str) -> StoreError {
    StoreError::WrongState(format!(
        "experiment {:?} is {}; only {allowed} experiment can be {verb}",
        e.key,
        e.status.as_str()
    ))
}

/// Applies `step` to `e` at time `now`, or says why it is not allowed
/// (changing nothing).
pub(crate) fn apply_step(
    e: &mut ExperimentDefinition,
    step: ExperimentStep,
    now: OffsetDateTime,
) -> Result<()> {
    use ExperimentStatus::*;
    match step {
        ExperimentStep::Pause => {
            if e.status != Running {
                return Err(wrong_state(e, "paused", "a running"));
            }
            e.status = Paused;
        }
        ExperimentStep::Resume => {
            if e.status != Paused {
                return Err(wrong_state(e, "resumed", "a paused"));
            }
            e.status = Running;
        }
        ExperimentStep::Ship { variation } => {
            if e.status == Draft {
                return Err(wrong_state(e, "shipped", "a running, paused or stopped"));
            }
            if !e.variations.iter().any(|v| v.variation == variation) {
                return Err(StoreError::InvalidField {
                    field: "variation".into(),
                    message: format!(
                        "{variation:?} is not one of experiment {:?}'s variations",
                        e.key
                    ),
                });
            }
            if e.status != Stopped {
                e.stopped_at = Some(now);
            }
            e.status = Stopped;
            e.winner = Some(variation);
        }
        ExperimentStep::Restart(r) => {
            if e.status == Draft {
                return Err(wrong_state(e, "restarted", "a running, paused or stopped"));
            }
            let phase = e.phase.checked_add(1).ok_or_else(|| {
                StoreError::WrongState(format!("experiment {:?} has no phase left", e.key))
            })?;
            if let Some(v) = r.variations {
                e.variations = v;
            }
            if let Some(c) = r.coverage {
                e.coverage = c;
            }
            if let Some(b) = r.bucket_by {
                e.bucket_by = b;
            }
            if let Some(c) = r.conditions {
                e.conditions = c;
            }
            if let Some(l) = r.layer {
                e.layer = l;
            }
            if let Some(h) = r.holdouts {
                e.holdouts = h;
            }
            if r.reshuffle {
                e.salt = Some(phase_salt(&e.key, phase));
            }
            e.phase = phase;
            e.status = Running;
            e.started_at = Some(now);
            e.stopped_at = None;
            e.winner = None;
        }
    }
    Ok(())
}

/// Replaces what a caller may edit with `input`: anything on a draft; on a
/// running or paused experiment only what moves no assigned unit to another
/// variation (coverage, conditions, holdouts, name, hypothesis, metrics,
/// breakdown); nothing on a stopped one.
pub(crate) fn apply_edit(e: &mut ExperimentDefinition, input: ExperimentInput) -> Result<()> {
    let mut after = e.clone();
    after.flag = input.flag;
    after.name = input.name;
    after.hypothesis = input.hypothesis;
    after.variations = input.variations;
    after.coverage = input.coverage;
    after.bucket_by = input.bucket_by;
    after.conditions = input.conditions;
    after.layer = input.layer;
    after.holdouts = input.holdouts;
    after.metrics = input.metrics;
    after.breakdown_by = input.breakdown_by;
    after.guardrails = input.guardrails;
    match e.status {
        ExperimentStatus::Draft => {}
        ExperimentStatus::Running | ExperimentStatus::Paused => {
            let changes = reshuffling_changes(&e.to_model(), &after.to_model());
            if !changes.is_empty() {
                return Err(StoreError::WrongState(format!(
                    "experiment {:?} is {}: changing its {} would move units already \
                     assigned to another variation; restart it as a new phase \
                     (POST .../restart) to change {}",
                    e.key,
                    e.status.as_str(),
                    changes.join(", "),
                    if changes.len() == 1 { "it" } else { "them" }
                )));
            }
        }
        ExperimentStatus::Stopped => {
            return Err(StoreError::WrongState(format!(
                "experiment {:?} is stopped: restart it as a new phase (POST .../restart) \
                 to change it",
                e.key
            )));
        }
    }
    *e = after;
    Ok(())
}

#[cfg(test)]
mod tests {
    use switchyard_core::model::WeightedVariation;

    use super::*;
    use crate::types::{GuardrailPolicy, RestartInput};

    fn running() -> ExperimentDefinition {
        ExperimentDefinition {
            project: "p".into(),
            environment: "e".into(),
            key: "x".into(),
            flag: "f".into(),
            name: "X".into(),
            hypothesis: String::new(),
            status: ExperimentStatus::Running,
            variations: vec![
                WeightedVariation {
                    variation: "a".into(),
                    weight: 5000,
                },
                WeightedVariation {
                    variation: "b".into(),
                    weight: 5000,
                },
            ],
            coverage: 1000,
            bucket_by: "targetingKey".into(),
            conditions: Vec::new(),
            layer: None,
            holdouts: Vec::new(),
            winner: None,
            metrics: Vec::new(),
            breakdown_by: None,
            guardrails: GuardrailPolicy::default(),
            phase: 0,
            salt: None,
            started_at: Some(OffsetDateTime::UNIX_EPOCH),
            stopped_at: None,
            version: 3,
        }
    }

    fn input(e: &ExperimentDefinition) -> ExperimentInput {
        ExperimentInput {
            key: e.key.clone(),
            flag: e.flag.clone(),
            name: e.name.clone(),
            hypothesis: e.hypothesis.clone(),
            variations: e.variations.clone(),
            coverage: e.coverage,
            bucket_by: e.bucket_by.clone(),
            conditions: e.conditions.clone(),
            layer: e.layer.clone(),
            holdouts: e.holdouts.clone(),
            metrics: e.metrics.clone(),
            breakdown_by: e.breakdown_by.clone(),
            guardrails: e.guardrails.clone(),
        }
    }

    #[test]
    fn a_running_experiment_takes_a_ramp_but_not_new_weights() {
        let mut e = running();
        let mut ramp = input(&e);
        ramp.coverage = 5000;
        ramp.breakdown_by = Some("country".into());
        apply_edit(&mut e, ramp).unwrap();
        assert_eq!(e.coverage, 5000);
        let before = e.clone();
        let mut weights = input(&e);
        weights.variations[0].weight = 4000;
        weights.variations[1].weight = 6000;
        weights.coverage = 9000;
        let err = apply_edit(&mut e, weights).unwrap_err().to_string();
        assert!(
            err.contains("variations") && err.contains("restart"),
            "{err}"
        );
        assert_eq!(e, before, "a refused edit changes nothing");
    }

    #[test]
    fn steps_are_allowed_only_from_their_statuses() {
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::hours(1);
        let mut e = running();
        assert!(apply_step(&mut e, ExperimentStep::Resume, t).is_err());
        apply_step(&mut e, ExperimentStep::Pause, t).unwrap();
        assert_eq!(e.status, ExperimentStatus::Paused);
        assert!(apply_step(&mut e, ExperimentStep::Pause, t).is_err());
        let before = e.clone();
        let err = apply_step(
            &mut e,
            ExperimentStep::Ship {
                variation: "zz".into(),
            },
            t,
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::InvalidField { ref field, .. } if field == "variation"));
        assert_eq!(e, before);
        apply_step(
            &mut e,
            ExperimentStep::Ship {
                variation: "b".into(),
            },
            t,
        )
        .unwrap();
        assert_eq!(
            (e.status, e.winner.as_deref(), e.stopped_at),
            (ExperimentStatus::Stopped, Some("b"), Some(t))
        );
        let later = t + time::Duration::hours(1);
        apply_step(
            &mut e,
            ExperimentStep::Restart(RestartInput {
                reshuffle: true,
                coverage: Some(2000),
                ..RestartInput::default()
            }),
            later,
        )
        .unwrap();
        assert_eq!(
            (e.status, e.phase, e.salt.as_deref(), e.winner.as_deref()),
            (ExperimentStatus::Running, 1, Some("x#1"), None)
        );
        assert_eq!(
            (e.started_at, e.stopped_at, e.coverage),
            (Some(later), None, 2000)
        );
        apply_step(
            &mut e,
            ExperimentStep::Restart(RestartInput::default()),
            later,
        )
        .unwrap();
        assert_eq!((e.phase, e.salt.as_deref()), (2, Some("x#1")));
        let mut draft = running();
        draft.status = ExperimentStatus::Draft;
        for step in [
            ExperimentStep::Pause,
            ExperimentStep::Resume,
            ExperimentStep::Ship {
                variation: "a".into(),
            },
            ExperimentStep::Restart(RestartInput::default()),
        ] {
            assert!(matches!(
                apply_step(&mut draft, step, t),
                Err(StoreError::WrongState(_))
            ));
        }
    }
}
