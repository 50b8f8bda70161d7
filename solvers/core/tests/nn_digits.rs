//! Classifiers on the shipped digits (fixed split): the accuracy goals of the neural-components
//! issue, and exact resumption from a checkpoint.

use hyperprox_core::nn::loss::LossSpec;
use hyperprox_core::nn::optim::{IssP, Method};
use hyperprox_core::nn::train::{digits_split, Arch, TrainConfig, TrainState, Trainer};

fn train(cfg: TrainConfig) -> (f64, Vec<f64>) {
    let split = digits_split::<f32>().unwrap();
    let mut t = Trainer::<f32>::new(cfg.clone(), split.train.len()).unwrap();
    for _ in 0..cfg.epochs {
        t.train_epoch(&split).unwrap();
    }
    let last = t.history().last().unwrap().clone();
    let losses = t.history().iter().map(|r| r.train_loss).collect();
    (last.test_accuracy, losses)
}

#[test]
fn the_mlp_reaches_96_percent_and_the_cnn_97() {
    let mut mlp = TrainConfig::digits(Arch::parse("mlp:128,128").unwrap());
    mlp.dropout = 0.1;
    mlp.epochs = 60;
    let (acc, losses) = train(mlp);
    eprintln!("mlp: {acc}");
    assert!(acc >= 0.96, "MLP test accuracy {acc}");
    assert!(losses.last().unwrap() < &(0.2 * losses[0]), "{losses:?}");
    let mut cnn = TrainConfig::digits(Arch::parse("cnn:16,32").unwrap());
    cnn.epochs = 40;
    cnn.lr = 2e-3;
    let (acc, _) = train(cnn);
    eprintln!("cnn: {acc}");
    assert!(acc >= 0.97, "CNN test accuracy {acc}");
}

#[test]
fn every_loss_trains_to_94_percent() {
    for name in ["ce", "ls", "stablemax", "zloss", "elr", "pskd"] {
        let mut cfg = TrainConfig::digits(Arch::parse("mlp:128").unwrap());
        cfg.loss = LossSpec::by_name(name).unwrap();
        cfg.epochs = 60;
        let (acc, _) = train(cfg);
        eprintln!("{name}: {acc}");
        assert!(acc >= 0.94, "{name}: test accuracy {acc}");
    }
}

#[test]
fn every_optimizer_trains() {
    for (name, lr) in [
        ("sgd", 0.05),
        ("adamw", 1e-3),
        ("rmsprop", 1e-3),
        ("adabelief", 1e-3),
    ] {
        let mut cfg = TrainConfig::digits(Arch::parse("mlp:64").unwrap());
        cfg.method = Method::by_name(name).unwrap();
        cfg.lr = lr;
        cfg.weight_decay = 1e-4;
        cfg.epochs = 10;
        let (acc, _) = train(cfg);
        eprintln!("{name}: {acc}");
        assert!(acc >= 0.9, "{name}: test accuracy {acc}");
    }
}

#[test]
fn a_resumed_run_is_bit_identical() {
    // Dropout, a stateful loss, AdamW with a cosine schedule and ⊥Grad: everything that has
    // state or draws random numbers.
    let mut cfg = TrainConfig::digits(Arch::parse("mlp:32").unwrap());
    cfg.dropout = 0.2;
    cfg.loss = LossSpec::by_name("pskd").unwrap();
    cfg.method = Method::by_name("adamw").unwrap();
    cfg.weight_decay = 1e-3;
    cfg.cosine = true;
    cfg.orthogonal = true;
    cfg.epochs = 4;
    let split = digits_split::<f32>().unwrap();
    let n = split.train.len();
    let mut a = Trainer::<f32>::new(cfg.clone(), n).unwrap();
    for _ in 0..4 {
        a.train_epoch(&split).unwrap();
    }
    let mut b = Trainer::<f32>::new(cfg, n).unwrap();
    for _ in 0..2 {
        b.train_epoch(&split).unwrap();
    }
    let json = serde_json::to_string(&b.state()).unwrap();
    let st: TrainState = serde_json::from_str(&json).unwrap();
    let mut c = Trainer::<f32>::resume(st, n).unwrap();
    for _ in 0..2 {
        c.train_epoch(&split).unwrap();
    }
    assert_eq!(a.params, c.params);
    let (ha, hc) = (a.state().history, c.state().history);
    assert_eq!(
        ha.iter().map(|r| r.train_loss).collect::<Vec<_>>(),
        hc.iter().map(|r| r.train_loss).collect::<Vec<_>>()
    );
    // A checkpoint of another architecture is refused.
    let mut other = b.state();
    other.params.pop();
    assert!(Trainer::<f32>::resume(other, n).is_err());
}

#[test]
fn iss_p_prunes_80_percent_of_the_weights_and_keeps_the_accuracy() {
    let mut cfg = TrainConfig::digits(Arch::parse("mlp:128,128").unwrap());
    cfg.epochs = 60;
    let steps = 60 * 1297u64.div_ceil(64);
    cfg.prune = Some(IssP {
        ratio: 0.8,
        shrink: 0.95,
        prune_steps: steps * 2 / 3,
    });
    let split = digits_split::<f32>().unwrap();
    let mut t = Trainer::<f32>::new(cfg.clone(), split.train.len()).unwrap();
    for _ in 0..cfg.epochs {
        t.train_epoch(&split).unwrap();
    }
    let acc = t.history().last().unwrap().test_accuracy;
    // The weight groups (not the biases) are 80 % zeros.
    let weights: Vec<f32> = [0..64 * 128, 64 * 128 + 128..64 * 128 + 128 + 128 * 128]
        .into_iter()
        .flat_map(|r| t.params[r].to_vec())
        .collect();
    let zeros = weights.iter().filter(|v| **v == 0.0).count() as f64 / weights.len() as f64;
    eprintln!("ISS-P 80 %: accuracy {acc}, zeros {zeros}");
    assert!(zeros >= 0.799, "{zeros}");
    assert!(acc >= 0.94, "{acc}");
}

/// Symmetric label noise: about the requested fraction changes, every changed label is another
/// class in range, the same seed gives the same labels, and a rate outside [0, 1) is refused.
#[test]
fn label_noise_flips_the_requested_fraction_to_other_classes() {
    let data = hyperprox_core::nn::train::digits_split::<f64>().unwrap();
    let mut a = data.train.clone();
    let n = a.corrupt_labels(0.4, 10, 3).unwrap();
    let diff =
        a.y.iter()
            .zip(&data.train.y)
            .filter(|(p, q)| p != q)
            .count();
    assert_eq!(n, diff, "every draw changes its label");
    let frac = n as f64 / a.y.len() as f64;
    assert!((frac - 0.4).abs() < 0.05, "{frac}");
    assert!(a.y.iter().all(|&y| y < 10));
    // The new labels spread over the other classes.
    let mut counts = [0usize; 10];
    for (p, q) in a.y.iter().zip(&data.train.y) {
        if p != q {
            counts[(p + 10 - q) % 10] += 1;
        }
    }
    assert!(counts[1..].iter().all(|&c| c > n / 20), "{counts:?}");
    let mut b = data.train.clone();
    b.corrupt_labels(0.4, 10, 3).unwrap();
    assert_eq!(a.y, b.y);
    assert_eq!(b.clone().corrupt_labels(0.0, 10, 3).unwrap(), 0);
    assert!(b.corrupt_labels(1.0, 10, 3).is_err());
    assert!(b.corrupt_labels(0.1, 1, 3).is_err());
}
