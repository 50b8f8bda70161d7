//! Tsit5: accuracy, the order of its error estimate, the stiffness estimate, and the discrete
//! adjoint (task loss, every regularizer, the local step) against finite differences of the
//! replayed discrete map.

use hyperprox_core::diff::Differentiable;
use hyperprox_core::error::Result;
use hyperprox_core::nn::{Act, Activation, Dense, Layer, Sequential};
use hyperprox_node::tsit5::{
    aggregate, backward, local_step, replay, solve, step, Aggregate, Heuristic, Options, RegTerm,
    Rhs,
};
use ndarray::{array, Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::sync::Arc;

fn randn(r: usize, c: usize, seed: u64) -> Array2<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((r, c), |_| StandardNormal.sample(&mut rng))
}

/// `u' = −k u` as a dense layer with weight −k.
fn decay(k: f64) -> (Dense, Vec<f64>) {
    (Dense::new(1, 1), vec![-k, 0.0])
}

#[test]
fn exponential_decay_to_1e7_at_rtol_1e9_with_dense_output() {
    let (f, p) = decay(1.0);
    let times: Vec<f64> = (0..=20).map(|i| 0.1 * i as f64).collect();
    let tr = solve(
        &f,
        &p,
        array![[1.0]].view(),
        0.0,
        &times,
        &Options::tol(1e-9),
    )
    .unwrap();
    let err = tr
        .states
        .iter()
        .zip(&times)
        .map(|(s, t)| (s[[0, 0]] - (-t).exp()).abs())
        .fold(0.0, f64::max);
    println!("max error {err:.2e}, {:?}", tr.stats);
    assert!(err < 1e-7, "{err}");
    assert_eq!(tr.states.len(), times.len());
    assert!(tr.stats.accepted > 5 && tr.stats.nfe >= 6 * tr.stats.accepted);
    // Interpolated points (between steps) are as accurate as the step ends.
    let mid = tr.at(1.2345).unwrap()[[0, 0]];
    assert!((mid - (-1.2345f64).exp()).abs() < 1e-7);
}

#[test]
fn the_error_estimate_scales_like_h_to_the_fifth() {
    let (f, p) = decay(1.0);
    let rhs = Rhs::new(&f, &p).unwrap();
    let u = array![[1.0]];
    let opts = Options::tol(1e-6);
    let eest = |h: f64| {
        let k1 = rhs.eval(0.0, u.view()).unwrap();
        step(&rhs, 0.0, &u, k1, h, &opts, &mut 0).unwrap().eest
    };
    for h in [0.2, 0.1, 0.05] {
        let r = eest(h) / eest(h / 2.0);
        println!("h {h}: EEst ratio {r:.2}");
        assert!((28.0..36.0).contains(&r), "{r}");
    }
}

#[test]
fn the_stiffness_estimate_is_k_on_linear_decay_and_bounded_by_the_spectrum() {
    for k in [3.0, 50.0, 400.0] {
        let (f, p) = decay(k);
        let rhs = Rhs::new(&f, &p).unwrap();
        let u = array![[1.0]];
        let k1 = rhs.eval(0.0, u.view()).unwrap();
        let s = step(&rhs, 0.0, &u, k1, 1e-3, &Options::tol(1e-6), &mut 0).unwrap();
        assert!((s.rho - k).abs() < 1e-9 * k, "{} vs {k}", s.rho);
    }
    // A 2-D linear system with eigenvalues −1 and −60: the estimate lies in [1, 60] and
    // approaches 60 once the fast mode dominates the stage differences.
    let f = Dense::new(2, 2);
    let p = vec![-1.0, 0.0, 0.0, -60.0, 0.0, 0.0];
    let rhs = Rhs::new(&f, &p).unwrap();
    let u = array![[1.0, 1.0]];
    let k1 = rhs.eval(0.0, u.view()).unwrap();
    let s = step(&rhs, 0.0, &u, k1, 1e-3, &Options::tol(1e-6), &mut 0).unwrap();
    assert!(s.rho > 50.0 && s.rho <= 60.0 + 1e-9, "{}", s.rho);
}

/// `u' = −t u`, reading the time from the context: `u = exp(−t²/2)`.
struct TimeDecay;

impl Differentiable<f64> for TimeDecay {
    fn name(&self) -> String {
        "u' = −t u".into()
    }
    fn in_dim(&self) -> usize {
        1
    }
    fn out_dim(&self) -> usize {
        1
    }
    fn ctx_dim(&self) -> usize {
        1
    }
    fn num_params(&self) -> usize {
        0
    }
    fn forward(
        &self,
        _p: &[f64],
        x: ArrayView2<'_, f64>,
        c: ArrayView2<'_, f64>,
    ) -> Result<Array2<f64>> {
        Ok(&x * &c * -1.0)
    }
    fn vjp(
        &self,
        _p: &[f64],
        _x: ArrayView2<'_, f64>,
        c: ArrayView2<'_, f64>,
        g: ArrayView2<'_, f64>,
        _gp: &mut [f64],
    ) -> Result<Array2<f64>> {
        Ok(&g * &c * -1.0)
    }
}

#[test]
fn a_time_dependent_right_hand_side_reads_the_time_from_the_context() {
    let times = [0.0, 0.5, 1.0, 2.0];
    let tr = solve(
        &TimeDecay,
        &[],
        array![[1.0], [2.0]].view(),
        0.0,
        &times,
        &Options::tol(1e-10),
    )
    .unwrap();
    for (s, t) in tr.states.iter().zip(times) {
        let e = (-t * t / 2.0f64).exp();
        assert!((s[[0, 0]] - e).abs() < 1e-8 && (s[[1, 0]] - 2.0 * e).abs() < 1e-8);
    }
}

#[test]
fn bad_inputs_are_errors() {
    let (f, p) = decay(1.0);
    let o = Options::default();
    let u = array![[1.0]];
    assert!(solve(&f, &p, u.view(), 0.0, &[], &o).is_err());
    assert!(solve(&f, &p, u.view(), 0.0, &[1.0, 0.5], &o).is_err());
    assert!(solve(&f, &p, u.view(), 1.0, &[0.5], &o).is_err());
    assert!(solve(&f, &p, array![[f64::NAN]].view(), 0.0, &[1.0], &o).is_err());
    assert!(solve(&f, &p, array![[1.0, 2.0]].view(), 0.0, &[1.0], &o).is_err());
    assert!(solve(&f, &p[..1], u.view(), 0.0, &[1.0], &o).is_err());
    assert!(solve(
        &Dense::new(2, 3),
        &[0.0; 9],
        array![[1.0, 1.0]].view(),
        0.0,
        &[1.0],
        &o
    )
    .is_err());
    assert!(solve(&f, &p, u.view(), 0.0, &[1.0], &Options::tol(-1.0)).is_err());
    // u' = u² from 1 blows up at t = 1: an error, not a hang or a panic.
    let sq = Sequential::new(vec![
        Arc::new(hyperprox_node::Cube::new(1)) as Arc<dyn Layer<f64>>
    ])
    .unwrap();
    let r = solve(&sq, &[], u.view(), 0.0, &[2.0], &o);
    assert!(r.is_err(), "{:?}", r.map(|t| t.stats));
}

fn mlp() -> (Sequential<f64>, Vec<f64>) {
    let net = Sequential::new(vec![
        Arc::new(Dense::new(2, 8)) as Arc<dyn Layer<f64>>,
        Arc::new(Act::new(8, Activation::Tanh).unwrap()),
        Arc::new(Dense::new(8, 2)),
    ])
    .unwrap();
    let p: Vec<f64> = randn(1, net.num_params(), 3)
        .iter()
        .map(|v| 0.8 * v)
        .collect();
    (net, p)
}

/// The loss `Σ_t ⟨w_t, u(t)⟩ + Σ_r weight_r · R_r` of a replayed solve and its discrete
/// adjoint, against central differences in the parameters and the initial state.
#[test]
fn the_discrete_adjoint_matches_finite_differences_for_the_loss_and_every_regularizer() {
    let (net, p) = mlp();
    let u0 = array![[1.0, -0.5], [0.3, 0.8]];
    let times = [0.0, 0.13, 0.4, 0.77, 1.0];
    let opts = Options::tol(1e-5);
    let tr = solve(&net, &p, u0.view(), 0.0, &times, &opts).unwrap();
    assert!(tr.steps.len() >= 3, "{}", tr.steps.len());
    let hs: Vec<f64> = tr.steps.iter().map(|s| s.h).collect();
    let w: Vec<Array2<f64>> = (0..times.len())
        .map(|i| randn(2, 2, 10 + i as u64))
        .collect();
    let cases: Vec<(&str, Vec<RegTerm>)> = vec![
        ("task loss", vec![]),
        (
            "error, sum",
            vec![term(Heuristic::Error, Aggregate::Sum, 30.0)],
        ),
        (
            "error, mean",
            vec![term(Heuristic::Error, Aggregate::Mean, 50.0)],
        ),
        (
            "stiffness, max",
            vec![term(Heuristic::Stiffness, Aggregate::Max, 0.7)],
        ),
        (
            "stiffness, sum",
            vec![term(Heuristic::Stiffness, Aggregate::Sum, 0.3)],
        ),
    ];
    for (name, regs) in cases {
        let loss = |p: &[f64], u0: &Array2<f64>| {
            let t = replay(&net, p, u0.view(), 0.0, &hs, &times, &opts).unwrap();
            let task: f64 = t.states.iter().zip(&w).map(|(s, w)| (s * w).sum()).sum();
            task + regs
                .iter()
                .map(|r| r.weight * aggregate(&t.steps, r.heuristic, r.aggregate).0)
                .sum::<f64>()
        };
        let cot: Vec<(f64, ArrayView2<'_, f64>)> = times
            .iter()
            .copied()
            .zip(w.iter().map(|a| a.view()))
            .collect();
        let mut gp = vec![0.0; p.len()];
        let gu = backward(&net, &p, &tr, &cot, &regs, &opts, &mut gp).unwrap();
        let h = 2e-4;
        let dp = randn(1, p.len(), 7).into_raw_vec_and_offset().0;
        let sh = |s: f64| -> Vec<f64> { p.iter().zip(&dp).map(|(a, b)| a + s * b).collect() };
        let fd = d4(&|s| loss(&sh(s), &u0), h);
        let an: f64 = gp.iter().zip(&dp).map(|(a, b)| a * b).sum();
        println!("{name}: params fd {fd:.10e} adjoint {an:.10e}");
        assert!(
            (fd - an).abs() < 1e-6 * an.abs().max(1e-2),
            "{name}: {fd} vs {an}"
        );
        let du = randn(2, 2, 8);
        let fd = d4(&|s| loss(&p, &(&u0 + &(&du * s))), h);
        let an = (&gu * &du).sum();
        println!("{name}: u0 fd {fd:.10e} adjoint {an:.10e}");
        assert!(
            (fd - an).abs() < 1e-6 * an.abs().max(1e-2),
            "{name}: {fd} vs {an}"
        );
    }
}

/// The derivative of `f` at 0 by the 4-point central stencil (truncation `O(h⁴)`): the
/// regularizers difference nearly equal stages (`e = hΣb̃k` cancels to ~1e-8 of `k`), so a
/// 2-point difference at a small step loses digits to rounding, at a large one to truncation.
fn d4(f: &dyn Fn(f64) -> f64, h: f64) -> f64 {
    (8.0 * (f(h) - f(-h)) - (f(2.0 * h) - f(-2.0 * h))) / (12.0 * h)
}

fn term(heuristic: Heuristic, aggregate: Aggregate, weight: f64) -> RegTerm {
    RegTerm {
        heuristic,
        aggregate,
        weight,
    }
}

/// The local regularizer: one step at t₁ from the dense output; its gradient (through the
/// step and the interpolant into the solve) against finite differences.
#[test]
fn the_local_step_gradient_matches_finite_differences() {
    let (net, p) = mlp();
    let u0 = array![[1.0, -0.5], [0.3, 0.8]];
    let times = [0.0, 1.0];
    let opts = Options::tol(1e-5);
    let tr = solve(&net, &p, u0.view(), 0.0, &times, &opts).unwrap();
    let hs: Vec<f64> = tr.steps.iter().map(|s| s.h).collect();
    let t1 = 0.61;
    for heur in [Heuristic::Error, Heuristic::Stiffness] {
        let value = |p: &[f64]| {
            let t = replay(&net, p, u0.view(), 0.0, &hs, &times, &opts).unwrap();
            local_step(
                &net,
                p,
                &t,
                t1,
                heur,
                1.0,
                &opts,
                &mut vec![0.0; p.len()],
                &mut 0,
            )
            .unwrap()
            .0
        };
        let mut gp = vec![0.0; p.len()];
        let mut nfe = 0;
        let (v, ubar) = local_step(&net, &p, &tr, t1, heur, 1.0, &opts, &mut gp, &mut nfe).unwrap();
        assert!(v > 0.0 && nfe == 7);
        backward(&net, &p, &tr, &[(t1, ubar.view())], &[], &opts, &mut gp).unwrap();
        let dp = randn(1, p.len(), 9).into_raw_vec_and_offset().0;
        let sh = |s: f64| -> Vec<f64> { p.iter().zip(&dp).map(|(a, b)| a + s * b).collect() };
        let fd = d4(&|s| value(&sh(s)), 2e-4);
        let an: f64 = gp.iter().zip(&dp).map(|(a, b)| a * b).sum();
        println!("local {heur:?}: fd {fd:.10e} adjoint {an:.10e}");
        assert!((fd - an).abs() < 1e-6 * an.abs().max(1e-3), "{fd} vs {an}");
    }
}
