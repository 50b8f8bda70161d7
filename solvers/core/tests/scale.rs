//! Scale robustness: data scaled by `s ∈ [10⁻⁶, 10⁶]` (with the weights that scale with it) gives
//! the scaled answer, because the stopping tests are relative to the data's scale: the TV
//! denoiser's relative gap `G ≤ tol·(P − G)`, and the sparse solvers' `--relative` gap
//! `G ≤ tol·P(0)`.

use hyperprox_core::experiments::{denoise_tv, solve_penalized, SolveSettings, SparseSolver};
use hyperprox_core::prelude::*;
use hyperprox_core::testing::random_point;
use ndarray::{Array1, Array2};
use proptest::prelude::*;

fn design(seed: u64) -> (Array2<f64>, Array1<f64>) {
    let a = DenseMatrix::<f64>::gaussian(25, 40, seed)
        .unwrap()
        .matrix()
        .to_owned();
    let x: Array1<f64> = (0..40)
        .map(|j| if j % 7 == 0 { 1.0 } else { 0.0 })
        .collect();
    let b = a.dot(&x) + random_point::<f64>(25, 0.1, seed + 1);
    (a, b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Lasso and group Lasso (objectives homogeneous of degree 2: `P_s(s·x) = s²·P(x)` for
    /// `b → s·b`, `λ → s·λ`): the scaled problem's answer, divided by `s`, is a certified
    /// solution of the original one at the same relative tolerance: the scaled certificate is
    /// `G_s/s² ≤ tol·P(0)` and the answer is that close to `P*`, whatever `s`.
    #[test]
    fn sparse_solutions_scale_with_the_data(
        seed in 0u64..1000,
        exponent in -6.0f64..6.0,
        solver in prop::sample::select(vec![SparseSolver::Cd, SparseSolver::Fista, SparseSolver::Admm]),
        group in any::<bool>(),
    ) {
        let s = 10f64.powf(exponent);
        let (a, b) = design(seed);
        let pen = if group {
            LassoPenalty::Group { groups: Groups::contiguous(&[5; 8]).unwrap(), weights: None }
        } else {
            LassoPenalty::L1 { weights: None }
        };
        let tol = 1e-10;
        let lam = 0.2 * LassoProblem::lambda_max(a.view(), b.view(), &pen).unwrap();
        let settings = SolveSettings { solver, tol, relative: true, ..Default::default() };
        let prob = LassoProblem::new(a.clone(), b.clone(), lam, pen.clone()).unwrap();
        let p0 = prob.objective(Array1::zeros(40).view()).unwrap();
        let prob_s = LassoProblem::new(a, &b * s, lam * s, pen).unwrap();
        let (xs, rs) = solve_penalized(&prob_s, "lasso", &settings).unwrap();
        prop_assert!(rs.converged && rs.nnz > 0, "{rs:?}");
        // Up to rounding: a gap is a difference of two values of size P(0), each computed to
        // a few hundred ulps.
        let rounding = 1e-13 * p0;
        // The scaled certificate, and what it certifies on the original problem: the answer
        // divided by s is within tol·P(0) of P* (from plain screened epochs to 1e-15·P(0)).
        prop_assert!(rs.gap / (s * s) <= tol * p0 + rounding, "s = {s:e}: gap {:e}", rs.gap / (s * s));
        let obj = prob.objective((&xs / s).view()).unwrap();
        prop_assert!((obj - rs.objective / (s * s)).abs() <= rounding, "{obj:e} vs {:e}", rs.objective / (s * s));
        let params = CoordinateDescentParams::default().with_tol(1e-15 * p0).with_working_sets(false);
        let p_star = CoordinateDescent::new(&prob, params).unwrap()
            .run(Array1::zeros(40).view(), NoObserver).unwrap().objective;
        prop_assert!(obj - p_star <= tol * p0 + rounding, "s = {s:e}: P − P* = {:e}", obj - p_star);
        // The gap at the rescaled residual (a worse dual point) is still small.
        let gap = prob.duality_gap((&xs / s).view()).unwrap();
        prop_assert!(gap >= rs.gap / (s * s) - rounding);
    }

    /// ROF: `y → s·y`, `λ → s·λ` gives `s·x`; each answer is within `√(2G)` of the exact one
    /// (the primal is 1-strongly convex).
    #[test]
    fn tv_denoising_scales_with_the_image(seed in 0u64..1000, exponent in -6.0f64..6.0) {
        let s = 10f64.powf(exponent);
        let y = random_point::<f64>(14 * 11, 1.0, seed).into_shape_with_order((14, 11)).unwrap();
        for kind in [TvKind::Isotropic, TvKind::Anisotropic] {
            let (x, r) = denoise_tv(y.view(), 0.3, kind, 1e-10, 100_000).unwrap();
            let ys = &y * s;
            let (xs, rs) = denoise_tv(ys.view(), 0.3 * s, kind, 1e-10, 100_000).unwrap();
            let bound = (2.0 * r.gap).sqrt() + (2.0 * rs.gap).sqrt() / s;
            let dist = (&xs / s - &x).mapv(|v| v * v).sum().sqrt();
            prop_assert!(dist <= bound * (1.0 + 1e-9) + 1e-13,
                "s = {s:e} {kind:?}: {dist:e} > {bound:e}");
            // Both stop on the same relative criterion.
            prop_assert!(rs.relative_gap <= 1e-10 && r.relative_gap <= 1e-10);
        }
    }
}

#[test]
fn an_absolute_gap_tolerance_depends_on_the_scale_and_a_relative_one_does_not() {
    // With b scaled by 10⁻⁶ the absolute tolerance 10⁻⁸ is met by x = 0 at once (P(0) ≈ 10⁻¹²):
    // the reason for `relative`.
    let (a, b) = design(3);
    let pen = LassoPenalty::L1 { weights: None };
    let s = 1e-6;
    let lam = 0.2 * LassoProblem::lambda_max(a.view(), (&b * s).view(), &pen).unwrap();
    let prob = LassoProblem::new(a, &b * s, lam, pen).unwrap();
    let abs = SolveSettings::default();
    let (x_abs, r_abs) = solve_penalized(&prob, "lasso", &abs).unwrap();
    assert!(
        r_abs.converged && x_abs.iter().all(|&v| v == 0.0),
        "{r_abs:?}"
    );
    let rel = SolveSettings {
        relative: true,
        ..abs
    };
    let (x_rel, r_rel) = solve_penalized(&prob, "lasso", &rel).unwrap();
    assert!(r_rel.converged && r_rel.nnz > 0, "{r_rel:?}");
    assert!(r_rel.gap <= 1e-8 * 0.5 * prob.b().dot(&prob.b()) / 25.0);
    assert!(x_rel.iter().any(|&v| v != 0.0));
    // Invalid tolerances and caps are refused.
    for (tol, it) in [
        (0.0, 10),
        (-1.0, 10),
        (f64::NAN, 10),
        (f64::INFINITY, 10),
        (1e-8, 0),
    ] {
        let bad = SolveSettings {
            tol,
            max_iters: it,
            ..rel
        };
        assert!(
            solve_penalized(&prob, "lasso", &bad).is_err(),
            "tol {tol}, {it} iterations"
        );
    }
}
