//! Self-tuning networks: the STN layer's derivatives against finite differences, the plain
//! network recovered at zero gates, and the ridge tuner against the exact optimum.

use hyperprox_core::diff::{check_block, Differentiable};
use hyperprox_core::nn::{Dense, Layer};
use hyperprox_stn::ridge::{RidgeData, RidgeStn, StnConfig};
use hyperprox_stn::StnDense;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn randn(r: usize, c: usize, seed: u64) -> Array2<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((r, c), |_| StandardNormal.sample(&mut rng))
}

fn params(layer: &StnDense, seed: u64) -> Vec<f64> {
    let n = Differentiable::<f64>::num_params(layer);
    randn(1, n, seed).into_raw_vec_and_offset().0
}

#[test]
fn stn_dense_derivatives_match_finite_differences() {
    for layer in [
        StnDense::new(5, 4, 3),
        StnDense::new(5, 4, 2).without_bias(),
    ] {
        let p = params(&layer, 1);
        let (x, c) = (
            randn(6, 5, 2),
            randn(6, Differentiable::<f64>::ctx_dim(&layer), 3),
        );
        let r = check_block(&layer, &p, x.view(), c.view(), 4, 1e-6).unwrap();
        println!("{r:?}");
        assert!(r.worst() < 1e-8, "{r:?}");
        // Single precision.
        let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
        let (x32, c32) = (x.mapv(|v| v as f32), c.mapv(|v| v as f32));
        let r = check_block(&layer, &p32, x32.view(), c32.view(), 5, 1e-2).unwrap();
        assert!(r.worst() < 1e-3, "{r:?}");
    }
}

#[test]
fn effective_weight_gradient_matches_finite_differences() {
    let layer = StnDense::new(4, 3, 2);
    let p = params(&layer, 7);
    let u = [0.3, -0.7];
    let gw = randn(3, 4, 8);
    let f = |p: &[f64], u: &[f64]| (layer.effective_weight(p, u).unwrap() * &gw).sum();
    let mut gp = vec![0.0; p.len()];
    let gu = layer
        .effective_weight_vjp(&p, &u, gw.view(), &mut gp)
        .unwrap();
    let h = 1e-6;
    let dp = randn(1, p.len(), 9).into_raw_vec_and_offset().0;
    let shift = |s: f64| -> Vec<f64> { p.iter().zip(&dp).map(|(a, b)| a + s * b).collect() };
    let fd = (f(&shift(h), &u) - f(&shift(-h), &u)) / (2.0 * h);
    let an: f64 = gp.iter().zip(&dp).map(|(a, b)| a * b).sum();
    assert!((fd - an).abs() < 1e-8 * an.abs().max(1.0), "{fd} vs {an}");
    for j in 0..2 {
        let (mut up, mut um) = (u, u);
        up[j] += h;
        um[j] -= h;
        let fd = (f(&p, &up) - f(&p, &um)) / (2.0 * h);
        assert!(
            (fd - gu[j]).abs() < 1e-8 * gu[j].abs().max(1.0),
            "{fd} vs {}",
            gu[j]
        );
    }
}

/// The context JVP (Delta-STN's linearization) against central differences of the forward
/// pass; the columns past the hyperparameters do not enter.
#[test]
fn stn_dense_context_jvp_matches_finite_differences() {
    for layer in [
        StnDense::new(5, 4, 3).with_context_width(5),
        StnDense::new(5, 4, 3).with_context_width(5).without_bias(),
    ] {
        let p = params(&layer, 11);
        let (x, c, w) = (randn(6, 5, 12), randn(6, 5, 13), randn(6, 5, 14));
        let jv = layer.jvp_ctx(&p, x.view(), c.view(), w.view()).unwrap();
        let h = 1e-5;
        let f = |s: f64| {
            layer
                .forward(&p, x.view(), (&c + &(&w * s)).view())
                .unwrap()
        };
        let fd = (f(h) - f(-h)) / (2.0 * h);
        let err = (&fd - &jv).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let scale = jv.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.1 && err < 1e-8 * scale, "{err} (scale {scale})");
        let mut w2 = w.clone();
        w2.slice_mut(ndarray::s![.., 3..]).fill(0.0);
        assert_eq!(
            layer.jvp_ctx(&p, x.view(), c.view(), w2.view()).unwrap(),
            jv
        );
        // Shape errors are errors.
        let bad = randn(6, 4, 15);
        assert!(layer.jvp_ctx(&p, x.view(), c.view(), bad.view()).is_err());
    }
}

/// With zero gates the STN layer is the plain dense layer bit for bit: output, input gradient
/// and the gradients of the elementary weights and bias.
#[test]
fn zero_gates_give_the_plain_network_bit_for_bit() {
    let layer = StnDense::new(7, 5, 2);
    let dense = Dense::new(7, 5);
    let mut rng = StdRng::seed_from_u64(3);
    let p: Vec<f64> = Layer::<f64>::init_params(&layer, &mut rng);
    let k = Differentiable::<f64>::num_params(&dense);
    let (x, c, g) = (randn(9, 7, 1), randn(9, 2, 2), randn(9, 5, 3));
    let y = layer.forward(&p, x.view(), c.view()).unwrap();
    let yd = dense.forward(&p[..k], x.view(), c.view()).unwrap();
    assert_eq!(y, yd);
    let mut gp = vec![0.0; p.len()];
    let mut gpd = vec![0.0; k];
    let gx = layer
        .vjp(&p, x.view(), c.view(), g.view(), &mut gp)
        .unwrap();
    let gxd = dense
        .vjp(&p[..k], x.view(), c.view(), g.view(), &mut gpd)
        .unwrap();
    assert_eq!(gx, gxd);
    assert_eq!(&gp[..k], &gpd[..]);
    // The gates themselves do get a gradient (the hypernetwork learns from there).
    assert!(gp[2 * k..].iter().any(|v| *v != 0.0));
}

fn data() -> RidgeData {
    RidgeData::synthetic(60, 200, 30, 1.0, 5).unwrap()
}

fn tuned(d: &RidgeData, cfg: StnConfig) -> hyperprox_stn::ridge::StnState {
    let stn = RidgeStn::new(d);
    let mut st = stn.init(&cfg).unwrap();
    stn.run(&mut st, u64::MAX, &mut |_| {}).unwrap();
    st
}

/// The tuned λ lies within 0.1 in log₁₀ of the exact minimizer of the validation loss
/// (closed form), for five seeds of the initialization and the draws.
#[test]
fn ridge_lambda_reaches_the_exact_optimum() {
    let d = data();
    let (lstar, vstar) = d.exact_optimum().unwrap();
    // The exact optimum is interior and a real minimum: both neighbours are worse.
    for f in [0.5, 2.0] {
        assert!(d.val_loss(d.exact_weights(lstar * f).unwrap().view()) > vstar);
    }
    for seed in 0..5 {
        let st = tuned(
            &d,
            StnConfig {
                seed,
                ..Default::default()
            },
        );
        let lam = st.hypers.values()[0];
        let v = d.val_loss(d.exact_weights(lam).unwrap().view());
        println!(
            "seed {seed}: exact λ* = {lstar:.4} (L_V {vstar:.5}), STN λ = {lam:.4} \
             (L_V at w*(λ) {v:.5}), σ = {:.3}",
            st.hypers.hypers[0].sigma()
        );
        assert!(
            (lam.log10() - lstar.log10()).abs() < 0.1,
            "{lam} vs {lstar}"
        );
        // The tuner moved: it started at λ = 1, 0.33 decades away.
        assert!((lam.log10() - 0.0).abs() > 0.2);
    }
}

/// Without the entropy term the perturbation scale keeps shrinking; with it, it levels off.
#[test]
fn the_entropy_term_keeps_the_scales_from_collapsing() {
    let d = data();
    let sigma = |tau: f64, steps: u64| {
        let st = tuned(
            &d,
            StnConfig {
                tau,
                steps,
                ..Default::default()
            },
        );
        st.hypers.hypers[0].sigma()
    };
    let (a, b) = (sigma(0.0, 6000), sigma(0.0, 12000));
    println!("τ = 0: σ {a:.4} → {b:.4}");
    assert!(b < 0.6 * a && b < 0.1, "{a} -> {b}");
    let (a, b) = (sigma(1e-2, 6000), sigma(1e-2, 12000));
    println!("τ = 1e-2: σ {a:.4} → {b:.4}");
    assert!(b > 0.9 * a && b > 0.3, "{a} -> {b}");
}

#[test]
fn a_resumed_run_is_bit_identical() {
    let d = data();
    let stn = RidgeStn::new(&d);
    let cfg = StnConfig {
        steps: 900,
        ..Default::default()
    };
    let full = tuned(&d, cfg.clone());
    let mut part = stn.init(&cfg).unwrap();
    stn.run(&mut part, 437, &mut |_| {}).unwrap();
    assert_eq!(part.step, 437);
    let json = serde_json::to_string(&part).unwrap();
    let mut resumed: hyperprox_stn::ridge::StnState = serde_json::from_str(&json).unwrap();
    stn.run(&mut resumed, u64::MAX, &mut |_| {}).unwrap();
    assert_eq!(resumed, full);
    assert!(full.trajectory.len() > 100);
}

#[test]
fn bad_inputs_are_errors() {
    let d = data();
    let bad = |x: Array2<f64>| {
        RidgeData::new(x, d.y_train.clone(), d.x_val.clone(), d.y_val.clone()).is_err()
    };
    assert!(bad(Array2::zeros((0, 30))));
    assert!(bad(Array2::zeros((59, 30))));
    let mut nan = d.x_train.clone();
    nan[[3, 4]] = f64::NAN;
    assert!(bad(nan));
    let stn = RidgeStn::new(&d);
    assert!(stn
        .init(&StnConfig {
            batch: 0,
            ..Default::default()
        })
        .is_err());
    assert!(stn
        .init(&StnConfig {
            initial_lambda: -1.0,
            ..Default::default()
        })
        .is_err());
    assert!(stn
        .init(&StnConfig {
            tau: f64::NAN,
            ..Default::default()
        })
        .is_err());
}

#[test]
fn stn_conv_derivatives_match_finite_differences_and_zero_gates_are_the_plain_conv() {
    use hyperprox_core::nn::{Conv2d, ImageShape};
    use hyperprox_stn::StnConv2d;
    let shape = ImageShape::new(2, 6, 5);
    let layer = StnConv2d::new(shape, 3, 3, 1, 1, 2)
        .unwrap()
        .with_context_width(3);
    let p = params_of(&layer, 11);
    let (x, c) = (randn(3, shape.len(), 12), randn(3, 3, 13));
    let r = check_block(&layer, &p, x.view(), c.view(), 14, 1e-6).unwrap();
    println!("{r:?}");
    assert!(r.worst() < 1e-8, "{r:?}");
    let cbar = layer
        .vjp_ctx(
            &p,
            x.view(),
            c.view(),
            randn(3, Differentiable::<f64>::out_dim(&layer), 15).view(),
        )
        .unwrap();
    assert!(
        cbar.column(2).iter().all(|v| *v == 0.0),
        "past the hyperparameters"
    );
    // Zero gates: the plain convolution, bit for bit.
    let mut rng = StdRng::seed_from_u64(3);
    let q: Vec<f64> = Layer::<f64>::init_params(&layer, &mut rng);
    let conv = Conv2d::new(shape, 3, 3, 1, 1).unwrap();
    let e = layer.elementary_len();
    let y = layer.forward(&q, x.view(), c.view()).unwrap();
    let yc = conv.forward(&q[..e], x.view(), c.view()).unwrap();
    assert_eq!(y, yc);
}

fn params_of<L: Differentiable<f64>>(layer: &L, seed: u64) -> Vec<f64> {
    randn(1, layer.num_params(), seed)
        .into_raw_vec_and_offset()
        .0
}

/// Delta-STN (centered) on ridge: the same accuracy bound, five seeds.
#[test]
fn delta_stn_reaches_the_exact_optimum() {
    let d = data();
    let (lstar, _) = d.exact_optimum().unwrap();
    let mut errs = vec![];
    for seed in 0..5 {
        let st = tuned(
            &d,
            StnConfig {
                seed,
                centered: true,
                ..Default::default()
            },
        );
        let lam = st.hypers.values()[0];
        errs.push(lam.log10() - lstar.log10());
    }
    println!("Delta-STN log10 errors: {errs:.4?}");
    assert!(errs.iter().all(|e| e.abs() < 0.1), "{errs:?}");
}
