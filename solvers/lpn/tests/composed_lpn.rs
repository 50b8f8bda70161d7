//! A trained LPN's `R_θ` as a part of a composed bilevel problem: its derivatives and the
//! hypergradient against finite differences, its stated curvature bounds against the Hessian,
//! and a MAID run that learns its (bounded) weight.

use hyperprox_bilevel::composed::*;
use hyperprox_bilevel::oracle::{check_hypergradient, check_problem_derivatives};
use hyperprox_bilevel::{BilevelProblem, Maid, MaidParams, Oracle, OuterSolver};
use hyperprox_lpn::composed::LpnRegularizer;
use hyperprox_lpn::{Icnn, IcnnConfig};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};

const D: usize = 6;

fn net() -> Icnn {
    let cfg = IcnnConfig {
        dim: D,
        widths: vec![12, 12],
        beta: 2.0,
        alpha: 0.2,
        arch: Default::default(),
    };
    Icnn::new(cfg, 4).unwrap()
}

fn problem() -> ComposedProblem {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let clean: Vec<Array2<f64>> = (0..3)
        .map(|_| Array2::from_shape_fn((1, D), |_| rng.random::<f64>() - 0.5))
        .collect();
    let noisy: Vec<Array1<f64>> = clean
        .iter()
        .map(|c| {
            c.iter()
                .map(|v| v + 0.3 * (rng.random::<f64>() - 0.5))
                .collect()
        })
        .collect();
    ComposedProblem::builder(
        DataFit::least_squares(Identity(D), &noisy).unwrap(),
        UpperLoss::squared_error(&clean),
    )
    .term(
        WeightInit::Bounded(0.3, 0.9),
        LpnRegularizer::new(net()).unwrap(),
        Identity(D),
    )
    .build()
    .unwrap()
}

#[test]
fn lpn_prior_derivatives_and_hypergradient_match_finite_differences() {
    let p = problem();
    let x = p.x_start();
    for theta in [p.theta_start(), p.theta_start() + 1.0] {
        for seed in 0..2 {
            let e = check_problem_derivatives(&p, x.view(), theta.view(), seed).unwrap();
            for (name, v) in ["∇ₓh", "H v", "Jᵀq", "∇g"].iter().zip(e) {
                assert!(v < 1e-6, "{name}: relative FD error {v:e}");
            }
        }
        let e = check_hypergradient(&Oracle::new(&p), theta.view(), 1e-5, 1e-12).unwrap();
        println!("hypergradient vs FD {e:.1e}");
        assert!(e < 1e-6, "hypergradient relative FD error {e:e}");
    }
}

/// `−I ⪯ ∇²R ⪯ (1/(2α) − 1)I` at random points (the Hessian by products), so the stated
/// `μ_R = −1` and `L_R` hold; and the lower level's `μ = (1 − w)/N` bounds `λ_min(H)`.
#[test]
fn lpn_prior_curvature_bounds_hold() {
    let r = LpnRegularizer::new(net()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let l = r.curvature(&[]).value;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for _ in 0..5 {
        let z: Vec<f64> = (0..D).map(|_| 2.0 * (rng.random::<f64>() - 0.5)).collect();
        let mut h = Array2::zeros((D, D));
        for j in 0..D {
            let mut e = vec![0.0; D];
            e[j] = 1.0;
            let mut col = vec![0.0; D];
            r.hvp_add(&z, &[], &e, 1.0, &mut col);
            h.column_mut(j).assign(&Array1::from(col));
        }
        let sym = (&h + &h.t()) * 0.5;
        assert!(
            (&h - &sym).iter().all(|v| v.abs() < 1e-8),
            "∇²R not symmetric"
        );
        use hyperprox_core::linalg::Real;
        let (_, s, _) = f64::thin_svd(sym.view()).unwrap();
        let c = s.iter().cloned().fold(0.0, f64::max);
        // λ_min(H) = c − λ_max(cI − H) (cI − H ⪰ 0): power iteration on cI − H.
        let b = &Array2::<f64>::eye(D) * c - &sym;
        let mut v = Array1::from_elem(D, 1.0);
        let mut lam = 0.0;
        for _ in 0..5000 {
            let bv = b.dot(&v);
            lam = v.dot(&bv) / v.dot(&v);
            v = &bv / bv.dot(&bv).sqrt().max(1e-300);
        }
        lo = lo.min(c - lam);
        hi = hi.max(c);
    }
    println!("‖∇²R‖ ≤ {hi:.3} (stated {l:.3}); λ_min(∇²R) ≥ {lo:.3} (stated −1)");
    assert!(hi <= l * (1.0 + 1e-9), "‖∇²R‖ {hi} above the stated {l}");
    assert!(lo >= -1.0 - 1e-9, "λ_min(∇²R) = {lo} below −1");
    let p = problem();
    let c = p
        .constants(p.x_start().view(), p.theta_start().view())
        .unwrap();
    let w = p.weights(p.theta_start().view())[0];
    assert!(
        (c.mu - (1.0 - w) / 3.0).abs() < 1e-12,
        "μ {} vs (1 − w)/N",
        c.mu
    );
}

#[test]
fn maid_learns_the_weight_of_an_lpn_prior() {
    let p = problem();
    let params = MaidParams::default().with_max_iters(15);
    let r = Maid::new(&p, params)
        .unwrap()
        .run(p.theta_start().view(), |_| true)
        .unwrap();
    let (first, last) = (r.history[0].upper, r.history.last().unwrap().upper);
    println!(
        "upper {first:.6e} -> {last:.6e}, weight {:.3} -> {:.3}",
        p.weights(p.theta_start().view())[0],
        p.weights(r.theta.view())[0]
    );
    assert!(last < first, "MAID did not lower the upper loss");
    assert!(
        r.history.iter().all(|h| !h.certified),
        "LPN parts must report estimated bounds"
    );
}

#[test]
fn lpn_prior_needs_alpha_and_the_right_size() {
    let mut cfg = net().config().clone();
    cfg.alpha = 0.0;
    let e = LpnRegularizer::new(Icnn::new(cfg, 1).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("α > 0"), "{e}");
    let obs = vec![Array1::zeros(D + 1)];
    let m = ComposedProblem::builder(
        DataFit::least_squares(Identity(D + 1), &obs).unwrap(),
        UpperLoss::squared_error(&[Array2::zeros((1, D + 1))]),
    )
    .term(
        WeightInit::Bounded(0.3, 0.9),
        LpnRegularizer::new(net()).unwrap(),
        Identity(D + 1),
    )
    .build()
    .err()
    .unwrap()
    .to_string();
    assert!(m.contains("regularizer input"), "{m}");
}
