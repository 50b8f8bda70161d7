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
    let u = &st.hypers.repeated(5) + &(randn(5, 5, 2) * 0.3);
    let c = stn.context_of(&st.hypers, &u);
    let x = data.val.x.slice(ndarray::s![..5, ..]).to_owned();
    stn.control().set_training(false);
    let r = check_block(net, &p, x.view(), c.view(), 3, 1e-6).unwrap();
    println!("{r:?}");
    assert!(r.worst() < 1e-6, "{r:?}");
    assert!(r.context > 0.0);
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
    let fixed = train_fixed(&stn, &cfg, &[0.1, 0.0, 0.0, 1e-4]).unwrap();
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
    println!("STN: {best:?}");
    println!("grid best (dropout {:.2}): {gb:?}", g.values[0]);
    assert!(
        best.val_loss <= 1.02 * gb.val_loss,
        "{} vs {}",
        best.val_loss,
        gb.val_loss
    );
}
