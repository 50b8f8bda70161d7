//! Classification losses (gradients against finite differences, stability, Softmax Collapse),
//! the optimizers with parameter groups, and exact checkpoints.

use hyperprox_core::diff::BatchLoss;
use hyperprox_core::func::NormL1;
use hyperprox_core::linalg::Real;
use hyperprox_core::nn::loss::{ClassLoss, LossSpec};
use hyperprox_core::nn::optim::{
    orthogonalize, GroupConfig, IssP, LrSchedule, Method, OptimConfig, ParamOptimizer, Projection,
};
use hyperprox_core::nn::{loss::Huber, ParamGroupSpec};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::sync::Arc;

fn randn(r: usize, c: usize, seed: u64) -> Array2<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((r, c), |_| StandardNormal.sample(&mut rng))
}

const SPECS: [&str; 6] = ["ce", "ls", "stablemax", "zloss", "elr", "pskd"];

/// A loss built from its spec with a given state (ELR's targets, PS-KD's previous predictions),
/// so that every evaluation starts from the same state.
fn fresh(spec: LossSpec, state: &[f64], n: usize, k: usize) -> Box<dyn ClassLoss<f64>> {
    let mut l = spec.build::<f64>(n, k).unwrap();
    if !state.is_empty() {
        l.set_state(state.to_vec()).unwrap();
    }
    l
}

#[test]
fn every_loss_gradient_matches_finite_differences() {
    let (b, k, n) = (4, 5, 9);
    let logits = randn(b, k, 1) * 2.0;
    let labels = [0, 3, 4, 1];
    let ids = [2, 7, 0, 5];
    for name in SPECS {
        let mut spec = LossSpec::by_name(name).unwrap();
        // ELR updates its target from the current prediction and then treats it as a
        // constant; with β near 1 the update is negligible and the finite difference sees the
        // same constant target.
        if let LossSpec::Elr { lambda, .. } = spec {
            spec = LossSpec::Elr {
                lambda,
                beta: 1.0 - 1e-9,
            };
        }
        // A state: random distributions per example (and α = 0.4 for PS-KD).
        let mut state: Vec<f64> = randn(n, k, 2)
            .mapv(f64::exp)
            .rows()
            .into_iter()
            .flat_map(|r| (&r / r.sum()).to_vec())
            .collect();
        match spec {
            LossSpec::Pskd { .. } => state.insert(0, 0.4),
            LossSpec::Elr { .. } => {}
            _ => state.clear(),
        }
        let mut g = Array2::zeros((b, k));
        fresh(spec, &state, n, k)
            .value_grad(logits.view(), &labels, &ids, g.view_mut())
            .unwrap();
        let v = randn(b, k, 3);
        let h = 1e-6;
        let f = |o: &Array2<f64>| {
            let mut gg = Array2::zeros((b, k));
            fresh(spec, &state, n, k)
                .value_grad(o.view(), &labels, &ids, gg.view_mut())
                .unwrap()
        };
        let fd = (f(&(&logits + &(&v * h))) - f(&(&logits - &(&v * h)))) / (2.0 * h);
        let an = (&g * &v).sum();
        assert!(
            (fd - an).abs() < 1e-6 * an.abs().max(1e-3),
            "{name}: fd {fd} vs {an}"
        );
    }
}

#[test]
fn losses_take_known_values() {
    let o = ndarray::array![[1.0, 2.0, 3.0]];
    let mut g = Array2::zeros((1, 3));
    let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    let ce = LossSpec::by_name("ce")
        .unwrap()
        .build::<f64>(1, 3)
        .unwrap()
        .value_grad(o.view(), &[0], &[0], g.view_mut());
    assert!((ce.unwrap() - (lse - 1.0)).abs() < 1e-14);
    // StableMax: s = (2, 3, 4), P_0 = 2/9.
    let sm = LossSpec::StableMax
        .build::<f64>(1, 3)
        .unwrap()
        .value_grad(o.view(), &[0], &[0], g.view_mut())
        .unwrap();
    assert!((sm - (4.5f64).ln()).abs() < 1e-14);
    // Z-loss: z = (−√1.5, 0, √1.5); label 2: softplus(1·(2 − √1.5)).
    let z = LossSpec::ZLoss { a: 1.0, b: 2.0 }
        .build::<f64>(1, 3)
        .unwrap()
        .value_grad(o.view(), &[2], &[0], g.view_mut())
        .unwrap();
    assert!(
        (z - (1.0 + (2.0 - 1.5f64.sqrt()).exp()).ln()).abs() < 1e-10,
        "{z}"
    );
    // Shift and scale invariance of the Z-loss.
    let z2 = LossSpec::ZLoss { a: 1.0, b: 2.0 }
        .build::<f64>(1, 3)
        .unwrap()
        .value_grad((&o * 7.0 + 3.0).view(), &[2], &[0], g.view_mut())
        .unwrap();
    assert!((z - z2).abs() < 1e-10);
    // Label smoothing ε: −(1−ε+ε/K) log p_y − Σ_{j≠y} (ε/K) log p_j.
    let ls = LossSpec::CrossEntropy { smoothing: 0.3 }
        .build::<f64>(1, 3)
        .unwrap()
        .value_grad(o.view(), &[0], &[0], g.view_mut())
        .unwrap();
    let want = (0.7 + 0.1) * (lse - 1.0) + 0.1 * (lse - 2.0) + 0.1 * (lse - 3.0);
    assert!((ls - want).abs() < 1e-14);
}

#[test]
fn cross_entropy_is_stable_at_logits_of_1e4() {
    fn run<T: Real>() {
        let o = Array2::from_shape_vec((2, 3), vec![1e4, -1e4, 0.0, -1e4, 1e4, 0.0])
            .unwrap()
            .mapv(T::c);
        let mut g = Array2::zeros((2, 3));
        let v = LossSpec::by_name("ce")
            .unwrap()
            .build::<T>(2, 3)
            .unwrap()
            .value_grad(o.view(), &[1, 1], &[0, 1], g.view_mut())
            .unwrap();
        // Row 0: the label's logit is 2e4 below the maximum; row 1: it is the maximum.
        assert!((v.as_f64() - 1e4).abs() < 1e-3 * 1e4, "{} {v}", T::NAME);
        assert!(g.iter().all(|x| x.is_finite()));
        assert!((g[(0, 0)].as_f64() - 0.5).abs() < 1e-6 && (g[(0, 1)].as_f64() + 0.5).abs() < 1e-6);
    }
    run::<f32>();
    run::<f64>();
}

#[test]
fn stablemax_stays_finite_and_informative_where_softmax_collapses_in_f32() {
    // A confident correct prediction (margin 40): in f32, softmax rounds the label's
    // probability to exactly 1, the loss to exactly 0 and the label's gradient to exactly 0
    // (Softmax Collapse: learning stops). StableMax keeps a positive loss and a gradient.
    let o: Array2<f32> = ndarray::array![[0.0, 0.0, 0.0, 40.0]];
    let mut g = Array2::zeros((1, 4));
    let ce = LossSpec::by_name("ce")
        .unwrap()
        .build::<f32>(1, 4)
        .unwrap()
        .value_grad(o.view(), &[3], &[0], g.view_mut())
        .unwrap();
    assert_eq!(ce, 0.0);
    assert_eq!(g[(0, 3)], 0.0);
    let sm = LossSpec::StableMax
        .build::<f32>(1, 4)
        .unwrap()
        .value_grad(o.view(), &[3], &[0], g.view_mut())
        .unwrap();
    // s = (1, 1, 1, 41): loss = ln(44/41).
    assert!((sm - (44.0f32 / 41.0).ln()).abs() < 1e-6, "{sm}");
    assert!(g.iter().all(|v| v.is_finite()) && g[(0, 3)] < 0.0);
}

#[test]
fn bad_labels_and_shapes_are_errors() {
    let o = randn(2, 3, 1);
    let mut g = Array2::zeros((2, 3));
    for name in SPECS {
        let mut l = LossSpec::by_name(name).unwrap().build::<f64>(4, 3).unwrap();
        assert!(
            l.value_grad(o.view(), &[0, 3], &[0, 1], g.view_mut())
                .is_err(),
            "{name}"
        );
        assert!(
            l.value_grad(o.view(), &[0], &[0], g.view_mut()).is_err(),
            "{name}"
        );
        let nan = ndarray::array![[f64::NAN, 0.0, 0.0], [0.0, 0.0, 0.0]];
        assert!(l
            .value_grad(nan.view(), &[0, 1], &[0, 1], g.view_mut())
            .is_err());
    }
    let mut elr = LossSpec::by_name("elr")
        .unwrap()
        .build::<f64>(4, 3)
        .unwrap();
    assert!(elr
        .value_grad(o.view(), &[0, 1], &[0, 9], g.view_mut())
        .is_err());
    assert!(LossSpec::by_name("hinge").is_err());
    assert!(LossSpec::CrossEntropy { smoothing: 1.0 }
        .build::<f64>(1, 2)
        .is_err());
}

#[test]
fn huber_gradient_and_values() {
    let x = ndarray::array![[0.5, 3.0]];
    let t = ndarray::array![[0.0, 0.0]];
    let (v, g): (f64, _) = Huber { delta: 1.0 }
        .value_grad(x.view(), x.view(), t.view())
        .unwrap();
    assert!((v - (0.125 + 2.5)).abs() < 1e-14);
    assert_eq!(g, ndarray::array![[0.5, 1.0]]);
}

/// Runs `steps` steps on f(θ) = ½Σ cᵢ(θᵢ − 1)².
fn quadratic(method: Method, lr: f64, steps: usize) -> Vec<f64> {
    let c = [1.0, 10.0, 0.1];
    let cfg = OptimConfig {
        method,
        lr,
        schedule: LrSchedule::Constant,
        clip_norm: None,
        groups: vec![],
    };
    let mut o = ParamOptimizer::<f64>::new(cfg, 3).unwrap();
    let mut p = vec![0.0; 3];
    for _ in 0..steps {
        let g: Vec<f64> = p.iter().zip(&c).map(|(x, c)| c * (x - 1.0)).collect();
        o.step(&mut p, &g).unwrap();
    }
    p
}

#[test]
fn every_method_minimizes_a_quadratic() {
    for (name, lr) in [
        ("sgd", 0.05),
        ("adam", 0.05),
        ("adamw", 0.05),
        ("rmsprop", 0.01),
        ("adabelief", 0.05),
    ] {
        let p = quadratic(Method::by_name(name).unwrap(), lr, 4000);
        assert!(p.iter().all(|x| (x - 1.0).abs() < 1e-2), "{name}: {p:?}");
    }
    let nest = Method::Sgd {
        momentum: 0.9,
        nesterov: true,
    };
    let p = quadratic(nest, 0.05, 2000);
    assert!(p.iter().all(|x| (x - 1.0).abs() < 1e-3), "{p:?}");
}

#[test]
fn first_steps_follow_the_update_formulas() {
    let one = |method: Method, wd: f64, p0: f64, g: f64| {
        let spec = ParamGroupSpec::new("w", 0..1, true);
        let cfg = OptimConfig::for_groups(method, 0.1, &[spec], wd, false);
        let mut o = ParamOptimizer::<f64>::new(cfg, 1).unwrap();
        let mut p = vec![p0];
        o.step(&mut p, &[g]).unwrap();
        p[0]
    };
    // Adam: first step is lr·sign(g) (bias-corrected), coupled decay adds wd·θ to g.
    let adam = Method::by_name("adam").unwrap();
    assert!((one(adam, 0.0, 1.0, 3.0) - 0.9).abs() < 1e-7);
    assert!(
        (one(adam, 0.5, 1.0, -0.2) - 0.9).abs() < 1e-7,
        "g + wd θ = 0.3 > 0"
    );
    // AdamW: θ(1 − lr·wd) then lr·sign(g): 1·(1 − 0.05) + 0.1.
    let adamw = Method::by_name("adamw").unwrap();
    assert!((one(adamw, 0.5, 1.0, -0.2) - 1.05).abs() < 1e-7);
    // SGD: θ − lr(g + wd θ).
    let sgd = Method::by_name("sgd").unwrap();
    assert!((one(sgd, 0.5, 1.0, 2.0) - (1.0 - 0.1 * 2.5)).abs() < 1e-15);
    // RMSprop: v = (1 − α)g², θ − lr g/(√v + ε) = θ − lr/√(1 − α)·sign(g).
    let rms = Method::by_name("rmsprop").unwrap();
    assert!((one(rms, 0.0, 1.0, 2.0) - (1.0 - 0.1 / 0.01f64.sqrt())).abs() < 1e-6);
    // AdaBelief: m = (1−β₁)g, s = (1−β₂)(g − m)² + ε, m̂ = g, ŝ = (g − m)² ⇒ step lr·g/|g − m|.
    let ab = Method::by_name("adabelief").unwrap();
    let g = 2.0;
    let want = 1.0 - 0.1 * g / (g - 0.1 * g);
    assert!((one(ab, 0.0, 1.0, g) - want).abs() < 1e-6);
}

#[test]
fn schedules_take_their_values() {
    assert_eq!(
        LrSchedule::Step {
            every: 10,
            factor: 0.5
        }
        .factor(25),
        0.25
    );
    assert!((LrSchedule::Exponential { gamma: 0.9 }.factor(2) - 0.81).abs() < 1e-15);
    let c = LrSchedule::Cosine {
        total: 100,
        floor: 0.1,
    };
    assert_eq!(c.factor(0), 1.0);
    assert!((c.factor(50) - 0.55).abs() < 1e-12);
    assert!((c.factor(100) - 0.1).abs() < 1e-12 && (c.factor(500) - 0.1).abs() < 1e-12);
    assert_eq!(LrSchedule::Constant.factor(7), 1.0);
}

#[test]
fn groups_scale_decay_project_and_prox() {
    let specs = [
        ParamGroupSpec::new("w", 0..2, true),
        ParamGroupSpec::new("b", 2..4, false),
    ];
    let mut cfg = OptimConfig::for_groups(Method::by_name("sgd").unwrap(), 0.1, &specs, 0.0, false);
    cfg.groups[0].projection = Projection::NonNegative;
    cfg.groups[1].lr_scale = 2.0;
    let sgd0 = Method::Sgd {
        momentum: 0.0,
        nesterov: false,
    };
    cfg.method = sgd0;
    let mut o = ParamOptimizer::<f64>::new(cfg.clone(), 4).unwrap();
    let mut p = vec![0.05, 1.0, 1.0, 1.0];
    o.step(&mut p, &[1.0, 1.0, 1.0, 1.0]).unwrap();
    // w: 0.05 − 0.1 < 0 is projected to 0; b moves twice as far.
    assert_eq!(p, vec![0.0, 0.9, 0.8, 0.8]);
    // A prox on the weights: SGD then soft threshold at lr·weight = 0.1·2 = 0.2.
    cfg.groups[0].projection = Projection::None;
    let mut o = ParamOptimizer::<f64>::new(cfg.clone(), 4)
        .unwrap()
        .with_prox("w", 2.0, Arc::new(NormL1::new(1.0).unwrap()))
        .unwrap();
    let mut p = vec![0.25, -1.0, 0.0, 0.0];
    o.step(&mut p, &[0.0, 0.0, 0.0, 0.0]).unwrap();
    assert!(
        (p[0] - 0.05).abs() < 1e-15 && (p[1] + 0.8).abs() < 1e-15,
        "{p:?}"
    );
    assert!(ParamOptimizer::<f64>::new(cfg.clone(), 4)
        .unwrap()
        .with_prox("nope", 1.0, Arc::new(NormL1::new(1.0).unwrap()))
        .is_err());
    // Overlapping or out-of-range groups, bad constants.
    let mut bad = cfg.clone();
    bad.groups.push(GroupConfig::from_spec(&ParamGroupSpec::new(
        "x",
        1..3,
        false,
    )));
    assert!(ParamOptimizer::<f64>::new(bad, 4).is_err());
    assert!(ParamOptimizer::<f64>::new(cfg.clone(), 3).is_err());
    let mut bad = cfg;
    bad.lr = -1.0;
    assert!(ParamOptimizer::<f64>::new(bad, 4).is_err());
}

#[test]
fn orthogonal_gradient_and_clipping() {
    let w = [1.0, 2.0, -1.0];
    let mut g = [0.5, 1.0, 2.0];
    let n0 = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    orthogonalize(&mut g, &w);
    let dot: f64 = g.iter().zip(&w).map(|(a, b)| a * b).sum();
    let n1 = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!(
        dot.abs() < 1e-12 && (n1 - n0).abs() < 1e-12,
        "{dot} {n1} {n0}"
    );
    // Clipping through the optimizer: a step of SGD (no momentum) with clip 1 moves by lr·1.
    let cfg = OptimConfig {
        method: Method::Sgd {
            momentum: 0.0,
            nesterov: false,
        },
        lr: 0.1,
        schedule: LrSchedule::Constant,
        clip_norm: Some(1.0),
        groups: vec![],
    };
    let mut o = ParamOptimizer::<f64>::new(cfg, 2).unwrap();
    let mut p = vec![0.0, 0.0];
    o.step(&mut p, &[30.0, 40.0]).unwrap();
    assert!((p[0] + 0.06).abs() < 1e-15 && (p[1] + 0.08).abs() < 1e-15);
    let before = p.clone();
    assert!(o.step(&mut p, &[f64::NAN, 0.0]).is_err());
    assert_eq!(p, before, "a rejected step changes nothing");
    assert_eq!(o.steps(), 1);
}

#[test]
fn optimizer_state_round_trips_bit_identically_in_f32() {
    for name in ["sgd", "adam", "adamw", "rmsprop", "adabelief"] {
        let cfg = OptimConfig {
            method: Method::by_name(name).unwrap(),
            lr: 0.01,
            schedule: LrSchedule::Cosine {
                total: 20,
                floor: 0.0,
            },
            clip_norm: Some(5.0),
            groups: vec![],
        };
        let grads: Vec<Vec<f32>> = (0..10)
            .map(|s| randn(1, 5, s).iter().map(|&v| v as f32).collect())
            .collect();
        let mut a = ParamOptimizer::<f32>::new(cfg.clone(), 5).unwrap();
        let mut pa = vec![0.3f32; 5];
        for g in &grads {
            a.step(&mut pa, g).unwrap();
        }
        let mut b = ParamOptimizer::<f32>::new(cfg.clone(), 5).unwrap();
        let mut pb = vec![0.3f32; 5];
        for g in &grads[..4] {
            b.step(&mut pb, g).unwrap();
        }
        let json = serde_json::to_string(&b.state()).unwrap();
        let mut c = ParamOptimizer::<f32>::new(cfg, 5).unwrap();
        c.set_state(serde_json::from_str(&json).unwrap()).unwrap();
        for g in &grads[4..] {
            c.step(&mut pb, g).unwrap();
        }
        assert_eq!(pa, pb, "{name}");
    }
}

#[test]
fn iss_p_attenuates_the_smallest_weights_then_freezes_them_at_zero() {
    let spec = ParamGroupSpec::new("w", 0..100, true);
    let mut cfg =
        OptimConfig::for_groups(Method::by_name("sgd").unwrap(), 0.1, &[spec], 0.0, false);
    cfg.method = Method::Sgd {
        momentum: 0.0,
        nesterov: false,
    };
    let iss = IssP {
        ratio: 0.3,
        shrink: 0.5,
        prune_steps: 3,
    };
    let mut o = ParamOptimizer::<f64>::new(cfg.clone(), 100)
        .unwrap()
        .with_iss_p("w", iss)
        .unwrap();
    // Magnitudes 1..100 in a scrambled order with alternating signs.
    let w0: Vec<f64> = (0..100)
        .map(|i| ((i * 37) % 100 + 1) as f64 * if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let mut p = w0.clone();
    let zero = vec![0.0; 100];
    for _ in 0..3 {
        o.step(&mut p, &zero).unwrap();
    }
    for (a, b) in p.iter().zip(&w0) {
        let want = if b.abs() <= 30.0 { b * 0.125 } else { *b };
        assert_eq!(*a, want);
    }
    // The stage is over: the pruned set is frozen and zeroed, even where a gradient would
    // move it.
    let state = o.state();
    o.step(&mut p, &vec![-1.0; 100]).unwrap();
    let zeros = p.iter().filter(|v| **v == 0.0).count();
    assert_eq!(zeros, 30);
    assert!(p
        .iter()
        .zip(&w0)
        .all(|(a, b)| (b.abs() <= 30.0) == (*a == 0.0)));
    // The frozen mask survives a checkpoint.
    let mut r = ParamOptimizer::<f64>::new(cfg, 100)
        .unwrap()
        .with_iss_p("w", iss)
        .unwrap();
    r.set_state(serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap())
        .unwrap();
    let mut q = p.clone();
    r.step(&mut q, &vec![1.0; 100]).unwrap();
    assert_eq!(q.iter().filter(|v| **v == 0.0).count(), 30);
    assert!(ParamOptimizer::<f64>::new(
        OptimConfig::for_groups(
            Method::by_name("sgd").unwrap(),
            0.1,
            &[ParamGroupSpec::new("w", 0..2, true)],
            0.0,
            false
        ),
        2
    )
    .unwrap()
    .with_iss_p(
        "w",
        IssP {
            ratio: 1.5,
            shrink: 0.9,
            prune_steps: 1
        }
    )
    .is_err());
}
