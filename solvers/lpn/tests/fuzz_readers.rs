//! Fuzzed readers of LPN model and checkpoint files: mutated JSON (awkward numbers, missing or
//! repeated entries, wrong types) gives `Ok` or `Err`, never a panic or an abort.
//! `HYPERPROX_FUZZ_CASES` cases per property (default 500; the full run is 10 000).

use hyperprox_core::testing::mutate_json;
use hyperprox_lpn::*;
use proptest::prelude::*;

fn cases() -> u32 {
    hyperprox_core::testing::fuzz_cases()
}

fn dense_model() -> Icnn {
    let cfg = IcnnConfig {
        dim: 2,
        widths: vec![4, 3],
        beta: 2.0,
        alpha: 0.01,
        arch: Arch::Dense,
    };
    Icnn::new(cfg, 1).unwrap()
}

fn conv_model() -> Icnn {
    let cfg = IcnnConfig {
        dim: 12,
        widths: vec![2, 2],
        beta: 2.0,
        alpha: 0.01,
        arch: Arch::Conv {
            height: 3,
            width: 4,
            kernel: 3,
        },
    };
    Icnn::new(cfg, 2).unwrap()
}

/// A checkpoint after a few training steps (optimizer moments, history, RNG position).
fn checkpoint() -> String {
    let schedule = vec![Stage {
        steps: 3,
        lr: 1e-3,
        loss: Loss::ProxMatching { gamma: 0.5 },
    }];
    let s = laplace::sampler(8, 1);
    let cfg = IcnnConfig {
        dim: 1,
        widths: vec![4, 3],
        beta: 2.0,
        alpha: 0.0,
        arch: Arch::Dense,
    };
    let mut st = TrainState::new(Icnn::new(cfg, 3).unwrap()).unwrap();
    train(&mut st, &schedule, &s, 1, |_, _| true).unwrap();
    st.to_json()
}

/// Every reader on a mutated document; what they accept must be usable.
fn read_all(text: &str) {
    if let Ok(net) = Icnn::from_json(text) {
        let d = net.config().dim;
        let _ = net.prox(ndarray::Array2::zeros((2, d)).view());
    }
    if let Ok(st) = TrainState::from_json(text) {
        let d = st.net.config().dim;
        let _ = st.net.prox(ndarray::Array2::zeros((2, d)).view());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn mutated_models_are_read_or_refused(
        conv in any::<bool>(),
        edits in prop::collection::vec((any::<u64>(), any::<u8>()), 1..4),
    ) {
        let net = if conv { conv_model() } else { dense_model() };
        let v: serde_json::Value = serde_json::from_str(&net.to_json()).unwrap();
        read_all(&mutate_json(&v, &edits).to_string());
    }

    #[test]
    fn mutated_checkpoints_are_read_or_refused(
        edits in prop::collection::vec((any::<u64>(), any::<u8>()), 1..4),
    ) {
        let v: serde_json::Value = serde_json::from_str(&checkpoint()).unwrap();
        read_all(&mutate_json(&v, &edits).to_string());
    }

    #[test]
    fn mutated_text_is_read_or_refused(
        conv in any::<bool>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..5),
    ) {
        let mut bytes = if conv { conv_model().to_json() } else { checkpoint() }.into_bytes();
        for (pos, b) in edits {
            let i = pos % bytes.len();
            bytes[i] = b;
        }
        read_all(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn the_unmutated_files_are_read_back() {
    assert_eq!(
        Icnn::from_json(&dense_model().to_json()).unwrap(),
        dense_model()
    );
    assert_eq!(
        Icnn::from_json(&conv_model().to_json()).unwrap(),
        conv_model()
    );
    assert!(TrainState::from_json(&checkpoint()).is_ok());
}
