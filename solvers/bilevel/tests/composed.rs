//! Bilevel problems from parts (`hyperprox_bilevel::composed`): every part's derivatives and
//! the hypergradient against finite differences, the constants against the quantities they
//! bound, the certified error bound on a composed deblurring problem, the TV and FoE instances
//! against the hand-written problems they replaced, and the errors on bad input.

mod reference;

use hyperprox_bilevel::composed::*;
use hyperprox_bilevel::data::{add_noise, load_images};
use hyperprox_bilevel::oracle::{check_hypergradient, check_problem_derivatives};
use hyperprox_bilevel::{
    BilevelProblem, Constant, Estimates, FieldOfExperts, Maid, MaidParams, Oracle, OracleParams,
    OuterSolver, TvDenoising, TvModel,
};
use hyperprox_core::func::{Huber, TvKind};
use hyperprox_core::ops::Boundary;
use ndarray::{array, Array1, Array2};
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

fn kodak96() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/kodak/gray96")
}

fn gaussian(size: usize, sigma: f64) -> Array2<f64> {
    let c = (size / 2) as f64;
    let k = Array2::from_shape_fn((size, size), |(i, j)| {
        let (a, b) = (i as f64 - c, j as f64 - c);
        (-(a * a + b * b) / (2.0 * sigma * sigma)).exp()
    });
    let s = k.sum();
    k / s
}

/// `n` Kodak crops `size²`, blurred (Gaussian 5×5, σ = 1, reflect) and with noise `0.02`.
fn blurred(n: usize, size: usize) -> (Vec<Array2<f64>>, Vec<Array1<f64>>, Linear) {
    let clean = load_images(&kodak96(), n, size).unwrap();
    let blur = Linear::blur(size, size, gaussian(5, 1.0), Boundary::Reflect).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let obs = clean
        .iter()
        .map(|c| {
            let mut y = vec![0.0; size * size];
            blur.apply(&[], c.as_slice().unwrap(), &mut y);
            Array1::from_iter(
                y.into_iter()
                    .map(|v| v + 0.02 * (rng.random::<f64>() - 0.5)),
            )
        })
        .collect();
    (clean, obs, blur)
}

/// Deblurring 2 Kodak crops `s²` with TV (learned ν) and Tikhonov, both weights starting at `w`.
fn deblurring(s: usize, w: f64) -> ComposedProblem {
    let (clean, obs, blur) = blurred(2, s);
    ComposedProblem::builder(
        DataFit::least_squares(blur, &obs).unwrap(),
        UpperLoss::squared_error(&clean),
    )
    .term(
        WeightInit::Exp(w),
        Charbonnier::new(Smoothing::Learned(0.05)).unwrap(),
        diffs(s, DiffBoundary::Interior),
    )
    .term(WeightInit::Exp(w), SquaredL2, Identity(s * s))
    .build()
    .unwrap()
}

fn diffs(size: usize, b: DiffBoundary) -> Differences2d {
    Differences2d::new(size, size, b).unwrap()
}

/// Small problems, one per part: data fits, regularizers, operators, weights, upper losses.
fn zoo() -> Vec<(&'static str, ComposedProblem)> {
    let s = 8;
    let clean = load_images(&kodak96(), 2, s).unwrap();
    let noisy = add_noise(&clean, 0.1, 4);
    let den = || DataFit::denoising(&noisy).unwrap();
    let se = || UpperLoss::squared_error(&clean);
    let (bc, bobs, blur) = blurred(2, s);
    let mut out = vec![
        (
            "charbonnier (learned ν) on interior differences, exp weight",
            ComposedProblem::builder(den(), se())
                .term(
                    WeightInit::Exp(0.05),
                    Charbonnier::new(Smoothing::Learned(0.05)).unwrap(),
                    diffs(s, DiffBoundary::Interior),
                )
                .build()
                .unwrap(),
        ),
        (
            "isotropic TV (learned ν) on Neumann differences, softplus weight",
            ComposedProblem::builder(den(), se())
                .term(
                    WeightInit::Softplus(0.05),
                    IsotropicTvPenalty::new(Smoothing::Learned(0.05)).unwrap(),
                    diffs(s, DiffBoundary::Neumann),
                )
                .build()
                .unwrap(),
        ),
        (
            "blur data fit + generalized Gaussian p = 1.5 + squared ℓ2, PSNR-scaled loss",
            ComposedProblem::builder(
                DataFit::least_squares(blur.clone(), &bobs).unwrap(),
                UpperLoss::mean_squared_error(&bc),
            )
            .term(
                WeightInit::Exp(0.02),
                GeneralizedGaussian::new(1.5, 0.05).unwrap(),
                diffs(s, DiffBoundary::Interior),
            )
            .term(WeightInit::Exp(1e-2), SquaredL2, Identity(s * s))
            .build()
            .unwrap(),
        ),
        (
            "Huber (core) on differences",
            ComposedProblem::builder(den(), se())
                .term(
                    WeightInit::Exp(0.05),
                    CoreSmooth::new(Huber::new(1.0, 0.05).unwrap()).unwrap(),
                    diffs(s, DiffBoundary::Interior),
                )
                .build()
                .unwrap(),
        ),
        (
            "learned 3×3 filter with Charbonnier (field of experts)",
            ComposedProblem::builder(den(), se())
                .term(
                    WeightInit::Exp(0.1),
                    Charbonnier::new(Smoothing::Learned(0.1)).unwrap(),
                    Correlation::learned(
                        s,
                        s,
                        array![[0.1, -0.3, 0.2], [0.0, 0.4, -0.1], [-0.2, 0.1, -0.2]],
                    )
                    .unwrap(),
                )
                .build()
                .unwrap(),
        ),
        (
            "fixed Laplacian filter with squared ℓ2, fixed Charbonnier",
            ComposedProblem::builder(den(), se())
                .term(
                    WeightInit::Exp(0.1),
                    SquaredL2,
                    Correlation::fixed(
                        s,
                        s,
                        array![[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
                    )
                    .unwrap(),
                )
                .term(
                    WeightInit::Fixed(0.01),
                    Charbonnier::new(Smoothing::Fixed(0.05)).unwrap(),
                    diffs(s, DiffBoundary::Interior),
                )
                .build()
                .unwrap(),
        ),
    ];
    // Inpainting: a weighted least-squares fit through a mask, a validation fit as upper level.
    let keep: Vec<bool> = (0..s * s).map(|i| i % 3 != 0).collect();
    let obs: Vec<Array1<f64>> = noisy.iter().map(|y| y.iter().copied().collect()).collect();
    let weights = Array1::from_shape_fn(s * s, |i| 0.5 + (i % 5) as f64 * 0.2);
    let val: Vec<Array1<f64>> = clean.iter().map(|c| c.iter().copied().collect()).collect();
    out.push((
        "weighted least squares through a mask, validation fit upper level",
        ComposedProblem::builder(
            DataFit::weighted_least_squares(Linear::mask(keep).unwrap(), &obs, weights).unwrap(),
            UpperLoss::validation(DataFit::least_squares(Identity(s * s), &val).unwrap()),
        )
        .term(
            WeightInit::Exp(0.05),
            Charbonnier::new(Smoothing::Learned(0.05)).unwrap(),
            diffs(s, DiffBoundary::Interior),
        )
        .term(WeightInit::Exp(0.01), SquaredL2, Identity(s * s))
        .build()
        .unwrap(),
    ));
    // Logistic regression with a ridge and a validation logistic loss.
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let (m, n) = (40, 6);
    let w_true: Vec<f64> = (0..n).map(|_| rng.random::<f64>() - 0.5).collect();
    let mut data = |m: usize| {
        let a = Array2::from_shape_fn((m, n), |_| rng.random::<f64>() * 2.0 - 1.0);
        let y: Vec<f64> = a
            .rows()
            .into_iter()
            .map(|r| {
                let t: f64 = r.iter().zip(&w_true).map(|(u, v)| u * v).sum();
                if t + 0.3 * (rng.random::<f64>() - 0.5) > 0.0 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        (a, y)
    };
    let ((a, y), (av, yv)) = (data(m), data(m));
    out.push((
        "logistic data fit with ridge, validation logistic loss",
        ComposedProblem::builder(
            DataFit::logistic(a, &y).unwrap(),
            UpperLoss::validation(DataFit::logistic(av, &yv).unwrap()),
        )
        .term(WeightInit::Exp(0.5), SquaredL2, Identity(n))
        .build()
        .unwrap(),
    ));
    // A user's upper level: ¼‖x − c‖⁴-free smooth loss Σ log cosh(xᵢ − cᵢ) (L_g = 1, convex).
    let target: Array1<f64> = clean.iter().flat_map(|c| c.iter().copied()).collect();
    let closure = UpperLoss::closure(
        move |x, mut g| {
            let mut v = 0.0;
            for ((gi, xi), ci) in g.iter_mut().zip(x).zip(&target) {
                let d: f64 = xi - ci;
                v += d.cosh().ln();
                *gi = d.tanh();
            }
            Ok(v)
        },
        Bound::proven(1.0),
        true,
    );
    out.push((
        "user closure upper level (log cosh)",
        ComposedProblem::builder(den(), closure)
            .term(
                WeightInit::Exp(0.05),
                Charbonnier::new(Smoothing::Learned(0.05)).unwrap(),
                diffs(s, DiffBoundary::Interior),
            )
            .build()
            .unwrap(),
    ));
    out
}

/// Every part: `∇ₓh`, `H v`, `Jᵀq`, `∇g` against central differences (1e-6), and the exact
/// hypergradient against finite differences of `θ ↦ g(x̂(θ))` (1e-6 relative).
#[test]
fn composed_parts_and_hypergradients_match_finite_differences() {
    for (what, p) in zoo() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let theta = p
            .theta_start()
            .mapv(|t| t + 0.2 * (rng.random::<f64>() - 0.5));
        let x = p.x_start().mapv(|v| v + 0.1 * (rng.random::<f64>() - 0.5));
        for seed in 0..2 {
            let e = check_problem_derivatives(&p, x.view(), theta.view(), seed).unwrap();
            for (name, v) in ["∇ₓh", "H v", "Jᵀq", "∇g"].iter().zip(e) {
                assert!(v < 1e-6, "{what}: {name} relative FD error {v:e}");
            }
        }
        let o = Oracle::new(&p);
        let e = check_hypergradient(&o, theta.view(), 1e-5, 1e-12).unwrap();
        println!("{what}: hypergradient vs FD {e:.1e}");
        assert!(e < 1e-6, "{what}: hypergradient relative FD error {e:e}");
    }
}

/// A Charbonnier with learned `ν` (from 0.05) whose `∂_ν` cross term is scaled by
/// `cross_factor` (1 = right) and whose column Lipschitz constants are, if
/// `estimated_columns`, only estimates: planted faults for the tests.
struct Tweaked {
    cross_factor: f64,
    estimated_columns: bool,
}

impl Tweaked {
    fn inner() -> Charbonnier {
        Charbonnier::new(Smoothing::Learned(0.05)).unwrap()
    }
}

impl ParametricSmooth for Tweaked {
    fn name(&self) -> String {
        "tweaked".into()
    }
    fn n_params(&self) -> usize {
        1
    }
    fn initial_params(&self) -> Vec<f64> {
        Self::inner().initial_params()
    }
    fn value(&self, z: &[f64], p: &[f64]) -> f64 {
        Self::inner().value(z, p)
    }
    fn grad_add(&self, z: &[f64], p: &[f64], s: f64, out: &mut [f64]) {
        Self::inner().grad_add(z, p, s, out)
    }
    fn hvp_add(&self, z: &[f64], p: &[f64], v: &[f64], s: f64, out: &mut [f64]) {
        Self::inner().hvp_add(z, p, v, s, out)
    }
    fn cross_add(&self, z: &[f64], p: &[f64], q: &[f64], s: f64, out: &mut [f64]) {
        Self::inner().cross_add(z, p, q, self.cross_factor * s, out)
    }
    fn param_column_add(&self, z: &[f64], p: &[f64], k: usize, s: f64, out: &mut [f64]) {
        Self::inner().param_column_add(z, p, k, s, out)
    }
    fn curvature(&self, p: &[f64]) -> Bound {
        Self::inner().curvature(p)
    }
    fn hessian_lipschitz(&self, p: &[f64]) -> Option<Bound> {
        Self::inner().hessian_lipschitz(p)
    }
    fn param_column_lipschitz(&self, p: &[f64], k: usize) -> Option<Bound> {
        let b = Self::inner().param_column_lipschitz(p, k)?;
        Some(if self.estimated_columns {
            Bound::estimated(b.value)
        } else {
            b
        })
    }
}

/// A wrong mixed derivative is caught: a Charbonnier whose `∂_ν` cross term is off by 1 %.
#[test]
fn a_wrong_cross_derivative_fails_the_check() {
    let clean = load_images(&kodak96(), 1, 8).unwrap();
    let noisy = add_noise(&clean, 0.1, 4);
    let p = ComposedProblem::builder(
        DataFit::denoising(&noisy).unwrap(),
        UpperLoss::squared_error(&clean),
    )
    .term(
        WeightInit::Exp(0.05),
        Tweaked {
            cross_factor: 1.01,
            estimated_columns: false,
        },
        diffs(8, DiffBoundary::Interior),
    )
    .build()
    .unwrap();
    let e = check_hypergradient(&Oracle::new(&p), p.theta_start().view(), 1e-5, 1e-12).unwrap();
    assert!(e > 1e-4, "a 1 % error in ∂_ν went unnoticed: {e:e}");
}

// ------------------------------------------------------------------------------ constants

fn dense_of(n: usize, apply: impl Fn(&Array1<f64>) -> Array1<f64>) -> Array2<f64> {
    let mut m = Array2::zeros((apply(&Array1::zeros(n)).len(), n));
    for j in 0..n {
        let mut e = Array1::zeros(n);
        e[j] = 1.0;
        m.column_mut(j).assign(&apply(&e));
    }
    m
}

fn svals(m: &Array2<f64>) -> Array1<f64> {
    use hyperprox_core::linalg::Real;
    f64::thin_svd(m.view()).unwrap().1
}

fn spectral(m: &Array2<f64>) -> f64 {
    svals(m).fold(0.0f64, |a, &b| a.max(b))
}

fn hessian_and_j<P: BilevelProblem>(
    p: &P,
    x: &Array1<f64>,
    t: &Array1<f64>,
) -> (Array2<f64>, Array2<f64>) {
    let h = dense_of(p.dim_x(), |v| {
        let mut o = Array1::zeros(p.dim_x());
        p.lower_hvp_into(o.view_mut(), x.view(), t.view(), v.view())
            .unwrap();
        o
    });
    // Jᵀ from q = e_i: rows of J.
    let jt = dense_of(p.dim_x(), |q| {
        let mut o = Array1::zeros(p.dim_theta());
        p.cross_jt_into(o.view_mut(), x.view(), t.view(), q.view())
            .unwrap();
        o
    });
    (h, jt.t().to_owned())
}

/// The constants from the parts bound what they claim on a composed deblurring problem with
/// three hyperparameters (so `‖J‖` goes through the Jacobi eigenvalue route): `μ ≤ λ_min(H)`,
/// `L ≥ λ_max(H)`, `‖J‖` equals the spectral norm of the dense `J` (1e-9), `L_J` and
/// `L_{H⁻¹}` bound the observed rates between two points, `L_g` that of `∇g`.
#[test]
fn constants_from_the_parts_bound_their_quantities() {
    let s = 8;
    let p = deblurring(s, 0.05);
    assert_eq!(p.dim_theta(), 3);
    let t = p.theta_start();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let x1 = p.x_start().mapv(|v| v + 0.05 * (rng.random::<f64>() - 0.5));
    let x2 = p.x_start().mapv(|v| v + 0.05 * (rng.random::<f64>() - 0.5));
    let c = p.constants(x1.view(), t.view()).unwrap();
    let (h1, j1) = hessian_and_j(&p, &x1, &t);
    let (h2, j2) = hessian_and_j(&p, &x2, &t);
    let sv = svals(&h1);
    let (hmax, hmin) = (
        sv.fold(0.0f64, |a, &b| a.max(b)),
        sv.fold(f64::INFINITY, |a, &b| a.min(b)),
    );
    assert!(
        c.mu <= hmin * (1.0 + 1e-10) && c.mu > 0.0,
        "μ {} vs λ_min {hmin}",
        c.mu
    );
    assert!(c.lipschitz >= hmax, "L {} < λ_max {hmax}", c.lipschitz);
    let Constant::Known(jn) = c.j_norm else {
        panic!("‖J‖ unknown")
    };
    assert!(
        (jn - spectral(&j1)).abs() <= 1e-9 * jn,
        "‖J‖ {jn} vs {}",
        spectral(&j1)
    );
    let dx = (&x1 - &x2).mapv(|v| v * v).sum().sqrt();
    let Constant::Known(lj) = c.l_j else {
        panic!("L_J unknown")
    };
    assert!(lj >= spectral(&(&j1 - &j2)) / dx, "L_J");
    let inv = |h: &Array2<f64>| {
        use hyperprox_core::linalg::Real;
        let (u, s, vt) = f64::thin_svd(h.view()).unwrap();
        let mut vs = vt.t().to_owned();
        for (mut col, sv) in vs.columns_mut().into_iter().zip(&s) {
            col /= *sv;
        }
        vs.dot(&u.t())
    };
    let Constant::Known(lhi) = c.l_hinv else {
        panic!("L_H⁻¹ unknown")
    };
    assert!(lhi >= spectral(&(&inv(&h1) - &inv(&h2))) / dx, "L_H⁻¹");
    assert_eq!(c.l_g, 0.5);
}

/// The certified ω dominates the true hypergradient error on a composed deblurring problem
/// (blur, TV with learned ν, a squared-ℓ2 term): over inexact lower-level points (ε) and
/// inexact linear solves (δ), every record certified.
#[test]
fn certified_error_bound_dominates_the_true_error_on_composed_deblurring() {
    let s = 16;
    let p = deblurring(s, 0.01);
    let o = Oracle::new(&p).with_params(OracleParams::default());
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let norm = |v: &Array1<f64>| v.dot(v).sqrt();
    let (mut cases, mut worst) = (0, f64::INFINITY);
    for theta in [p.theta_start(), p.theta_start() + 0.5] {
        let mut est = Estimates::default();
        let tight = o
            .hypergradient(theta.view(), p.x_start().view(), 1e-10, 1e-10, &mut est)
            .unwrap();
        for eps in [1e-1, 1e-2, 1e-3] {
            let u = Array1::from_shape_fn(p.dim_x(), |_| rng.random::<f64>() - 0.5);
            let x = &tight.x + &(&u * (eps / norm(&u)));
            let mut gg = Array1::zeros(p.dim_x());
            p.upper_grad_into(gg.view_mut(), x.view()).unwrap();
            let (q0, _, _) = o
                .solve_linear(theta.view(), x.view(), gg.view(), 1e-12)
                .unwrap();
            for delta in [1e-1, 1e-3, 0.0] {
                let w = Array1::from_shape_fn(p.dim_x(), |_| rng.random::<f64>() - 0.5);
                let q = &q0 + &(&w * (delta / norm(&w)));
                let hg = o
                    .hypergradient_at(theta.view(), x.view(), q.view(), &mut est)
                    .unwrap();
                let err = norm(&(&hg.z - &tight.z)) + tight.omega;
                assert!(hg.certified, "ε {eps} δ {delta}: not certified");
                assert!(
                    hg.omega >= err,
                    "ε {eps} δ {delta}: ω {:e} < error {err:e}",
                    hg.omega
                );
                worst = worst.min(hg.omega / err);
                cases += 1;
            }
        }
    }
    println!("{cases} cases, smallest ω/error {worst:.3e}");
    assert_eq!(cases, 18);
}

// ------------------------------------------------------------- TV and FoE as instances

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

fn relv(a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    let d = a - b;
    d.dot(&d).sqrt() / a.dot(a).sqrt().max(b.dot(b).sqrt()).max(1e-300)
}

/// The largest relative difference between two problems' products and constants at random
/// points.
fn compare<P: BilevelProblem, Q: BilevelProblem>(
    a: &P,
    b: &Q,
    theta: &Array1<f64>,
    seed: u64,
) -> f64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = a.dim_x();
    let mut r = |s: f64| Array1::from_shape_fn(n, |_| s * (rng.random::<f64>() - 0.5));
    let x = &a.x_start() + &r(0.2);
    let (v, q) = (r(1.0), r(1.0));
    let mut worst = 0.0f64;
    let t = theta.view();
    worst = worst.max(rel(
        a.lower_value(x.view(), t).unwrap(),
        b.lower_value(x.view(), t).unwrap(),
    ));
    worst = worst.max(rel(
        a.upper_value(x.view()).unwrap(),
        b.upper_value(x.view()).unwrap(),
    ));
    let (mut ga, mut gb) = (Array1::zeros(n), Array1::zeros(n));
    a.lower_grad_into(ga.view_mut(), x.view(), t).unwrap();
    b.lower_grad_into(gb.view_mut(), x.view(), t).unwrap();
    worst = worst.max(relv(&ga, &gb));
    a.lower_hvp_into(ga.view_mut(), x.view(), t, v.view())
        .unwrap();
    b.lower_hvp_into(gb.view_mut(), x.view(), t, v.view())
        .unwrap();
    worst = worst.max(relv(&ga, &gb));
    a.upper_grad_into(ga.view_mut(), x.view()).unwrap();
    b.upper_grad_into(gb.view_mut(), x.view()).unwrap();
    worst = worst.max(relv(&ga, &gb));
    let m = a.dim_theta();
    let (mut ja, mut jb) = (Array1::zeros(m), Array1::zeros(m));
    a.cross_jt_into(ja.view_mut(), x.view(), t, q.view())
        .unwrap();
    b.cross_jt_into(jb.view_mut(), x.view(), t, q.view())
        .unwrap();
    worst = worst.max(relv(&ja, &jb));
    let (ca, cb) = (
        a.constants(x.view(), t).unwrap(),
        b.constants(x.view(), t).unwrap(),
    );
    for (u, w) in [
        (ca.mu, cb.mu),
        (ca.lipschitz, cb.lipschitz),
        (ca.l_g, cb.l_g),
    ] {
        worst = worst.max(rel(u, w));
    }
    for (u, w) in [
        (ca.j_norm, cb.j_norm),
        (ca.l_j, cb.l_j),
        (ca.l_hinv, cb.l_hinv),
    ] {
        match (u, w) {
            (Constant::Known(u), Constant::Known(w)) => worst = worst.max(rel(u, w)),
            (Constant::Unknown, Constant::Unknown) => {}
            _ => panic!("{}: {u:?} vs {w:?}", a.name()),
        }
    }
    worst
}

/// 10 MAID iterations on both: the largest relative difference of θ and of the upper loss.
fn compare_maid<P: BilevelProblem, Q: BilevelProblem>(a: &P, b: &Q) -> f64 {
    let params = MaidParams::default().with_max_iters(10);
    let ra = Maid::new(a, params)
        .unwrap()
        .run(a.theta_start().view(), |_| true)
        .unwrap();
    let rb = Maid::new(b, params)
        .unwrap()
        .run(b.theta_start().view(), |_| true)
        .unwrap();
    assert_eq!(ra.history.len(), rb.history.len());
    let mut worst = relv(&ra.theta, &rb.theta);
    for (u, w) in ra.history.iter().zip(&rb.history) {
        worst = worst.max(rel(u.upper, w.upper));
        assert_eq!(u.accepted, w.accepted);
    }
    worst
}

/// TV (anisotropic/isotropic, ν learned or fixed) and FoE as composed instances give the same
/// numbers as the hand-written problems they replaced (kept in `tests/reference`): products
/// and constants at random points, and 10 MAID iterations, to 1e-10 relative.
#[test]
fn tv_and_foe_instances_reproduce_the_hand_written_problems() {
    let clean = load_images(&kodak96(), 3, 12).unwrap();
    let noisy = add_noise(&clean, 0.1, 2);
    for model in [
        TvModel::default(),
        TvModel {
            kind: TvKind::Isotropic,
            fixed_smoothing: None,
        },
        TvModel {
            kind: TvKind::Anisotropic,
            fixed_smoothing: Some(0.02),
        },
    ] {
        let p = TvDenoising::new(&clean, &noisy)
            .unwrap()
            .with_model(model)
            .unwrap();
        let hand = reference::HandTv::new(&clean, &noisy, model);
        let t = p.theta_start() + 2.0;
        let e = compare(&p, &hand, &t, 1).max(compare(&p, &hand, &p.theta_start(), 2));
        let em = compare_maid(&p, &hand);
        println!("TV {model:?}: products {e:.1e}, MAID {em:.1e}");
        assert!(e < 1e-10 && em < 1e-10, "TV {model:?}: {e:e} {em:e}");
    }
    let clean = load_images(&kodak96(), 2, 16).unwrap();
    let noisy = add_noise(&clean, 0.1, 3);
    let foe = FieldOfExperts::new(&clean, &noisy, 3, 3, 5).unwrap();
    let hand = reference::HandFoe::like(&foe);
    let e = compare(&foe, &hand, &foe.theta_start(), 3);
    let em = compare_maid(&foe, &hand);
    println!("FoE: products {e:.1e}, MAID {em:.1e}");
    assert!(e < 1e-10 && em < 1e-10, "FoE: {e:e} {em:e}");
}

// ------------------------------------------------------------------------ bad input

#[test]
fn bad_compositions_are_errors_that_say_what_to_do() {
    let clean = load_images(&kodak96(), 1, 8).unwrap();
    let noisy = add_noise(&clean, 0.1, 4);
    let den = || DataFit::denoising(&noisy).unwrap();
    let se = || UpperLoss::squared_error(&clean);
    let msg = |r: hyperprox_core::Result<ComposedProblem>| r.err().expect("an error").to_string();
    // Not strongly convex: a mask and TV only.
    let keep: Vec<bool> = (0..64).map(|i| i % 2 == 0).collect();
    let obs: Vec<Array1<f64>> = noisy.iter().map(|y| y.iter().copied().collect()).collect();
    let m = msg(ComposedProblem::builder(
        DataFit::least_squares(Linear::mask(keep).unwrap(), &obs).unwrap(),
        se(),
    )
    .term(
        WeightInit::Exp(0.1),
        Charbonnier::new(Smoothing::Fixed(0.1)).unwrap(),
        diffs(8, DiffBoundary::Interior),
    )
    .build());
    assert!(m.contains("squared-ℓ2"), "{m}");
    // An operator on another size.
    let m = msg(ComposedProblem::builder(den(), se())
        .term(WeightInit::Exp(0.1), SquaredL2, Identity(10))
        .build());
    assert!(m.contains("operator domain"), "{m}");
    // Pairs on an odd number of outputs.
    let m = msg(ComposedProblem::builder(den(), se())
        .term(
            WeightInit::Exp(0.1),
            IsotropicTvPenalty::new(Smoothing::Fixed(0.1)).unwrap(),
            Linear::dense(Array2::eye(64).slice(ndarray::s![..63, ..]).to_owned()).unwrap(),
        )
        .build());
    assert!(m.contains("even"), "{m}");
    // A non-positive starting weight, p outside (1, 2], ν ≤ 0, an upper level of another size.
    let m = msg(ComposedProblem::builder(den(), se())
        .term(WeightInit::Exp(0.0), SquaredL2, Identity(64))
        .build());
    assert!(m.contains("> 0"), "{m}");
    assert!(GeneralizedGaussian::new(2.5, 0.1).is_err());
    assert!(Charbonnier::new(Smoothing::Learned(-1.0)).is_err());
    let other = load_images(&kodak96(), 2, 8).unwrap();
    let m = msg(
        ComposedProblem::builder(den(), UpperLoss::squared_error(&other))
            .term(WeightInit::Exp(0.1), SquaredL2, Identity(64))
            .build(),
    );
    assert!(m.contains("clean data"), "{m}");
    // Non-finite observations; labels other than ±1.
    let bad = vec![Array1::from_elem(64, f64::NAN)];
    assert!(DataFit::least_squares(Identity(64), &bad).is_err());
    assert!(DataFit::logistic(Array2::zeros((2, 2)), &[1.0, 0.0]).is_err());
}

/// A concave `R(z) = −½‖z‖²` (`μ_R = −1`, `L_R = 1`, `T = 0`): a weakly convex part.
struct NegHalfSq;

impl ParametricSmooth for NegHalfSq {
    fn name(&self) -> String {
        "−½‖z‖²".into()
    }
    fn value(&self, z: &[f64], _p: &[f64]) -> f64 {
        -0.5 * z.iter().map(|v| v * v).sum::<f64>()
    }
    fn grad_add(&self, z: &[f64], _p: &[f64], s: f64, out: &mut [f64]) {
        out.iter_mut().zip(z).for_each(|(o, v)| *o -= s * v);
    }
    fn hvp_add(&self, _z: &[f64], _p: &[f64], v: &[f64], s: f64, out: &mut [f64]) {
        out.iter_mut().zip(v).for_each(|(o, vi)| *o -= s * vi);
    }
    fn curvature(&self, _p: &[f64]) -> Bound {
        Bound::proven(1.0)
    }
    fn strong_convexity(&self, _p: &[f64]) -> f64 {
        -1.0
    }
    fn hessian_lipschitz(&self, _p: &[f64]) -> Option<Bound> {
        Some(Bound::proven(0.0))
    }
}

/// A weakly convex part costs `w·|μ_R|·‖K‖²` of `μ`: with a bounded weight `w = 0.2` on
/// `K = 2I` (dense, `‖K‖ ≤ 2` proven), `μ = (1 − 0.2·4)/N`; `w = 0.3` would make `h`
/// non-convex and is refused. The bounded weight's derivative passes the FD checks.
#[test]
fn weakly_convex_parts_lower_mu_and_bounded_weights_keep_it_positive() {
    let clean = load_images(&kodak96(), 2, 8).unwrap();
    let noisy = add_noise(&clean, 0.1, 4);
    let two = || Linear::dense(Array2::eye(64) * 2.0).unwrap();
    let build = |w0: f64| {
        ComposedProblem::builder(
            DataFit::denoising(&noisy).unwrap(),
            UpperLoss::squared_error(&clean),
        )
        .term(WeightInit::Bounded(w0, 0.24), NegHalfSq, two())
        .term(
            WeightInit::Exp(0.05),
            Charbonnier::new(Smoothing::Learned(0.05)).unwrap(),
            diffs(8, DiffBoundary::Interior),
        )
        .build()
    };
    let p = build(0.2).unwrap();
    let c = p
        .constants(p.x_start().view(), p.theta_start().view())
        .unwrap();
    assert!((c.mu - (1.0 - 0.2 * 4.0) / 2.0).abs() < 1e-14, "μ {}", c.mu);
    let e = check_problem_derivatives(&p, p.x_start().view(), p.theta_start().view(), 1).unwrap();
    assert!(e.iter().all(|v| *v < 1e-6), "{e:?}");
    let e = check_hypergradient(&Oracle::new(&p), p.theta_start().view(), 1e-5, 1e-12).unwrap();
    assert!(e < 1e-6, "hypergradient vs FD {e:e}");
    let err = ComposedProblem::builder(
        DataFit::denoising(&noisy).unwrap(),
        UpperLoss::squared_error(&clean),
    )
    .term(WeightInit::Fixed(0.3), NegHalfSq, two())
    .build()
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("strongly convex"), "{err}");
}

/// Where a part's bound is only an estimate, the constants it enters are left to the oracle:
/// an estimated `L_g` (a closure) or operator norm voids all three; an estimated column
/// Lipschitz constant voids `L_J` only; every record then says estimated.
#[test]
fn estimated_bounds_leave_their_constants_to_the_oracle() {
    let clean = load_images(&kodak96(), 1, 8).unwrap();
    let noisy = add_noise(&clean, 0.1, 4);
    let target: Array1<f64> = clean[0].iter().copied().collect();
    let closure = |l_g: Bound| {
        let t = target.clone();
        UpperLoss::closure(
            move |x, mut g| {
                g.assign(&(&x - &t));
                Ok(0.5 * (&x - &t).mapv(|v| v * v).sum())
            },
            l_g,
            true,
        )
    };
    let tv = || Charbonnier::new(Smoothing::Learned(0.05)).unwrap();
    let known = |c: Constant| matches!(c, Constant::Known(_));
    let build = |upper: UpperLoss, op: Linear| {
        ComposedProblem::builder(DataFit::denoising(&noisy).unwrap(), upper)
            .term(
                WeightInit::Exp(0.05),
                tv(),
                diffs(8, DiffBoundary::Interior),
            )
            .term(WeightInit::Exp(0.01), SquaredL2, op)
            .build()
            .unwrap()
    };
    let eye = || Linear::dense(Array2::eye(64)).unwrap();
    let p = build(closure(Bound::proven(1.0)), eye());
    let c = p
        .constants(p.x_start().view(), p.theta_start().view())
        .unwrap();
    assert!(known(c.j_norm) && known(c.l_j) && known(c.l_hinv), "{c:?}");
    let p = build(closure(Bound::estimated(1.0)), eye());
    let c = p
        .constants(p.x_start().view(), p.theta_start().view())
        .unwrap();
    assert!(
        !known(c.j_norm) && !known(c.l_j) && !known(c.l_hinv),
        "{c:?}"
    );
    let hg = Oracle::new(&p)
        .hypergradient(
            p.theta_start().view(),
            p.x_start().view(),
            1e-6,
            1e-6,
            &mut Estimates::default(),
        )
        .unwrap();
    assert!(!hg.certified);
    let est = Linear::new(
        hyperprox_core::ops::Identity::new(64),
        Bound::estimated(1.0),
    )
    .unwrap();
    let p = build(closure(Bound::proven(1.0)), est);
    let c = p
        .constants(p.x_start().view(), p.theta_start().view())
        .unwrap();
    assert!(
        !known(c.j_norm) && !known(c.l_j) && !known(c.l_hinv),
        "{c:?}"
    );
    // A Charbonnier whose ν-column Lipschitz constant is only estimated: L_J unknown.
    let p = ComposedProblem::builder(
        DataFit::denoising(&noisy).unwrap(),
        UpperLoss::squared_error(&clean),
    )
    .term(
        WeightInit::Exp(0.05),
        Tweaked {
            cross_factor: 1.0,
            estimated_columns: true,
        },
        diffs(8, DiffBoundary::Interior),
    )
    .build()
    .unwrap();
    let c = p
        .constants(p.x_start().view(), p.theta_start().view())
        .unwrap();
    assert!(known(c.j_norm) && !known(c.l_j) && known(c.l_hinv), "{c:?}");
}

/// The smoothed generalized Gaussian's bounds: `L_R = p·ν^{p−2}` is `ψ''(0)` (attained), and
/// `T = p(2−p)(3/2)ν^{p−3}` bounds `|ψ'''|` on a fine grid within a factor 2 of its maximum
/// (from the derivation's `(p−1)u² + 3 ≤ 3(1 + u²)`); a problem using it keeps a certified
/// `L_{H⁻¹}`. A part without a strong-convexity modulus (Huber on the identity) adds nothing
/// to `μ`.
#[test]
fn generalized_gaussian_bounds_hold_and_parts_add_only_stated_strong_convexity() {
    for (p, nu) in [(1.5, 0.05), (1.2, 0.3), (1.9, 1.0)] {
        let gg = GeneralizedGaussian::new(p, nu).unwrap();
        let second = |t: f64| {
            let mut o = [0.0];
            gg.hvp_add(&[t], &[], &[1.0], 1.0, &mut o);
            o[0]
        };
        let l = gg.curvature(&[]).value;
        assert!(
            (l - second(0.0)).abs() <= 1e-12 * l,
            "p {p}: L_R {l} vs ψ''(0) {}",
            second(0.0)
        );
        let t_bound = gg.hessian_lipschitz(&[]).unwrap().value;
        let h = 1e-6 * nu;
        let third = (0..20000)
            .map(|i| (i as f64 - 10000.0) * 1e-3 * nu)
            .map(|t| ((second(t + h) - second(t - h)) / (2.0 * h)).abs())
            .fold(0.0, f64::max);
        assert!(
            t_bound >= third && t_bound <= 2.0 * third,
            "p {p}: T {t_bound} vs max|ψ'''| {third}"
        );
    }
    let clean = load_images(&kodak96(), 1, 8).unwrap();
    let noisy = add_noise(&clean, 0.1, 4);
    let gg = ComposedProblem::builder(
        DataFit::denoising(&noisy).unwrap(),
        UpperLoss::squared_error(&clean),
    )
    .term(
        WeightInit::Exp(0.1),
        GeneralizedGaussian::new(1.5, 0.05).unwrap(),
        diffs(8, DiffBoundary::Interior),
    )
    .build()
    .unwrap();
    let c = gg
        .constants(gg.x_start().view(), gg.theta_start().view())
        .unwrap();
    assert!(matches!(c.l_hinv, Constant::Known(_)), "{c:?}");
    let huber = ComposedProblem::builder(
        DataFit::denoising(&noisy).unwrap(),
        UpperLoss::squared_error(&clean),
    )
    .term(
        WeightInit::Exp(0.1),
        CoreSmooth::new(Huber::new(1.0, 0.05).unwrap()).unwrap(),
        Identity(64),
    )
    .build()
    .unwrap();
    let c = huber
        .constants(huber.x_start().view(), huber.theta_start().view())
        .unwrap();
    assert_eq!(c.mu, 1.0);
}

/// Every part operator passes the adjoint dot-product test (1e-12), its stated norm bound is
/// at least the norm (power iteration on `KᵀK`), its row-group bound at least the largest
/// group's norm, and a learned filter's parameter gradient matches finite differences.
#[test]
fn part_operators_pass_the_adjoint_test_and_their_bounds_hold() {
    let (h, w) = (7, 9);
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let taps = Array2::from_shape_fn((3, 3), |_| rng.random::<f64>() - 0.5);
    let keep: Vec<bool> = (0..h * w).map(|i| i % 3 != 1).collect();
    let ops: Vec<(Box<dyn PartOperator>, Vec<f64>)> = vec![
        (Box::new(Identity(h * w)), vec![]),
        (
            Box::new(Differences2d::new(h, w, DiffBoundary::Interior).unwrap()),
            vec![],
        ),
        (
            Box::new(Differences2d::new(h, w, DiffBoundary::Neumann).unwrap()),
            vec![],
        ),
        (
            Box::new(Correlation::fixed(h, w, taps.clone()).unwrap()),
            vec![],
        ),
        (
            Box::new(Correlation::learned(h, w, taps.clone()).unwrap()),
            taps.iter().copied().collect(),
        ),
        (
            Box::new(Linear::blur(h, w, gaussian(5, 1.0), Boundary::Reflect).unwrap()),
            vec![],
        ),
        (Box::new(Linear::mask(keep).unwrap()), vec![]),
        (
            Box::new(
                Linear::dense(Array2::from_shape_fn((20, h * w), |_| {
                    rng.random::<f64>() - 0.5
                }))
                .unwrap(),
            ),
            vec![],
        ),
    ];
    for (op, p) in &ops {
        let (m, n) = op.shape();
        let x: Vec<f64> = (0..n).map(|_| rng.random::<f64>() - 0.5).collect();
        let y: Vec<f64> = (0..m).map(|_| rng.random::<f64>() - 0.5).collect();
        let mut kx = vec![0.0; m];
        op.apply(p, &x, &mut kx);
        let mut kty = vec![0.0; n];
        op.adjoint_add(p, &y, 1.0, &mut kty);
        let (a, b): (f64, f64) = (
            kx.iter().zip(&y).map(|(u, v)| u * v).sum(),
            x.iter().zip(&kty).map(|(u, v)| u * v).sum(),
        );
        assert!(
            (a - b).abs() <= 1e-12 * a.abs().max(b.abs()),
            "{}: {a} vs {b}",
            op.name()
        );
        // ‖K‖ by 300 power iterations on KᵀK.
        let mut v = x.clone();
        let mut norm = 0.0;
        for _ in 0..300 {
            let mut kv = vec![0.0; m];
            op.apply(p, &v, &mut kv);
            let mut ktkv = vec![0.0; n];
            op.adjoint_add(p, &kv, 1.0, &mut ktkv);
            let s: f64 = ktkv.iter().map(|t| t * t).sum::<f64>().sqrt();
            norm = s.sqrt();
            v = ktkv.iter().map(|t| t / s).collect();
        }
        let bound = op.norm(p).value;
        assert!(
            bound >= norm * (1.0 - 1e-9),
            "{}: ‖K‖ {norm} > bound {bound}",
            op.name()
        );
        // The largest row norm (one output entry) under the scalar row-group bound.
        let rows = (0..m).map(|i| {
            let mut e = vec![0.0; m];
            e[i] = 1.0;
            let mut r = vec![0.0; n];
            op.adjoint_add(p, &e, 1.0, &mut r);
            r.iter().map(|t| t * t).sum::<f64>().sqrt()
        });
        let kappa = rows.fold(0.0, f64::max);
        let stated = op.group_norm(p, Grouping::Scalar).value;
        assert!(
            stated >= kappa * (1.0 - 1e-12),
            "{}: κ {kappa} > {stated}",
            op.name()
        );
        // Pairs (i, i + m/2): the spectral norm of each two-row block.
        if m % 2 == 0 {
            let row = |i: usize| {
                let mut e = vec![0.0; m];
                e[i] = 1.0;
                let mut r = vec![0.0; n];
                op.adjoint_add(p, &e, 1.0, &mut r);
                r
            };
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
            let pairs = (0..m / 2).map(|i| {
                let (a, b) = (row(i), row(i + m / 2));
                let (aa, ab, bb) = (dot(&a, &a), dot(&a, &b), dot(&b, &b));
                (0.5 * (aa + bb) + (0.25 * (aa - bb) * (aa - bb) + ab * ab).sqrt()).sqrt()
            });
            let kappa2 = pairs.fold(0.0, f64::max);
            let stated = op.group_norm(p, Grouping::Pairs).value;
            assert!(
                stated >= kappa2 * (1.0 - 1e-12),
                "{}: pairs {kappa2} > {stated}",
                op.name()
            );
        }
        // ∇_p⟨K(p)x, y⟩ against central differences.
        if !p.is_empty() {
            let mut g = vec![0.0; p.len()];
            op.param_vjp_add(p, &x, &y, 1.0, &mut g);
            for k in 0..p.len() {
                let f = |d: f64| {
                    let mut q = p.clone();
                    q[k] += d;
                    let mut u = vec![0.0; m];
                    op.apply(&q, &x, &mut u);
                    u.iter().zip(&y).map(|(s, t)| s * t).sum::<f64>()
                };
                let fd = (f(1e-6) - f(-1e-6)) / 2e-6;
                assert!(
                    (g[k] - fd).abs() <= 1e-8 * fd.abs().max(1.0),
                    "{}: tap {k}",
                    op.name()
                );
            }
        }
    }
}
