//! Fuzzed readers of unfolded model and checkpoint files: mutated JSON (awkward numbers,
//! missing or repeated entries, wrong types) gives `Ok` or `Err`, never a panic or an abort.
//! `HYPERPROX_FUZZ_CASES` cases per property (default 500; the full run is 10 000).

use hyperprox_core::testing::mutate_json;
use hyperprox_unfolded::train::{train, TrainConfig, TrainState};
use hyperprox_unfolded::*;
use proptest::prelude::*;
use serde_json::Value;

fn cases() -> u32 {
    hyperprox_core::testing::fuzz_cases()
}

fn problem() -> Problem {
    Problem::gaussian(6, 12, 1).unwrap()
}

/// A trained model and its checkpoint (optimizer state, history), for every model kind.
fn files(kind: ModelKind) -> (Value, Value) {
    let pr = problem();
    let mut model = Unfolded::new(ModelSpec::new(kind, 2), &pr).unwrap();
    let cfg = TrainConfig {
        steps_per_layer: 2,
        final_steps: 1,
        batch: 4,
        val_size: 4,
        ..Default::default()
    };
    let st = train(&mut model, &pr, &cfg, None, Some(3), &mut |_| {}).unwrap();
    (model.to_json(), st.to_json())
}

const KINDS: [ModelKind; 7] = [
    ModelKind::DuIsta,
    ModelKind::DuIht,
    ModelKind::Lista,
    ModelKind::ListaCp,
    ModelKind::ListaCpss,
    ModelKind::Alista,
    ModelKind::Tista,
];

/// Every reader on a mutated document; a model it accepts must run.
fn read_all(v: &Value) {
    if let Ok(m) = Unfolded::from_json(v) {
        let pr = m.problem().clone();
        let batch = sample(&pr, &m.spec().signal, 2, 5).unwrap();
        let _ = hyperprox_unfolded::train::evaluate(&m, &pr, &batch);
    }
    let _ = TrainState::from_json(v);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn mutated_models_and_checkpoints_are_read_or_refused(
        kind in prop::sample::select(KINDS.to_vec()),
        checkpoint in any::<bool>(),
        edits in prop::collection::vec((any::<u64>(), any::<u8>()), 1..4),
    ) {
        let (m, c) = files(kind);
        read_all(&mutate_json(if checkpoint { &c } else { &m }, &edits));
    }
}

#[test]
fn the_unmutated_files_are_read_back() {
    for kind in KINDS {
        let (m, c) = files(kind);
        assert!(Unfolded::from_json(&m).is_ok(), "{kind:?}");
        assert!(TrainState::from_json(&c).is_ok(), "{kind:?}");
    }
}
