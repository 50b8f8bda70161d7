//! STN on the digits MLP: the hypergradient path against finite differences, exact resume,
//! the frozen baseline, and the STN against a 10-point grid at equal total training steps.

use hyperprox_core::diff::{check_block, Differentiable};
use hyperprox_core::nn::train::digits_split;
use hyperprox_stn::digits::{best_run, grid_search, train_fixed, DigitsConfig, DigitsStn};
use hyperprox_stn::StnDense;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn randn(r: usize, c: usize, seed: u64) -> Array2<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((r, c), |_| StandardNormal.sample(&mut rng))
}

/// The network in evaluation mode (the validation step) with random gates: every derivative,
/// including the context VJP that carries the hypergradient, against finite differences.
#[test]
fn network_derivatives_in_evaluation_mode_match_finite_differences() {
    let data = digits_split::<f64>().unwrap();
    let stn = DigitsStn::new(&data, &[16, 12], 0).unwrap();
    let cfg = DigitsConfig::default();
    let st = stn.init(&cfg).unwrap();
    let net = stn.network();
    let p: Vec<f64> = randn(1, net.num_params(), 1)
        .into_raw_vec_and_offset()
        .0
        .iter()
        .map(|v| 0.3 * v)
        .collect();
    let u = &st.hypers.repeated(5) + &(randn(5, 7, 2) * 0.3);
    let c = stn.context_of(&st.hypers, &u, false);
    let x = data.val.x.slice(ndarray::s![..5, ..]).to_owned();
    stn.control().set_training(false);
    let r = check_block(net, &p, x.view(), c.view(), 3, 1e-6).unwrap();
    println!("{r:?}");
    assert!(r.worst() < 1e-6, "{r:?}");
    assert!(r.context > 0.0);
}

/// Random parameters (gates included) and per-example perturbed rows (the decay columns
/// constant), ELR's targets random probabilities.
fn perturbed_state(
    stn: &DigitsStn<'_>,
    cfg: &DigitsConfig,
    b: usize,
) -> (hyperprox_stn::digits::DigitsState, Array2<f64>) {
    let mut st = stn.init(cfg).unwrap();
    st.params = randn(1, stn.num_params(), 21)
        .into_raw_vec_and_offset()
        .0
        .iter()
        .map(|v| 0.3 * v)
        .collect();
    let h = st.hypers.len();
    let mut ut = &st.hypers.repeated(b) + &(randn(b, h, 22) * 0.4);
    for j in 4..7 {
        let first = ut[[0, j]];
        ut.column_mut(j).fill(first);
    }
    let t = randn(1, st.elr_targets.len(), 24);
    for (i, v) in st.elr_targets.iter_mut().enumerate() {
        *v = (t[[0, i]].abs() + 0.1) / 15.0;
    }
    (st, ut)
}

/// Central difference of `f` along `d` against the analytic `g`.
fn check_direction(f: &dyn Fn(&[f64]) -> f64, p: &[f64], g: &[f64], d: &[f64], what: &str) {
    let h = 1e-5;
    let sh = |s: f64| -> Vec<f64> { p.iter().zip(d).map(|(a, b)| a + s * b).collect() };
    let fd = (f(&sh(h)) - f(&sh(-h))) / (2.0 * h);
    let an: f64 = g.iter().zip(d).map(|(a, b)| a * b).sum();
    println!("{what}: fd {fd:.10e}, analytic {an:.10e}");
    assert!(
        (fd - an).abs() < 1e-6 * an.abs().max(1e-3),
        "{what}: {fd} vs {an}"
    );
}

/// Delta-STN: the linearized prediction's tangent against central differences of the network
/// in the centered perturbation (training mode, fixed dropout masks), and the response step's
/// gradient (with per-layer decays and ELR's per-example weight) against finite differences of
/// its loss, which reaches only the response parameters.
#[test]
fn delta_linearization_and_response_gradient_match_finite_differences() {
    let data = digits_split::<f64>().unwrap();
    let cfg = DigitsConfig {
        hidden: vec![16, 12],
        delta: true,
        elr: Some(3.0),
        ..Default::default()
    };
    let stn = DigitsStn::for_config(&data, &cfg).unwrap();
    let b = 6;
    let (st, ut) = perturbed_state(&stn, &cfg, b);
    assert_eq!(ut.ncols(), 8, "2 dropouts, noise, smoothing, 3 decays, ELR");
    let h = ut.ncols();
    let cd = stn.context_of(&st.hypers, &ut, true);
    let x = data.train.x.slice(ndarray::s![..b, ..]).to_owned();
    stn.control().set_training(true);
    stn.control().set_step(st.step);
    let (xs, t) = stn.linearized(&st.params, x.clone(), cd.view()).unwrap();
    let mut c0 = cd.clone();
    c0.slice_mut(ndarray::s![.., ..h]).fill(0.0);
    let net = stn.network();
    assert_eq!(
        xs.last().unwrap(),
        &net.forward(&st.params, x.view(), c0.view()).unwrap()
    );
    let eps = 1e-6;
    let f = |s: f64| {
        let mut c = c0.clone();
        c.slice_mut(ndarray::s![.., ..h])
            .scaled_add(s, &cd.slice(ndarray::s![.., ..h]));
        net.forward(&st.params, x.view(), c.view()).unwrap()
    };
    let fd = (f(eps) - f(-eps)) / (2.0 * eps);
    let err = (&fd - &t).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let scale = t.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    println!("tangent: max error {err:.2e}, scale {scale:.2e}");
    assert!(scale > 1e-2 && err < 1e-6 * scale, "{err} vs {scale}");
    // The response step's gradient.
    let idx: Vec<usize> = (10..10 + b).collect();
    let run = |p: &[f64]| {
        let mut s2 = st.clone();
        s2.params = p.to_vec();
        let mut rng = StdRng::seed_from_u64(5);
        stn.response_step(&s2, &idx, &ut, &mut rng).unwrap()
    };
    let (_, gp) = run(&st.params);
    let resp = stn.response_params();
    let dir = randn(1, st.params.len(), 23).into_raw_vec_and_offset().0;
    let mut d = vec![0.0; st.params.len()];
    for &i in resp {
        d[i] = dir[i];
    }
    check_direction(&|p| run(p).0, &st.params, &gp, &d, "response gradient");
    let general: Vec<usize> = (0..st.params.len()).filter(|i| !resp.contains(i)).collect();
    assert!(general.iter().all(|&i| gp[i] == 0.0));
    assert!(resp.iter().any(|&i| gp[i] != 0.0));
    // A bad minibatch is an error, not a panic.
    let mut rng = StdRng::seed_from_u64(5);
    assert!(stn.response_step(&st, &[100_000], &ut, &mut rng).is_err());
}

/// The STN training step with ELR's per-example weight and a decay per layer: its gradient in
/// every parameter against finite differences of its loss; ELR's term changes the loss and
/// the targets of the minibatch (only those) advance. ELR treats the target it has just
/// updated as a constant: with β near 1 the update is negligible and the finite difference
/// sees the same constant.
#[test]
fn train_step_gradient_with_elr_matches_finite_differences() {
    let data = digits_split::<f64>().unwrap();
    let cfg = DigitsConfig {
        hidden: vec![16, 12],
        elr: Some(3.0),
        elr_beta: 1.0 - 1e-9,
        ..Default::default()
    };
    let stn = DigitsStn::for_config(&data, &cfg).unwrap();
    let (st, ut) = perturbed_state(&stn, &cfg, 6);
    let idx: Vec<usize> = (20..26).collect();
    let run = |p: &[f64], ut: &Array2<f64>| {
        let mut s2 = st.clone();
        s2.params = p.to_vec();
        let mut rng = StdRng::seed_from_u64(9);
        let r = stn.train_loss_grad(&mut s2, &idx, ut, &mut rng).unwrap();
        (r, s2.elr_targets)
    };
    let ((_, gp), targets) = run(&st.params, &ut);
    let d = randn(1, st.params.len(), 25).into_raw_vec_and_offset().0;
    check_direction(&|p| run(p, &ut).0 .0, &st.params, &gp, &d, "train gradient");
    let moved: Vec<usize> = (0..targets.len())
        .filter(|&i| targets[i] != st.elr_targets[i])
        .map(|i| i / 10)
        .collect();
    assert!(!moved.is_empty() && moved.iter().all(|i| idx.contains(i)));
    let mut off = ut.clone();
    off.column_mut(7).fill(-20.0); // ELR's weight ≈ 0
    assert!((run(&st.params, &off).0 .0 - run(&st.params, &ut).0 .0).abs() > 1e-3);
    // The decays: with the hypernetwork's parameters at zero (so that the rows of ũ reach only
    // the regularizers), raising layer k's decay from ≈ 0 to 0.1 adds exactly ½·0.1·‖W‖².
    let mut plain = st.params.clone();
    for &i in stn.response_params() {
        plain[i] = 0.0;
    }
    let mut no_decay = ut.clone();
    for j in 4..7 {
        no_decay.column_mut(j).fill(-30.0);
    }
    let base = run(&plain, &no_decay).0 .0;
    let dense: Vec<(usize, usize)> = vec![(64, 16), (16, 12), (12, 10)];
    let mut offset = 0;
    for (k, &(i, o)) in dense.iter().enumerate() {
        let layer = StnDense::new(i, o, 8).with_context_width(10);
        let np = Differentiable::<f64>::num_params(&layer);
        let pl = &plain[offset..offset + np];
        offset += np;
        let mut with = no_decay.clone();
        with.column_mut(4 + k).fill(0.1f64.ln());
        let expect: f64 = (0..6)
            .map(|r| {
                let u: Vec<f64> = with.row(r).to_vec();
                let w = layer.effective_weight(pl, &u).unwrap();
                0.5 * 0.1 * w.iter().map(|v| v * v).sum::<f64>()
            })
            .sum::<f64>()
            / 6.0;
        let got = run(&plain, &with).0 .0 - base;
        assert!(
            (got - expect).abs() < 1e-6 * expect,
            "layer {k}: {got} vs {expect}"
        );
    }
    // A network without ELR refuses an ELR configuration.
    let plain = DigitsStn::new(&data, &[16, 12], 0).unwrap();
    assert!(plain.init(&cfg).is_err());
}

/// The per-example weight decay of the effective weights against finite differences (the
/// closed form through row norms).
#[test]
fn decay_penalty_matches_finite_differences() {
    let layer = StnDense::new(6, 4, 3).with_context_width(5);
    let n = Differentiable::<f64>::num_params(&layer);
    let p = randn(1, n, 4).into_raw_vec_and_offset().0;
    let c = randn(7, 5, 5);
    let wd: Vec<f64> = (0..7).map(|i| 0.1 + 0.05 * i as f64).collect();
    let mut gp = vec![0.0; n];
    let (v, gc) = layer.decay_penalty(&p, c.view(), &wd, &mut gp).unwrap();
    // Direct: the mean of ½ wd_i ‖W_eff(u_i)‖².
    let direct = |p: &[f64], c: &Array2<f64>| -> f64 {
        (0..7)
            .map(|i| {
                let u: Vec<f64> = c.row(i).iter().take(3).copied().collect();
                let w = layer.effective_weight(p, &u).unwrap();
                0.5 * wd[i] * w.iter().map(|e| e * e).sum::<f64>()
            })
            .sum::<f64>()
            / 7.0
    };
    assert!((v - direct(&p, &c)).abs() < 1e-12 * v.abs().max(1.0));
    let h = 1e-6;
    let dp = randn(1, n, 6).into_raw_vec_and_offset().0;
    let sh = |s: f64| -> Vec<f64> { p.iter().zip(&dp).map(|(a, b)| a + s * b).collect() };
    let fd = (direct(&sh(h), &c) - direct(&sh(-h), &c)) / (2.0 * h);
    let an: f64 = gp.iter().zip(&dp).map(|(a, b)| a * b).sum();
    assert!((fd - an).abs() < 1e-7 * an.abs().max(1.0), "{fd} vs {an}");
    let dc = randn(7, 5, 7);
    let fd = (direct(&p, &(&c + &(&dc * h))) - direct(&p, &(&c - &(&dc * h)))) / (2.0 * h);
    let an = (&gc * &dc).sum();
    assert!((fd - an).abs() < 1e-7 * an.abs().max(1.0), "{fd} vs {an}");
    assert!(
        gc.column(3).iter().all(|v| *v == 0.0),
        "columns past the hyperparameters"
    );
}

#[test]
fn a_resumed_run_is_bit_identical_and_the_baseline_keeps_zero_gates() {
    let data = digits_split::<f64>().unwrap();
    let cfg = DigitsConfig {
        hidden: vec![32],
        steps: 240,
        eval_every: 60,
        ..Default::default()
    };
    let stn = DigitsStn::new(&data, &cfg.hidden, cfg.seed).unwrap();
    // Delta-STN resumes exactly too (its response optimizer is in the state).
    let dcfg = DigitsConfig {
        delta: true,
        ..cfg.clone()
    };
    let mut full = stn.init(&dcfg).unwrap();
    stn.run(&mut full, u64::MAX, &mut |_| {}).unwrap();
    let mut part = stn.init(&dcfg).unwrap();
    stn.run(&mut part, 133, &mut |_| {}).unwrap();
    let json = serde_json::to_string(&part).unwrap();
    let mut resumed: hyperprox_stn::digits::DigitsState = serde_json::from_str(&json).unwrap();
    stn.run(&mut resumed, u64::MAX, &mut |_| {}).unwrap();
    assert_eq!(resumed, full);
    assert_ne!(full.hypers, stn.init(&dcfg).unwrap().hypers);
    // The baselines train the plain MLP whatever the configuration's variant.
    let fixed = train_fixed(&stn, &dcfg, &[0.1, 0.0, 0.0, 1e-4, 1e-4]).unwrap();
    assert!(!fixed.config.delta && fixed.opt_response.is_none());
    let mut full = stn.init(&cfg).unwrap();
    stn.run(&mut full, u64::MAX, &mut |_| {}).unwrap();
    let mut part = stn.init(&cfg).unwrap();
    stn.run(&mut part, 133, &mut |_| {}).unwrap();
    let json = serde_json::to_string(&part).unwrap();
    let mut resumed: hyperprox_stn::digits::DigitsState = serde_json::from_str(&json).unwrap();
    stn.run(&mut resumed, u64::MAX, &mut |_| {}).unwrap();
    assert_eq!(resumed, full);
    assert_ne!(
        full.hypers,
        stn.init(&cfg).unwrap().hypers,
        "the hyperparameters moved"
    );
    // The baseline trains the plain MLP: the hypernetwork's parameters never move.
    let fixed = train_fixed(&stn, &cfg, &[0.1, 0.0, 0.0, 1e-4, 1e-4]).unwrap();
    let init = stn.init(&cfg).unwrap().params;
    let d = StnDense::new(64, 32, 4);
    let e = d.elementary_len();
    let np = Differentiable::<f64>::num_params(&d);
    assert_eq!(fixed.params[e..np], init[e..np]);
    assert_ne!(fixed.params[..e], init[..e]);
}

/// CI-sized: STN's best validation loss is no worse than the best of a 10-point dropout grid
/// given the same total training steps, plus 2 %.
#[test]
fn stn_matches_a_ten_point_grid_at_equal_total_steps() {
    let data = digits_split::<f64>().unwrap();
    let cfg = DigitsConfig {
        steps: 1500,
        eval_every: 50,
        ..Default::default()
    };
    let stn = DigitsStn::new(&data, &cfg.hidden, cfg.seed).unwrap();
    let mut st = stn.init(&cfg).unwrap();
    stn.run(&mut st, u64::MAX, &mut |_| {}).unwrap();
    let best = st.best.as_ref().unwrap().2.clone();
    let grid = grid_search(&stn, &cfg, 10, cfg.steps).unwrap();
    let g = best_run(&grid).unwrap();
    let gb = g.state.best.as_ref().unwrap().2.clone();
    let dcfg = DigitsConfig {
        delta: true,
        ..cfg.clone()
    };
    let mut ds = stn.init(&dcfg).unwrap();
    stn.run(&mut ds, u64::MAX, &mut |_| {}).unwrap();
    let dbest = ds.best.as_ref().unwrap().2.clone();
    println!("STN: {best:?}");
    println!("Delta-STN: {dbest:?}");
    println!("grid best (dropout {:.2}): {gb:?}", g.values[0]);
    for (name, v) in [("STN", best.val_loss), ("Delta-STN", dbest.val_loss)] {
        assert!(v <= 1.02 * gb.val_loss, "{name}: {v} vs {}", gb.val_loss);
    }
}
