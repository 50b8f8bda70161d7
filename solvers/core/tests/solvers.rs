//! Classical solvers against known solutions and their published guarantees.

use hyperprox_core::prelude::*;
use hyperprox_core::testing::random_point;
use ndarray::{Array1, Array2, ArrayView1, ShapeBuilder};

/// `A = √n·Q` with orthonormal columns, so `AᵀA/n = I` and the Lasso solution is
/// `x* = S(Aᵀb/n, λw)` in closed form.
fn orthogonal_design(n: usize, p: usize, seed: u64) -> Array2<f64> {
    let g = DenseMatrix::<f64>::gaussian(n, p, seed)
        .unwrap()
        .matrix()
        .to_owned();
    let (u, _, v) = f64::thin_svd(g.view()).unwrap();
    u.dot(&v.t()) * (n as f64).sqrt()
}

fn lasso_instance() -> (LassoProblem<f64>, Array1<f64>) {
    let (n, p) = (40, 12);
    let a = orthogonal_design(n, p, 1);
    let xtrue = Array1::from_shape_fn(p, |j| {
        if j % 3 == 0 {
            1.0 + j as f64 * 0.1
        } else {
            0.0
        }
    });
    let b = a.dot(&xtrue) + random_point::<f64>(n, 0.1, 2);
    let lambda = 0.15;
    let z = a.t().dot(&b) / n as f64;
    let xstar = z.mapv(|v| soft_threshold(v, lambda));
    (
        LassoProblem::new(a, b, lambda, LassoPenalty::L1 { weights: None }).unwrap(),
        xstar,
    )
}

fn max_abs(a: ArrayView1<'_, f64>) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

#[test]
fn coordinate_descent_reaches_the_closed_form_lasso_solution() {
    let (prob, xstar) = lasso_instance();
    let cd =
        CoordinateDescent::new(&prob, CoordinateDescentParams::default().with_tol(1e-12)).unwrap();
    let mut gaps = Vec::new();
    let sol = cd
        .run(Array1::zeros(12).view(), |i: &IterInfo<f64>| {
            gaps.push(i.certificate);
            true
        })
        .unwrap();
    assert_eq!(sol.reason, TerminationReason::Converged);
    assert!(sol.certificate <= 1e-12 && sol.certificate >= 0.0);
    assert!(
        max_abs((&sol.x - &xstar).view()) < 1e-6,
        "{:?} vs {:?}",
        sol.x,
        xstar
    );
    assert!(gaps.iter().all(|&g| g >= 0.0));
    // The gap certifies the objective error.
    let fstar = prob.objective(xstar.view()).unwrap();
    assert!(sol.objective - fstar <= sol.certificate + 1e-14);
}

#[test]
fn fista_and_ista_reach_the_closed_form_lasso_solution_with_gap_stopping() {
    let (prob, xstar) = lasso_instance();
    let f = prob.smooth_part().unwrap();
    let g = prob.penalty_function().unwrap();
    for params in [
        FistaParams::default(),
        FistaParams::ista(),
        FistaParams::default().with_restart(Restart::Gradient),
    ] {
        let fista = Fista::new(&f, &*g, params.with_tol(1e-11).with_max_iters(100_000))
            .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x.view()));
        let sol = fista.run(Array1::zeros(12).view(), NoObserver).unwrap();
        assert_eq!(sol.reason, TerminationReason::Converged);
        assert!(max_abs((&sol.x - &xstar).view()) < 1e-5);
    }
}

#[test]
fn fista_objective_gap_obeys_the_one_over_k_squared_bound() {
    // Beck & Teboulle (2009), Thm 4.4: F(x_k) − F* ≤ 2L‖x0 − x*‖²/(k+1)².
    let (prob, xstar) = lasso_instance();
    let f = prob.smooth_part().unwrap();
    let g = prob.penalty_function().unwrap();
    let fstar = prob.objective(xstar.view()).unwrap();
    let l = f.lipschitz().unwrap();
    let x0 = Array1::from_elem(12, 3.0);
    let r0 = (&x0 - &xstar).mapv(|v| v * v).sum();
    let fista = Fista::new(
        &f,
        &*g,
        FistaParams::default()
            .with_step(StepRule::Constant(1.0 / l))
            .with_tol(0.0)
            .with_max_iters(200),
    );
    let mut worst: f64 = 0.0;
    fista
        .run(x0.view(), |i: &IterInfo<f64>| {
            let bound = 2.0 * l * r0 / ((i.iter + 1) as f64).powi(2);
            worst = worst.max((i.objective - fstar) / bound);
            true
        })
        .unwrap();
    assert!(worst <= 1.0 + 1e-9, "gap/bound ratio {worst}");
}

#[test]
fn fista_without_momentum_equals_a_plain_ista_loop_iterate_by_iterate() {
    let (prob, _) = lasso_instance();
    let f = prob.smooth_part().unwrap();
    let g = prob.penalty_function().unwrap();
    let s = 1.0 / f.lipschitz().unwrap();
    let fista = Fista::new(
        &f,
        &*g,
        FistaParams::ista().with_step(StepRule::Constant(s)),
    );
    let mut state = fista.init(Array1::zeros(12).view()).unwrap();
    let mut x = Array1::<f64>::zeros(12);
    for _ in 0..50 {
        fista.step(&mut state).unwrap();
        let grad = f.gradient(x.view()).unwrap();
        x = g.prox((&x - &(grad * s)).view(), s).unwrap();
        assert!(max_abs((&state.x - &x).view()) < 1e-14);
    }
}

#[test]
fn backtracking_recovers_from_a_too_large_initial_step() {
    let (prob, xstar) = lasso_instance();
    let f = prob.smooth_part().unwrap();
    let g = prob.penalty_function().unwrap();
    let params = FistaParams::default()
        .with_step(StepRule::Backtracking {
            initial: 100.0,
            eta: 0.5,
        })
        .with_restart(Restart::FunctionValue)
        .with_tol(1e-10);
    let sol = Fista::new(&f, &*g, params)
        .run(Array1::zeros(12).view(), NoObserver)
        .unwrap();
    assert_eq!(sol.reason, TerminationReason::Converged);
    assert!(
        sol.state.step <= 1.0 / 1.0 + 1e-12,
        "accepted step {}",
        sol.state.step
    ); // L = 1 here
    assert!(max_abs((&sol.x - &xstar).view()) < 1e-6);
}

#[test]
fn box_constrained_least_squares() {
    // diag(A) = (1, 2, 4), b = (3, −3, 1): x* = clamp(b/a, [−1, 1]) = (1, −1, 0.25).
    let a = DenseMatrix::new(Array2::from_diag(&ndarray::array![1.0, 2.0, 4.0])).unwrap();
    let f = LeastSquares::new(a, ndarray::array![3.0, -3.0, 1.0]).unwrap();
    let g = IndBox::new(-1.0, 1.0).unwrap();
    let sol = Fista::new(&f, &g, FistaParams::default().with_tol(1e-12))
        .run(Array1::zeros(3).view(), NoObserver)
        .unwrap();
    assert!(max_abs((&sol.x - &ndarray::array![1.0, -1.0, 0.25]).view()) < 1e-10);
}

#[test]
fn strongly_convex_variant_and_distance_bound() {
    let a = DenseMatrix::<f64>::gaussian(30, 8, 4).unwrap();
    let (_, s, _) = f64::thin_svd(a.matrix()).unwrap();
    let mu = s[s.len() - 1].powi(2);
    let f = LeastSquares::new(a, random_point::<f64>(30, 1.0, 5)).unwrap();
    let g = NormL1::new(0.05).unwrap();
    let strong = Fista::new(
        &f,
        &g,
        FistaParams::default()
            .with_strong_convexity(mu)
            .with_tol(1e-10),
    );
    let sol = strong.run(Array1::zeros(8).view(), NoObserver).unwrap();
    assert_eq!(sol.kind, CertificateKind::DistanceBound);
    let reference = Fista::new(
        &f,
        &g,
        FistaParams::default()
            .with_tol(1e-13)
            .with_max_iters(100_000),
    )
    .run(Array1::zeros(8).view(), NoObserver)
    .unwrap();
    // ‖x − x*‖ ≤ 2‖G(x)‖/μ.
    assert!(max_abs((&sol.x - &reference.x).view()) <= 2.0 * sol.certificate + 1e-12);
}

#[test]
fn elastic_net_and_group_lasso_cd_agree_with_fista() {
    let (n, p) = (30, 10);
    let a = DenseMatrix::<f64>::gaussian(n, p, 7)
        .unwrap()
        .matrix()
        .to_owned();
    let b = random_point::<f64>(n, 1.0, 8);
    let groups = Groups::contiguous(&[3, 2, 4, 1]).unwrap();
    for pen in [
        LassoPenalty::ElasticNet { alpha: 0.7 },
        LassoPenalty::L1 {
            weights: Some(Array1::from_shape_fn(p, |j| 0.5 + 0.1 * j as f64)),
        },
        LassoPenalty::Group {
            groups: groups.clone(),
            weights: None,
        },
    ] {
        let lmax = LassoProblem::lambda_max(a.view(), b.view(), &pen).unwrap();
        let prob = LassoProblem::new(a.clone(), b.clone(), 0.2 * lmax, pen).unwrap();
        let cd = CoordinateDescent::new(&prob, CoordinateDescentParams::default().with_tol(1e-12))
            .unwrap();
        let s1 = cd.run(Array1::zeros(p).view(), NoObserver).unwrap();
        assert_eq!(s1.reason, TerminationReason::Converged);
        let f = prob.smooth_part().unwrap();
        let g = prob.penalty_function().unwrap();
        let s2 = Fista::new(
            &f,
            &*g,
            FistaParams::default()
                .with_tol(1e-12)
                .with_max_iters(200_000),
        )
        .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x.view()))
        .run(Array1::zeros(p).view(), NoObserver)
        .unwrap();
        assert_eq!(s2.reason, TerminationReason::Converged);
        assert!(
            (s1.objective - s2.objective).abs() < 1e-11,
            "{} vs {}",
            s1.objective,
            s2.objective
        );
        // Nothing screened is nonzero in the reference solution.
        let n_active = s1.state.active.len();
        assert!(n_active >= 1);
    }
}

#[test]
fn lambda_max_gives_the_zero_solution() {
    let a = DenseMatrix::<f64>::gaussian(20, 15, 9)
        .unwrap()
        .matrix()
        .to_owned();
    let b = random_point::<f64>(20, 1.0, 10);
    let pen = LassoPenalty::L1 { weights: None };
    let lmax = LassoProblem::lambda_max(a.view(), b.view(), &pen).unwrap();
    let prob = LassoProblem::new(a.clone(), b.clone(), lmax * 1.0001, pen.clone()).unwrap();
    let sol = CoordinateDescent::new(&prob, Default::default())
        .unwrap()
        .run(Array1::zeros(15).view(), NoObserver)
        .unwrap();
    assert!(sol.x.iter().all(|&v| v == 0.0));
    let prob = LassoProblem::new(a, b, lmax * 0.9, pen).unwrap();
    let sol = CoordinateDescent::new(&prob, Default::default())
        .unwrap()
        .run(Array1::zeros(15).view(), NoObserver)
        .unwrap();
    assert!(sol.x.iter().any(|&v| v != 0.0));
}

#[test]
fn screening_never_removes_a_nonzero_of_the_solution() {
    let a = DenseMatrix::<f64>::gaussian(50, 200, 11)
        .unwrap()
        .normalize_columns()
        .matrix()
        .to_owned();
    let b = random_point::<f64>(50, 1.0, 12);
    let pen = LassoPenalty::L1 { weights: None };
    let lmax = LassoProblem::lambda_max(a.view(), b.view(), &pen).unwrap();
    let prob = LassoProblem::new(a, b, 0.3 * lmax, pen).unwrap();
    let with = CoordinateDescent::new(&prob, CoordinateDescentParams::default().with_tol(1e-12))
        .unwrap()
        .run(Array1::zeros(200).view(), NoObserver)
        .unwrap();
    let without = CoordinateDescent::new(
        &prob,
        CoordinateDescentParams::default()
            .with_tol(1e-12)
            .with_screening(false),
    )
    .unwrap()
    .run(Array1::zeros(200).view(), NoObserver)
    .unwrap();
    assert!(with.state.active.len() < 200, "screening removed nothing");
    for j in 0..200 {
        if !with.state.active.contains(&j) {
            assert!(
                without.x[j].abs() < 1e-10,
                "screened feature {j} is nonzero: {}",
                without.x[j]
            );
        }
    }
    assert!((with.objective - without.objective).abs() < 1e-11);
}

#[test]
fn divergence_and_bad_input_are_errors() {
    let (prob, _) = lasso_instance();
    let f = prob.smooth_part().unwrap();
    let g = NormL1::new(1e-3).unwrap();
    let r = Fista::new(
        &f,
        &g,
        FistaParams::ista()
            .with_step(StepRule::Constant(5.0))
            .with_max_iters(100_000),
    )
    .run(Array1::ones(12).view(), NoObserver);
    assert!(matches!(r, Err(Error::Diverged { .. })), "{r:?}");
    assert!(Fista::new(&f, &g, FistaParams::default())
        .run(Array1::zeros(11).view(), NoObserver)
        .is_err());
    assert!(CoordinateDescent::new(&prob, Default::default())
        .unwrap()
        .run(Array1::zeros(3).view(), NoObserver)
        .is_err());
    let a = Array2::<f64>::zeros((3, 2));
    assert!(LassoProblem::new(
        a.clone(),
        Array1::zeros(4),
        0.1,
        LassoPenalty::L1 { weights: None }
    )
    .is_err());
    assert!(LassoProblem::new(
        a.clone(),
        ndarray::array![1.0, f64::NAN, 0.0],
        0.1,
        LassoPenalty::L1 { weights: None }
    )
    .is_err());
    assert!(LassoProblem::new(
        a,
        Array1::zeros(3),
        -0.1,
        LassoPenalty::L1 { weights: None }
    )
    .is_err());
}

/// `½‖Ax − b‖² + λ‖x‖₁` solved by CD on the 1/n-scaled problem (λ/n), as a reference.
fn lasso_reference(a: &Array2<f64>, b: &Array1<f64>, lambda: f64) -> Array1<f64> {
    let n = a.nrows() as f64;
    let prob = LassoProblem::new(
        a.clone(),
        b.clone(),
        lambda / n,
        LassoPenalty::L1 { weights: None },
    )
    .unwrap();
    // Plain epochs to a gap of 1e-15, then the reference is checked on its own: the KKT
    // violation max_j dist(aⱼᵀr/n, (λ/n)·∂|xⱼ|) is at rounding level, so with P μ-strongly
    // convex, ‖x − x*‖ ≤ √p·violation/μ is far below the tests' 1e-8.
    let params = CoordinateDescentParams::default()
        .with_tol(1e-15)
        .with_working_sets(false);
    let x = CoordinateDescent::new(&prob, params)
        .unwrap()
        .run(Array1::zeros(a.ncols()).view(), NoObserver)
        .unwrap()
        .x;
    let c = a.t().dot(&(b - &a.dot(&x))) / n;
    let l = lambda / n;
    let viol = x.iter().zip(&c).fold(0.0f64, |m, (&xj, &cj)| {
        m.max(if xj == 0.0 {
            (cj.abs() - l).max(0.0)
        } else {
            (cj - l * xj.signum()).abs()
        })
    });
    assert!(viol < 1e-13, "reference KKT violation {viol:e}");
    x
}

#[test]
fn admm_matches_coordinate_descent_with_every_linear_solver() {
    for (n, p) in [(30, 10), (10, 30)] {
        let a = DenseMatrix::<f64>::gaussian(n, p, 21).unwrap();
        let b = random_point::<f64>(n, 1.0, 22);
        let lambda = 0.2;
        let xref = lasso_reference(&a.matrix().to_owned(), &b, lambda);
        let g = NormL1::new(lambda).unwrap();
        let params = AdmmParams::default().with_rho(1.0).with_tol(1e-11);
        let dense = Admm::dense(&a, b.clone(), &g, params)
            .unwrap()
            .run(Array1::zeros(p).view(), NoObserver)
            .unwrap();
        assert_eq!(dense.reason, TerminationReason::Converged);
        assert!(max_abs((&dense.x - &xref).view()) < 1e-8, "dense {n}x{p}");
        let cg = Admm::new(&a, b.clone(), &g, params)
            .unwrap()
            .run(Array1::zeros(p).view(), NoObserver)
            .unwrap();
        assert!(max_abs((&cg.x - &xref).view()) < 1e-8, "cg {n}x{p}");
    }
}

#[test]
fn douglas_rachford_matches_coordinate_descent() {
    let a = DenseMatrix::<f64>::gaussian(25, 12, 23).unwrap();
    let b = random_point::<f64>(25, 1.0, 24);
    let xref = lasso_reference(&a.matrix().to_owned(), &b, 0.3);
    let f = LeastSquares::new(a, b).unwrap();
    let g = NormL1::new(0.3).unwrap();
    let sol = DouglasRachford::new(&f, &g, AdmmParams::default().with_rho(0.5).with_tol(1e-11))
        .unwrap()
        .run(Array1::zeros(12).view(), NoObserver)
        .unwrap();
    assert_eq!(sol.reason, TerminationReason::Converged);
    let e = max_abs((&sol.x - &xref).view());
    assert!(
        e < 1e-8,
        "error {e}, iterations {}, residual {}",
        sol.iterations,
        sol.certificate
    );
}

#[test]
fn pdhg_reaches_the_solution_with_a_nonnegative_primal_dual_gap() {
    // min_x EN(x) + ½‖Ax − b‖²: f = elastic net (strongly convex, modulus λ(1−α)),
    // g = ½‖· − b‖², K = A. Both conjugates are finite, so the certificate is the gap.
    let a = DenseMatrix::<f64>::gaussian(20, 10, 25).unwrap();
    let b = random_point::<f64>(20, 1.0, 26);
    let f = ElasticNet::new(0.3, 0.5).unwrap();
    let g = Translate::new(SqrNormL2::new(1.0).unwrap(), b.clone()).unwrap();
    let fs = LeastSquares::new(a.clone(), b.clone()).unwrap();
    let reference = Fista::new(
        &fs,
        &f,
        FistaParams::default()
            .with_tol(1e-14)
            .with_max_iters(100_000),
    )
    .run(Array1::zeros(10).view(), NoObserver)
    .unwrap();
    for params in [
        PdhgParams::default(),
        PdhgParams::default().with_strong_convexity(0.15),
    ] {
        let mut gaps = Vec::new();
        let sol = Pdhg::new(&f, &g, &a, params.with_tol(1e-10))
            .run(Array1::zeros(10).view(), |i: &IterInfo<f64>| {
                gaps.push(i.certificate);
                true
            })
            .unwrap();
        assert_eq!(sol.kind, CertificateKind::DualityGap);
        assert_eq!(sol.reason, TerminationReason::Converged);
        assert!(gaps.iter().all(|&g| g >= 0.0));
        assert!(sol.objective - reference.objective <= 1e-10 + 1e-12);
        assert!(max_abs((&sol.x - &reference.x).view()) < 1e-4);
    }
    // The step condition is checked.
    assert!(
        Pdhg::new(&f, &g, &a, PdhgParams::default().with_steps(1.0, 1.0))
            .run(Array1::zeros(10).view(), NoObserver)
            .is_err()
    );
}

#[test]
fn pdhg_tv_deblurring_with_box_constraint_is_certified() {
    // min_{x ∈ [0,1]ⁿ} ½‖Cx − b‖² + λ·TV(x), K = [C; ∇], g(u, v) = ½‖u − b‖² + λ‖v‖₂,₁.
    let (h, w) = (12, 10);
    let n = h * w;
    let truth = Array1::from_shape_fn(n, |i| if (i / w) < 6 && (i % w) < 5 { 0.9 } else { 0.1 });
    let blur = Conv2d::new(
        h,
        w,
        Conv2d::<f64>::gaussian_kernel(3, 0.8).unwrap(),
        Boundary::Reflect,
        ConvMethod::Auto,
    )
    .unwrap();
    let b = &blur.apply(truth.view()).unwrap() + &random_point::<f64>(n, 0.02, 3);
    let k = Stack::new(&blur, Gradient2d::new(h, w).unwrap()).unwrap();
    let pairs: Vec<Vec<usize>> = (0..n).map(|p| vec![p, n + p]).collect();
    let g = SeparableSum::new(vec![
        (
            n,
            Box::new(Translate::new(SqrNormL2::new(1.0).unwrap(), b.clone()).unwrap())
                as Box<dyn Prox<f64>>,
        ),
        (
            2 * n,
            Box::new(NormL21::new(Groups::new(2 * n, pairs).unwrap(), 0.02).unwrap()),
        ),
    ])
    .unwrap();
    let f = IndBox::new(0.0, 1.0).unwrap();
    let sol = Pdhg::new(
        &f,
        &g,
        &k,
        PdhgParams::default().with_tol(1e-7).with_max_iters(200_000),
    )
    .run(Array1::zeros(n).view(), NoObserver)
    .unwrap();
    assert_eq!(sol.kind, CertificateKind::DualityGap);
    assert_eq!(sol.reason, TerminationReason::Converged);
    let err = |x: &Array1<f64>| (x - &truth).mapv(|v| v * v).sum().sqrt();
    assert!(
        err(&sol.x) < err(&b),
        "deblurring must beat the blurred data"
    );
    assert!(sol.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
}
#[test]
fn cd_reports_the_objective_and_gap_of_the_point_it_returns() {
    // Regression: with a gap at rounding level, screening once dropped active features whose
    // dual constraint |aⱼᵀθ| = λ held only up to rounding, and returned a stale objective.
    let a = DenseMatrix::<f64>::gaussian(25, 12, 23)
        .unwrap()
        .matrix()
        .to_owned();
    let b = random_point::<f64>(25, 1.0, 24);
    let prob = LassoProblem::new(a, b, 0.3 / 25.0, LassoPenalty::L1 { weights: None }).unwrap();
    for tol in [1e-15, 1e-10, 1e-6] {
        let sol = CoordinateDescent::new(&prob, CoordinateDescentParams::default().with_tol(tol))
            .unwrap()
            .run(Array1::zeros(12).view(), NoObserver)
            .unwrap();
        let obj = prob.objective(sol.x.view()).unwrap();
        assert!(
            (obj - sol.objective).abs() <= 1e-15 * (1.0 + obj),
            "{obj} vs {}",
            sol.objective
        );
        // The certificate: at most the gap at the rescaled residual (working sets keep a
        // better dual point), and it bounds P(x) − P*.
        assert!(sol.certificate <= prob.duality_gap(sol.x.view()).unwrap() + 1e-14);
        assert!(sol.certificate <= tol);
        let plain = CoordinateDescentParams::default()
            .with_tol(1e-15)
            .with_working_sets(false);
        let p_star = CoordinateDescent::new(&prob, plain)
            .unwrap()
            .run(Array1::zeros(12).view(), NoObserver)
            .unwrap()
            .objective;
        assert!(obj - p_star <= sol.certificate + 1e-15);
    }
}

#[test]
fn lbfgs_from_argmin_solves_smooth_problems_to_a_gradient_certificate() {
    // Strongly convex least squares: compare with the normal equations (Cholesky).
    let a = DenseMatrix::<f64>::gaussian(40, 10, 31).unwrap();
    let b = random_point::<f64>(40, 1.0, 32);
    let (_, s, _) = f64::thin_svd(a.matrix()).unwrap();
    let mu = s[9] * s[9];
    let ata = a.matrix().t().dot(&a.matrix());
    let l = f64::cholesky_lower(ata.view()).unwrap();
    let mut xs = a.matrix().t().dot(&b);
    hyperprox_core::linalg::cholesky_solve_in_place(l.view(), xs.view_mut());
    let f = LeastSquares::new(a.clone(), b).unwrap();
    let sol = Lbfgs::new(
        &f,
        LbfgsParams {
            tol: 1e-7,
            strong_convexity: Some(mu),
            ..Default::default()
        },
    )
    .run(Array1::zeros(10).view())
    .unwrap();
    assert_eq!(
        sol.reason,
        TerminationReason::Converged,
        "certificate {} after {} iterations (mu {mu})",
        sol.certificate,
        sol.iterations
    );
    assert_eq!(sol.kind, CertificateKind::DistanceBound);
    assert!(max_abs((&sol.x - &xs).view()) <= sol.certificate + 1e-12);
    // Logistic regression with overlapping classes: the gradient norm is certified.
    let y: Array1<f64> = (0..40)
        .map(|i| if (i * 7) % 5 < 2 { 1.0 } else { -1.0 })
        .collect();
    let lg = Logistic::new(a, y).unwrap();
    let sol = Lbfgs::new(
        &lg,
        LbfgsParams {
            tol: 1e-7,
            ..Default::default()
        },
    )
    .run(Array1::zeros(10).view())
    .unwrap();
    assert_eq!(sol.reason, TerminationReason::Converged);
    assert!(
        lg.gradient(sol.x.view())
            .unwrap()
            .dot(&lg.gradient(sol.x.view()).unwrap())
            .sqrt()
            <= 1e-7
    );
    // An unreachable tolerance is reported as stalled, with the certificate reached.
    let sol = Lbfgs::new(
        &f,
        LbfgsParams {
            tol: 1e-15,
            ..Default::default()
        },
    )
    .run(Array1::zeros(10).view())
    .unwrap();
    assert!(matches!(
        sol.reason,
        TerminationReason::Stalled | TerminationReason::Converged
    ));
    assert!(sol.certificate < 1e-6);
}

#[test]
fn logistic_l1_cd_matches_fista_and_certifies_with_the_gap() {
    let (n, p) = (60, 15);
    let a = DenseMatrix::<f64>::gaussian(n, p, 41)
        .unwrap()
        .matrix()
        .to_owned();
    let w = Array1::from_shape_fn(p, |j| if j < 4 { 2.0 } else { 0.0 });
    let noise = random_point::<f64>(n, 1.0, 42);
    let y: Array1<f64> = (0..n)
        .map(|i| {
            if a.row(i).dot(&w) + noise[i] > 0.0 {
                1.0
            } else {
                -1.0
            }
        })
        .collect();
    let lmax = LogisticL1Problem::lambda_max(a.view(), y.view());
    let lam = 0.1 * lmax;
    let prob = LogisticL1Problem::new(a.clone(), y.clone(), lam).unwrap();
    // Plain coordinate descent and working-set prox-Newton (the default).
    let solve = |ws: bool| {
        let mut gaps = Vec::new();
        let sol = LogisticCd::new(
            &prob,
            CoordinateDescentParams::default()
                .with_tol(1e-12)
                .with_working_sets(ws),
        )
        .unwrap()
        .run(Array1::zeros(p).view(), |i: &IterInfo<f64>| {
            gaps.push(i.certificate);
            true
        })
        .unwrap();
        assert_eq!(sol.reason, TerminationReason::Converged);
        assert!(gaps.iter().all(|&g| g >= 0.0));
        assert!((prob.objective(sol.x.view()).unwrap() - sol.objective).abs() < 1e-14);
        sol
    };
    let plain = solve(false);
    let sol = solve(true);
    assert!((plain.objective - sol.objective).abs() < 1e-11);
    // Reference: FISTA on Σ log(1 + e^{−y aᵀx}) + nλ‖x‖₁ (same minimizer, objective × n).
    let f = Logistic::new(DenseMatrix::new(a.clone()).unwrap(), y.clone()).unwrap();
    let g = NormL1::new(n as f64 * lam).unwrap();
    let r = Fista::new(
        &f,
        &g,
        FistaParams::default()
            .with_tol(1e-13)
            .with_max_iters(200_000),
    )
    .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x.view()))
    .run(Array1::zeros(p).view(), NoObserver)
    .unwrap();
    assert_eq!(r.reason, TerminationReason::Converged);
    assert!((prob.objective(r.x.view()).unwrap() - sol.objective).abs() < 1e-11);
    assert!(max_abs((&r.x - &sol.x).view()) < 1e-4);
    // λ ≥ λ_max gives 0.
    let prob0 = LogisticL1Problem::new(a, y, lmax * 1.001).unwrap();
    let s0 = LogisticCd::new(&prob0, Default::default())
        .unwrap()
        .run(Array1::zeros(p).view(), NoObserver)
        .unwrap();
    assert!(s0.x.iter().all(|&v| v == 0.0));
}

/// Working-set prox-Newton for ℓ1-logistic regression keeps its guarantees on a 100×800
/// problem: the same objective as plain coordinate descent to 1e-12 relative; every working set
/// holds the support of the iterate it starts from; every step it takes lowers the objective by
/// at least the decrease its line search proved, and a refused one (step 0) leaves it unchanged; the gaps it reports follow the definition
/// (the dual point `θ = c·y ⊙ σ(−y ⊙ Ax)/n` with `c = min(1, λ/‖Aᵀθ₁‖∞)` is feasible over all
/// features, written out here), its working sets stay far smaller than `p`, and gap-safe
/// screening keeps every feature of the solution found without screening.
#[test]
fn logistic_working_sets_keep_their_guarantees() {
    let (n, p) = (100, 800);
    let a = DenseMatrix::<f64>::gaussian(n, p, 71)
        .unwrap()
        .normalize_columns()
        .matrix()
        .to_owned();
    let w = Array1::from_shape_fn(p, |j| if j % 40 == 0 { 3.0 } else { 0.0 });
    let noise = random_point::<f64>(n, 0.1, 72);
    let y = (a.dot(&w) + noise).mapv(|v| if v > 0.0 { 1.0 } else { -1.0 });
    let lmax = LogisticL1Problem::lambda_max(a.view(), y.view());
    for ratio in [0.3, 0.05] {
        let lam = ratio * lmax;
        let prob = LogisticL1Problem::new(a.clone(), y.clone(), lam).unwrap();
        let run = |ws: bool| {
            LogisticCd::new(
                &prob,
                CoordinateDescentParams::default()
                    .with_tol(1e-10)
                    .with_max_epochs(1_000_000)
                    .with_working_sets(ws),
            )
            .unwrap()
            .run(Array1::zeros(p).view(), NoObserver)
            .unwrap()
        };
        let (with, without) = (run(true), run(false));
        assert_eq!(with.reason, TerminationReason::Converged);
        assert_eq!(without.reason, TerminationReason::Converged);
        assert!(
            (with.objective - without.objective).abs() <= 1e-12 * with.objective.abs() + 1e-10,
            "{} vs {}",
            with.objective,
            without.objective
        );
        // Screening (on in both) removed no feature of the solution found without it.
        let unscreened = LogisticCd::new(
            &prob,
            CoordinateDescentParams::default()
                .with_tol(1e-10)
                .with_screening(false),
        )
        .unwrap()
        .run(Array1::zeros(p).view(), NoObserver)
        .unwrap();
        assert!((unscreened.objective - with.objective).abs() <= 1e-10);
        assert!(with.state.active.len() < p, "screening removed features");
        for j in 0..p {
            if unscreened.x[j].abs() > 1e-6 {
                assert!(with.state.active.contains(&j), "feature {j} screened out");
            }
        }
        let trace = &with.state.trace;
        assert!(trace.len() >= 2);
        let mut steps = 0;
        for rec in &trace[..trace.len() - 1] {
            assert!(rec.working_set.len() < p / 2, "{}", rec.working_set.len());
            for j in &rec.support {
                assert!(
                    rec.working_set.binary_search(j).is_ok(),
                    "support {j} dropped"
                );
            }
            for st in &rec.steps {
                if st.step > 0.0 {
                    steps += 1;
                    // The decrease proved by the line search, up to the rounding of P.
                    assert!(st.decrease_bound > 0.0);
                    let slack = 1e-15 * st.objective_before;
                    assert!(
                        st.objective_after <= st.objective_before - st.decrease_bound + slack,
                        "{st:?}"
                    );
                } else {
                    assert_eq!(st.objective_after, st.objective_before);
                }
            }
        }
        assert!(steps >= 2);
        // The last gap from its definition at the returned point.
        let z = a.dot(&with.x);
        let sig = Array1::from_shape_fn(n, |i| 1.0 / (1.0 + (y[i] * z[i]).exp()));
        let theta1 = Array1::from_shape_fn(n, |i| y[i] * sig[i] / n as f64);
        let c = (lam
            / a.t()
                .dot(&theta1)
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs())))
        .min(1.0);
        let theta = &theta1 * c;
        assert!(a
            .t()
            .dot(&theta)
            .iter()
            .all(|v| v.abs() <= lam * (1.0 + 1e-12)));
        let h = |q: f64| if q > 0.0 { -q * q.ln() } else { 0.0 };
        let dual = (0..n)
            .map(|i| h(c * sig[i]) + h(1.0 - c * sig[i]))
            .sum::<f64>()
            / n as f64;
        let primal = prob.objective(with.x.view()).unwrap();
        let gap = (primal - dual).max(0.0);
        assert!(
            (gap - with.certificate).abs() <= 1e-12,
            "{gap} vs {}",
            with.certificate
        );
        assert!(with.certificate <= 1e-10);
    }
}

#[test]
fn rof_on_a_piecewise_constant_image_matches_the_analytic_solution() {
    // Columns 0..4 at 0.2, columns 4..10 at 0.8, constant down each column. Each row is a 1-D
    // TV problem whose solution moves the plateaus towards each other by λ/4 and λ/6 (as long
    // as they do not meet); with no vertical variation isotropic and anisotropic TV agree.
    let (h, w, lam) = (6usize, 10usize, 0.3);
    let y = Array1::from_shape_fn(h * w, |k| if k % w < 4 { 0.2 } else { 0.8 });
    let expect = Array1::from_shape_fn(h * w, |k| {
        if k % w < 4 {
            0.2 + lam / 4.0
        } else {
            0.8 - lam / 6.0
        }
    });
    for kind in [TvKind::Isotropic, TvKind::Anisotropic] {
        let tv = TotalVariation::new(h, w, lam, kind).unwrap();
        let sol = tv.solve_rof(y.view(), 1e-12).unwrap();
        assert!(
            max_abs((&sol.x - &expect).view()) < 1e-5,
            "{kind:?}: {:?}",
            sol.x
        );
        // The certificate holds: objective error below the gap.
        let obj =
            |x: &Array1<f64>| 0.5 * (x - &y).mapv(|v| v * v).sum() + tv.value(x.view()).unwrap();
        assert!(obj(&sol.x) - obj(&expect) <= sol.gap + 1e-14);
        assert!(obj(&sol.x) >= obj(&expect) - 1e-14);
    }
}

#[test]
fn working_sets_reach_the_same_certified_solution() {
    let a = DenseMatrix::<f64>::gaussian(60, 600, 51)
        .unwrap()
        .normalize_columns()
        .matrix()
        .to_owned();
    let b = random_point::<f64>(60, 1.0, 52);
    for pen in [
        LassoPenalty::L1 { weights: None },
        LassoPenalty::L1 {
            weights: Some(Array1::from_shape_fn(600, |j| 0.5 + (j % 7) as f64 * 0.2)),
        },
        LassoPenalty::ElasticNet { alpha: 0.8 },
    ] {
        let lmax = LassoProblem::lambda_max(a.view(), b.view(), &pen).unwrap();
        let prob = LassoProblem::new(a.clone(), b.clone(), 0.05 * lmax, pen).unwrap();
        let run = |ws: bool| {
            CoordinateDescent::new(
                &prob,
                CoordinateDescentParams::default()
                    .with_tol(1e-11)
                    .with_working_sets(ws),
            )
            .unwrap()
            .run(Array1::zeros(600).view(), NoObserver)
            .unwrap()
        };
        let (with, without) = (run(true), run(false));
        assert_eq!(with.reason, TerminationReason::Converged);
        assert_eq!(without.reason, TerminationReason::Converged);
        assert!(with.certificate <= 1e-11);
        assert!((prob.objective(with.x.view()).unwrap() - with.objective).abs() < 1e-15);
        assert!(
            (with.objective - without.objective).abs() <= 2e-11,
            "{} vs {}",
            with.objective,
            without.objective
        );
    }
}

/// Working-set block coordinate descent for the group lasso keeps its guarantees (weighted
/// and default weights, groups of unequal sizes): the same objective as plain block
/// coordinate descent to 1e-12 relative; every working set holds the groups of the support;
/// every Anderson step taken lowered the objective and every refused one did not; the final
/// dual point `θ` (from the trace) is feasible, `‖A_gᵀθ‖ ≤ λw_g` for every group not
/// screened (computed here), and `P(x) − (θᵀb − (n/2)‖θ‖²)` is the reported gap.
#[test]
fn group_lasso_working_sets_keep_their_guarantees() {
    let (n, p) = (80, 600);
    let a = DenseMatrix::<f64>::gaussian(n, p, 81)
        .unwrap()
        .normalize_columns()
        .matrix()
        .to_owned();
    let sizes: Vec<usize> = (0..150)
        .map(|g| 2 + g % 5)
        .take_while({
            let mut total = 0;
            move |s| {
                total += s;
                total <= p
            }
        })
        .collect();
    let used: usize = sizes.iter().sum();
    let mut sizes = sizes;
    if used < p {
        sizes.push(p - used);
    }
    let groups = Groups::contiguous(&sizes).unwrap();
    let xtrue = Array1::from_shape_fn(p, |j| if j % 37 < 3 { 1.0 } else { 0.0 });
    let b = a.dot(&xtrue) + random_point::<f64>(n, 0.05, 82);
    let m = groups.len();
    for weights in [
        None,
        Some(Array1::from_shape_fn(m, |g| 0.7 + (g % 4) as f64 * 0.3)),
    ] {
        let pen = LassoPenalty::Group {
            groups: groups.clone(),
            weights,
        };
        let lmax = LassoProblem::lambda_max(a.view(), b.view(), &pen).unwrap();
        let prob = LassoProblem::new(a.clone(), b.clone(), 0.1 * lmax, pen).unwrap();
        let run = |ws: bool| {
            CoordinateDescent::new(
                &prob,
                CoordinateDescentParams::default()
                    .with_tol(1e-11)
                    .with_working_sets(ws),
            )
            .unwrap()
            .run(Array1::zeros(p).view(), NoObserver)
            .unwrap()
        };
        let (with, without) = (run(true), run(false));
        assert_eq!(with.reason, TerminationReason::Converged);
        assert_eq!(without.reason, TerminationReason::Converged);
        assert!(
            (with.objective - without.objective).abs() <= 1e-12 * with.objective,
            "{} vs {}",
            with.objective,
            without.objective
        );
        let lists: Vec<&[usize]> = groups.iter().collect();
        let tr = &with.state.trace;
        assert!(tr.outer.len() >= 2);
        for rec in &tr.outer[..tr.outer.len() - 1] {
            assert!(
                rec.working_set.len() < m,
                "a working set smaller than all groups"
            );
            for g in &rec.support {
                assert!(
                    rec.working_set.binary_search(g).is_ok(),
                    "group {g} dropped"
                );
            }
        }
        for st in &tr.anderson {
            assert_eq!(st.accepted, st.candidate < st.before, "{st:?}");
        }
        eprintln!(
            "group ws: {} outer, {} epochs ({} plain), Anderson {}/{} taken, sources {:?}",
            tr.outer.len(),
            with.iterations,
            without.iterations,
            tr.anderson.iter().filter(|a| a.accepted).count(),
            tr.anderson.len(),
            tr.outer.iter().map(|o| o.dual_source).collect::<Vec<_>>()
        );
        assert!(tr.anderson.iter().any(|a| a.accepted), "Anderson is used");
        let w = prob.weights();
        let att = a.t().dot(&tr.theta);
        let lam = prob.lambda();
        for &g in &with.state.active {
            let nr = lists[g]
                .iter()
                .map(|&j| att[j] * att[j])
                .sum::<f64>()
                .sqrt();
            assert!(
                nr <= lam * w[g] * (1.0 + 1e-12),
                "group {g}: {nr} > {}",
                lam * w[g]
            );
        }
        let dual = tr.theta.dot(&b) - 0.5 * n as f64 * tr.theta.dot(&tr.theta);
        let primal = prob.objective(with.x.view()).unwrap();
        assert!(((primal - dual).max(0.0) - with.certificate).abs() <= 1e-13);
        assert!(with.certificate <= 1e-11);
    }
}

/// A weighted Lasso with unpenalized features (`wⱼ = 0`, e.g. an intercept column): plain
/// coordinate descent, working sets and FISTA reach one objective, and the gap certifies it
/// (the dual point is the residual projected off the unpenalized columns, so `A_Zᵀθ = 0`).
/// Without the projection the gap stays at `P(x)` or infinity and no solver ever stops. The
/// returned point satisfies the KKT conditions written out here.
#[test]
fn unpenalized_features_are_certified_by_the_gap() {
    let (n, p) = (50, 300);
    let mut a = DenseMatrix::<f64>::gaussian(n, p, 61)
        .unwrap()
        .normalize_columns()
        .matrix()
        .to_owned();
    a.column_mut(0).fill(1.0 / (n as f64).sqrt()); // an intercept
    let b = random_point::<f64>(n, 1.0, 62) + 3.0;
    let w = Array1::from_shape_fn(p, |j| if j % 50 == 0 || j == 7 { 0.0 } else { 1.0 });
    let pen = LassoPenalty::L1 {
        weights: Some(w.clone()),
    };
    let lmax = LassoProblem::lambda_max(a.view(), b.view(), &pen).unwrap();
    assert!(lmax.is_finite() && lmax > 0.0);
    let prob = LassoProblem::new(a.clone(), b.clone(), 0.1 * lmax, pen).unwrap();
    let run = |ws: bool| {
        CoordinateDescent::new(
            &prob,
            CoordinateDescentParams::default()
                .with_tol(1e-10)
                .with_working_sets(ws),
        )
        .unwrap()
        .run(Array1::zeros(p).view(), NoObserver)
        .unwrap()
    };
    let (with, without) = (run(true), run(false));
    for sol in [&with, &without] {
        assert_eq!(sol.reason, TerminationReason::Converged);
        assert!(sol.certificate <= 1e-10, "{}", sol.certificate);
        let r = &b - &a.dot(&sol.x);
        let c = a.t().dot(&r) / n as f64;
        for j in 0..p {
            let bound = 0.1 * lmax * w[j];
            if sol.x[j] == 0.0 {
                assert!(
                    c[j].abs() <= bound + 1e-4,
                    "feature {j}: {} > {bound}",
                    c[j]
                );
            } else {
                let want = bound * sol.x[j].signum();
                assert!(
                    (c[j] - want).abs() <= 1e-4,
                    "feature {j}: {} vs {want}",
                    c[j]
                );
            }
        }
        assert!(
            sol.x[0] != 0.0 && sol.x[7] != 0.0,
            "unpenalized features are used"
        );
    }
    assert!((with.objective - without.objective).abs() <= 1e-10);
    let f = prob.smooth_part().unwrap();
    let g = prob.penalty_function().unwrap();
    let fista = Fista::new(
        &f,
        &*g,
        FistaParams::default()
            .with_tol(1e-10)
            .with_max_iters(200_000),
    )
    .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x.view()))
    .run(Array1::zeros(p).view(), NoObserver)
    .unwrap();
    assert_eq!(fista.reason, TerminationReason::Converged);
    assert!((fista.objective - with.objective).abs() <= 2e-10);
}

/// The working-set solver's guarantees, on a Lasso, a weighted Lasso and an elastic net with
/// every combination of Anderson and dual extrapolation: the same objective as plain screened
/// coordinate descent to 1e-12 relative; every working set holds the support of its iterate;
/// the final dual point is feasible (checked on all features, screened ones included, with
/// `Aᵀθ` computed here) and its dual value, written from the definition, certifies the gap;
/// every Anderson step taken lowered the objective, and those refused did not; both
/// extrapolations are used somewhere.
#[test]
fn working_set_cd_keeps_its_guarantees() {
    let (n, p) = (80, 700);
    let a = DenseMatrix::<f64>::gaussian(n, p, 53)
        .unwrap()
        .normalize_columns()
        .matrix()
        .to_owned();
    let xt = Array1::from_shape_fn(p, |j| {
        if j % 37 == 5 {
            1.0 - (j % 3) as f64
        } else {
            0.0
        }
    });
    let b = a.dot(&xt) + random_point::<f64>(n, 0.05, 54);
    let (mut anderson_taken, mut extrapolated_used) = (0, 0);
    let (mut gram_anderson_taken, mut gram_extrapolated_used) = (0, 0);
    for pen in [
        LassoPenalty::L1 { weights: None },
        LassoPenalty::L1 {
            weights: Some(Array1::from_shape_fn(p, |j| 0.5 + (j % 7) as f64 * 0.2)),
        },
        LassoPenalty::ElasticNet { alpha: 0.7 },
    ] {
        let lmax = LassoProblem::lambda_max(a.view(), b.view(), &pen).unwrap();
        let prob = LassoProblem::new(a.clone(), b.clone(), 0.05 * lmax, pen.clone()).unwrap();
        // Both runs are within their gaps of P*: at 5e-15 they agree to about 1e-12 relative.
        let tol = 5e-15;
        let plain = CoordinateDescent::new(
            &prob,
            CoordinateDescentParams::default()
                .with_tol(tol)
                .with_working_sets(false),
        )
        .unwrap()
        .run(Array1::zeros(p).view(), NoObserver)
        .unwrap();
        assert_eq!(plain.reason, TerminationReason::Converged);
        let variants = [(true, true), (true, false), (false, true), (false, false)];
        // Each variant with the inner solves on the columns and on the Gram matrix.
        for ((anderson, dual_ex), gram) in
            variants.into_iter().flat_map(|v| [(v, false), (v, true)])
        {
            let sol = CoordinateDescent::new(
                &prob,
                CoordinateDescentParams::default()
                    .with_tol(tol)
                    .with_working_sets(true)
                    .with_anderson(anderson)
                    .with_dual_extrapolation(dual_ex)
                    .with_gram(Some(gram)),
            )
            .unwrap()
            .run(Array1::zeros(p).view(), NoObserver)
            .unwrap();
            let what = format!("{pen:?} anderson {anderson} dual {dual_ex} gram {gram}");
            assert_eq!(sol.reason, TerminationReason::Converged, "{what}");
            let obj = prob.objective(sol.x.view()).unwrap();
            assert!(
                (obj - plain.objective).abs() <= sol.certificate + plain.certificate + 1e-16,
                "{what}: {obj} vs {}",
                plain.objective
            );
            assert!((obj - plain.objective).abs() <= 1e-12 * plain.objective);
            let tr = &sol.state.trace;
            assert!(tr.outer.len() >= 2, "{what}: one outer iteration");
            for o in &tr.outer[..tr.outer.len() - 1] {
                assert!(
                    o.support
                        .iter()
                        .all(|j| o.working_set.binary_search(j).is_ok()),
                    "{what}: a working set dropped part of the support"
                );
                assert!(!o.working_set.is_empty());
                assert_eq!(o.gram, gram, "{what}");
            }
            // The dual point: feasible for every feature, and D(θ) from its definition.
            let theta = &tr.theta;
            let at_theta = a.t().dot(theta);
            let (lam, nf) = (prob.lambda(), n as f64);
            let w = prob.weights();
            let conj = match &pen {
                LassoPenalty::ElasticNet { alpha } => at_theta
                    .iter()
                    .map(|c| {
                        let e = (c.abs() - lam * alpha).max(0.0);
                        e * e / (2.0 * lam * (1.0 - alpha))
                    })
                    .sum::<f64>(),
                _ => {
                    for j in 0..p {
                        assert!(
                            at_theta[j].abs() <= lam * w[j] * (1.0 + 1e-12),
                            "{what}: |a_{j}ᵀθ| = {} > λw = {}",
                            at_theta[j].abs(),
                            lam * w[j]
                        );
                    }
                    0.0
                }
            };
            let dual = theta.dot(&b) - 0.5 * nf * theta.dot(theta) - conj;
            assert!((dual - tr.dual_value).abs() <= 1e-13, "{what}");
            assert!(obj - dual <= tol + 1e-15, "{what}: gap {}", obj - dual);
            assert!((sol.certificate - (sol.objective - dual).max(0.0)).abs() <= 1e-15);
            // Anderson steps: taken exactly when they lowered the objective.
            if !anderson {
                assert!(tr.anderson.is_empty(), "{what}");
            }
            for st in &tr.anderson {
                assert_eq!(st.accepted, st.candidate < st.before, "{what}");
            }
            let taken = tr.anderson.iter().filter(|st| st.accepted).count();
            anderson_taken += taken;
            if gram {
                gram_anderson_taken += taken;
            }
            let used = tr
                .outer
                .iter()
                .filter(|o| o.dual_source == DualSource::Extrapolated)
                .count();
            if !dual_ex {
                assert_eq!(used, 0, "{what}");
            }
            extrapolated_used += used;
            if gram {
                gram_extrapolated_used += used;
            }
        }
    }
    assert!(
        anderson_taken > 0 && extrapolated_used > 0,
        "{anderson_taken} {extrapolated_used}"
    );
    assert!(
        gram_anderson_taken > 0 && gram_extrapolated_used > 0,
        "Gram solver: {gram_anderson_taken} {gram_extrapolated_used}"
    );
}

/// A column-major (Fortran-order) design is used without a copy and gives the same bits as
/// the row-major one; `transpose_owned` is the transpose for shapes that are not multiples of
/// its tile, and for a non-contiguous view.
#[test]
fn coordinate_descent_is_layout_blind_and_the_transpose_is_exact() {
    let (n, p) = (45, 130);
    let a = DenseMatrix::<f64>::gaussian(n, p, 57)
        .unwrap()
        .matrix()
        .to_owned();
    let b = random_point::<f64>(n, 1.0, 58);
    let mut f = Array2::zeros((n, p).f());
    f.assign(&a);
    assert!(f.t().is_standard_layout());
    let pen = LassoPenalty::L1 { weights: None };
    let lmax = LassoProblem::lambda_max(a.view(), b.view(), &pen).unwrap();
    let solve = |m: Array2<f64>| {
        let prob = LassoProblem::new(m, b.clone(), 0.1 * lmax, pen.clone()).unwrap();
        CoordinateDescent::new(&prob, CoordinateDescentParams::default().with_tol(1e-12))
            .unwrap()
            .run(Array1::zeros(p).view(), NoObserver)
            .unwrap()
    };
    let (row, col) = (solve(a.clone()), solve(f));
    assert_eq!(row.x, col.x);
    assert_eq!(row.certificate.to_bits(), col.certificate.to_bits());
    for (m, k) in [(45, 130), (1, 7), (33, 1), (64, 32)] {
        let x = Array2::from_shape_fn((m, k), |(i, j)| (i * 1000 + j) as f64);
        let t = hyperprox_core::linalg::transpose_owned(x.view());
        assert!(t.is_standard_layout());
        assert_eq!(t, x.t());
        let strided = x.slice(ndarray::s![.., ..;2]);
        assert_eq!(
            hyperprox_core::linalg::transpose_owned(strided),
            strided.t()
        );
    }
}

/// The path: a geometric grid from λ_max (where x = 0) down to `min_ratio·λ_max`; each point
/// certified to the tolerance and equal to a cold solve at the same λ (objectives within the
/// two gaps), for the Lasso, a weighted Lasso, the elastic net (warm starts and the strong
/// rule) and the group lasso (warm starts); for a row-major and a column-major design alike.
#[test]
fn lasso_path_matches_cold_solves_at_every_lambda() {
    let (n, p) = (40, 120);
    let a = DenseMatrix::<f64>::gaussian(n, p, 59)
        .unwrap()
        .normalize_columns()
        .matrix()
        .to_owned();
    let xt = Array1::from_shape_fn(p, |j| if j % 11 == 2 { 1.0 } else { 0.0 });
    let b = a.dot(&xt) + random_point::<f64>(n, 0.05, 60);
    let grid: Vec<f64> = lambda_grid(2.0, 5, 0.01).unwrap();
    assert_eq!(grid.len(), 5);
    assert!((grid[0] - 2.0).abs() < 1e-15 && (grid[4] - 0.02).abs() < 1e-15);
    for k in 1..5 {
        assert!((grid[k] / grid[k - 1] - 0.01f64.powf(0.25)).abs() < 1e-12);
    }
    assert!(lambda_grid(1.0f64, 0, 0.1).is_err() && lambda_grid(1.0f64, 3, 1.0).is_err());
    assert!(lambda_grid(0.0f64, 3, 0.1).is_err() && lambda_grid(1.0, 3, f64::NAN).is_err());
    let tol = 1e-10;
    let params = CoordinateDescentParams::default().with_tol(tol);
    for pen in [
        LassoPenalty::L1 { weights: None },
        LassoPenalty::L1 {
            weights: Some(Array1::from_shape_fn(p, |j| 0.5 + (j % 5) as f64 * 0.25)),
        },
        LassoPenalty::ElasticNet { alpha: 0.6 },
        LassoPenalty::Group {
            groups: Groups::contiguous(&[4; 30]).unwrap(),
            weights: None,
        },
    ] {
        let lmax = LassoProblem::lambda_max(a.view(), b.view(), &pen).unwrap();
        let lambdas = lambda_grid(lmax, 12, 0.01).unwrap();
        let mut f = Array2::zeros((n, p).f());
        f.assign(&a);
        let path = lasso_path(a.clone(), b.clone(), pen.clone(), &lambdas, params).unwrap();
        let path_f = lasso_path(f, b.clone(), pen.clone(), &lambdas, params).unwrap();
        assert_eq!(path.len(), 12);
        assert!(path[0].x.iter().all(|&v| v == 0.0), "{pen:?}: x(λ_max) ≠ 0");
        for (k, (pt, pf)) in path.iter().zip(&path_f).enumerate() {
            assert_eq!(pt.x, pf.x, "{pen:?}: layouts differ at {k}");
            assert!(
                pt.converged && pt.gap <= tol,
                "{pen:?} λ{k}: gap {}",
                pt.gap
            );
            let prob = LassoProblem::new(a.clone(), b.clone(), lambdas[k], pen.clone()).unwrap();
            assert!((prob.objective(pt.x.view()).unwrap() - pt.objective).abs() < 1e-14);
            let cold = CoordinateDescent::new(&prob, params)
                .unwrap()
                .run(Array1::zeros(p).view(), NoObserver)
                .unwrap();
            assert!(
                (pt.objective - cold.objective).abs() <= pt.gap + cold.certificate + 1e-15,
                "{pen:?} λ{k}: {} vs {}",
                pt.objective,
                cold.objective
            );
        }
        // Smaller λ, more nonzeros at the end than at the start.
        let nnz = |x: &Array1<f64>| x.iter().filter(|v| **v != 0.0).count();
        assert!(nnz(&path[11].x) > nnz(&path[1].x));
    }
    assert!(lasso_path(
        a.clone(),
        b.clone(),
        LassoPenalty::L1 { weights: None },
        &[],
        params
    )
    .is_err());
    assert!(lasso_path(
        a,
        b,
        LassoPenalty::L1 { weights: None },
        &[0.1, -1.0],
        params
    )
    .is_err());
}

/// `anderson_extrapolate` on a linear contraction `x ← Mx + c` (`M` symmetric, eigenvalues
/// in [0.9, 0.95], dimension 30): from `K + 1` iterates it lands far closer to the fixed point
/// than the last iterate; it commutes with affine maps `x ↦ αx + β` (the weights add up to
/// one); iterates that stopped moving give `None`.
#[test]
fn anderson_extrapolation_accelerates_a_linear_iteration() {
    let d = 30;
    // M = Q diag(μ) Qᵀ with Q from a QR of a seeded Gaussian matrix (Gram–Schmidt here).
    let g = DenseMatrix::<f64>::gaussian(d, d, 55)
        .unwrap()
        .matrix()
        .to_owned();
    let mut q = Array2::<f64>::zeros((d, d));
    for j in 0..d {
        let mut v = g.column(j).to_owned();
        for k in 0..j {
            let qk = q.column(k).to_owned();
            let proj = qk.dot(&v);
            v.scaled_add(-proj, &qk);
        }
        let nv = v.dot(&v).sqrt();
        q.column_mut(j).assign(&(v / nv));
    }
    let mu = Array1::from_shape_fn(d, |i| 0.9 + 0.05 * i as f64 / (d - 1) as f64);
    let m = q.dot(&Array2::from_diag(&mu)).dot(&q.t());
    let xstar = random_point::<f64>(d, 1.0, 56);
    let c = &xstar - &m.dot(&xstar);
    let mut x = Array1::<f64>::zeros(d);
    let mut hist = vec![x.clone()];
    for _ in 0..EXTRAPOLATION_K {
        x = m.dot(&x) + &c;
        hist.push(x.clone());
    }
    let acc = anderson_extrapolate(&hist).unwrap();
    let err = |v: &Array1<f64>| (v - &xstar).mapv(|e| e * e).sum().sqrt();
    let (e_acc, e_last) = (err(&acc), err(&hist[EXTRAPOLATION_K]));
    assert!(e_acc < 0.05 * e_last, "{e_acc} vs {e_last}");
    // Affine maps, on well-conditioned (random) iterates.
    let hist: Vec<Array1<f64>> = (0..=EXTRAPOLATION_K as u64)
        .map(|k| random_point::<f64>(d, 1.0, 60 + k))
        .collect();
    let acc = anderson_extrapolate(&hist).unwrap();
    let (alpha, beta) = (-2.5, 0.75);
    let moved: Vec<Array1<f64>> = hist.iter().map(|h| h.mapv(|v| alpha * v + beta)).collect();
    let acc2 = anderson_extrapolate(&moved).unwrap();
    let want = acc.mapv(|v| alpha * v + beta);
    assert!(max_abs((&acc2 - &want).view()) < 1e-10);
    assert!(anderson_extrapolate(&vec![xstar.clone(); EXTRAPOLATION_K + 1]).is_none());
    assert!(anderson_extrapolate(&hist[..1]).is_none());
}

#[test]
fn iht_recovers_a_sparse_vector_and_is_monotone() {
    // Noiseless compressed sensing, 10-sparse x in ℝ²⁵⁶ from 100 Gaussian measurements:
    // IHT (forward–backward with the ℓ0 prox, step 1/L) decreases ½‖Ax − b‖² + λ‖x‖₀
    // monotonically (Blumensath & Davies 2008) and finds the support.
    let (m, n) = (100, 256);
    let a = DenseMatrix::<f64>::gaussian(m, n, 61).unwrap();
    let xt = Array1::from_shape_fn(n, |j| {
        if j % 25 == 3 {
            1.0 + (j % 3) as f64
        } else {
            0.0
        }
    });
    let b = a.apply(xt.view()).unwrap();
    let f = LeastSquares::new(a, b).unwrap();
    let g = NormL0::new(0.05).unwrap();
    let mut objs = Vec::new();
    let params = FistaParams::iht()
        .with_step(StepRule::Backtracking {
            initial: 1.0,
            eta: 0.5,
        })
        .with_tol(1e-10)
        .with_max_iters(20_000);
    let sol = Fista::new(&f, &g, params)
        .run(Array1::zeros(n).view(), |i: &IterInfo<f64>| {
            objs.push(i.objective);
            true
        })
        .unwrap();
    assert!(
        objs.windows(2).all(|w| w[1] <= w[0] + 1e-12),
        "IHT must be monotone"
    );
    assert_eq!(sol.reason, TerminationReason::Converged);
    let support: Vec<usize> = (0..n).filter(|&j| sol.x[j] != 0.0).collect();
    let true_support: Vec<usize> = (0..n).filter(|&j| xt[j] != 0.0).collect();
    assert_eq!(support, true_support);
    assert!(max_abs((&sol.x - &xt).view()) < 1e-6);
}

#[test]
fn fista_evaluates_a_costly_certificate_every_k_iterations() {
    let (prob, xstar) = lasso_instance();
    let f = prob.smooth_part().unwrap();
    let g = prob.penalty_function().unwrap();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let sol = Fista::new(
        &f,
        &*g,
        FistaParams::default()
            .with_tol(1e-11)
            .with_certificate_every(10),
    )
    .with_certificate(CertificateKind::DualityGap, |x| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        prob.duality_gap(x.view())
    })
    .run(Array1::zeros(12).view(), NoObserver)
    .unwrap();
    assert_eq!(sol.reason, TerminationReason::Converged);
    assert_eq!(sol.iterations % 10, 0);
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::Relaxed),
        sol.iterations / 10
    );
    assert!((prob.duality_gap(sol.x.view()).unwrap() - sol.certificate).abs() < 1e-15);
    assert!(max_abs((&sol.x - &xstar).view()) < 1e-5);
}

/// The one CG: relative and absolute stops, a Jacobi preconditioner that cuts the iterations on
/// an ill-conditioned diagonal-plus-low-rank system, agreement with a direct solve, the cap
/// reported (not an error) for an absolute stop, and a rejected indefinite operator.
#[test]
fn conjugate_gradient_with_and_without_a_preconditioner() {
    use hyperprox_core::linalg::{conjugate_gradient, CgParams};
    let n = 60;
    let d = Array1::from_shape_fn(n, |i| 10f64.powf(4.0 * i as f64 / (n - 1) as f64));
    let u = random_point::<f64>(n, 1.0, 7);
    let apply = |mut out: ndarray::ArrayViewMut1<'_, f64>, v: ArrayView1<'_, f64>| {
        let uv: f64 = u.iter().zip(v.iter()).map(|(a, b)| a * b).sum();
        for i in 0..n {
            out[i] = d[i] * v[i] + u[i] * uv;
        }
    };
    let mut m = Array2::from_diag(&d);
    for i in 0..n {
        for j in 0..n {
            m[(i, j)] += u[i] * u[j];
        }
    }
    let b = random_point::<f64>(n, 1.0, 8);
    let direct = {
        let mut x = b.clone();
        let l = f64::cholesky_lower(m.view()).unwrap();
        hyperprox_core::linalg::cholesky_solve_in_place(l.view(), x.view_mut());
        x
    };
    let params = CgParams::relative(1e-10, 10 * n);
    let mut x_plain = Array1::zeros(n);
    let plain = conjugate_gradient(apply, None, b.view(), x_plain.view_mut(), &params).unwrap();
    let jacobi = |mut out: ndarray::ArrayViewMut1<'_, f64>, r: ArrayView1<'_, f64>| {
        for i in 0..n {
            out[i] = r[i] / (d[i] + u[i] * u[i]);
        }
    };
    let mut x_pc = Array1::zeros(n);
    let pc = conjugate_gradient(apply, Some(&jacobi), b.view(), x_pc.view_mut(), &params).unwrap();
    for (x, what) in [(&x_plain, "plain"), (&x_pc, "preconditioned")] {
        let err = (x - &direct).mapv(f64::abs).fold(0.0f64, |a, &v| a.max(v));
        assert!(
            err < 1e-8 * direct.mapv(f64::abs).sum(),
            "{what}: error {err:e}"
        );
    }
    assert!(plain.converged && pc.converged);
    assert!(
        2 * pc.iterations < plain.iterations,
        "Jacobi should at least halve the iterations: {} vs {}",
        pc.iterations,
        plain.iterations
    );
    // The residual it reports is the true one (up to the recursion's rounding).
    let mut r = Array1::zeros(n);
    apply(r.view_mut(), x_pc.view());
    let true_res = (&b - &r).dot(&(&b - &r)).sqrt();
    assert!((true_res - pc.residual).abs() <= 1e-8 * b.dot(&b).sqrt());
    // An absolute stop with a tiny cap: Ok, not converged, the residual reached.
    let mut x = Array1::zeros(n);
    let capped = conjugate_gradient(
        apply,
        None,
        b.view(),
        x.view_mut(),
        &CgParams::absolute(1e-14, 3),
    )
    .unwrap();
    assert!(!capped.converged && capped.iterations == 3 && capped.residual > 1e-14);
    // The relative stop with the same cap is an error.
    let mut x = Array1::zeros(n);
    assert!(conjugate_gradient(
        apply,
        None,
        b.view(),
        x.view_mut(),
        &CgParams::relative(1e-14, 3)
    )
    .is_err());
    // An indefinite operator is rejected.
    let neg = |mut out: ndarray::ArrayViewMut1<'_, f64>, v: ArrayView1<'_, f64>| {
        out.assign(&v.mapv(|t| -t));
    };
    let mut x = Array1::zeros(n);
    assert!(conjugate_gradient(neg, None, b.view(), x.view_mut(), &params).is_err());
}

/// The batched forward–backward solver row by row equals the core FISTA on each row's problem,
/// with and without momentum, and the batched Lasso gap vanishes at the optimum it certifies.
#[test]
fn batched_fista_matches_fista_per_row_and_certifies_the_lasso() {
    use hyperprox_core::diff::LeastSquaresBatch;
    use hyperprox_core::solve::{lasso_gaps, BatchFista, BatchFistaParams};
    use std::sync::Arc;
    let (m, n, rows) = (15, 25, 3);
    let a = DenseMatrix::<f64>::gaussian(m, n, 11)
        .unwrap()
        .matrix()
        .to_owned();
    let y = Array2::from_shape_fn((rows, m), |(b, i)| {
        ((b * 7 + i * 3) % 11) as f64 * 0.2 - 1.0
    });
    let lambda = 0.05;
    let f = LeastSquaresBatch::new(Arc::new(a.clone())).unwrap();
    let g = NormL1::new(lambda).unwrap();
    let l = f64::thin_svd(a.view()).unwrap().1[0].powi(2);
    for momentum in [false, true] {
        let params = BatchFistaParams {
            step: 1.0 / l,
            momentum,
            restart: Restart::None,
        };
        let solver = BatchFista::new(&f, &g, params).unwrap();
        let xs = solver
            .iterates(Array2::zeros((rows, n)).view(), y.view(), 200)
            .unwrap();
        for b in 0..rows {
            let ls = LeastSquares::new(DenseMatrix::new(a.clone()).unwrap(), y.row(b).to_owned())
                .unwrap();
            let fp = FistaParams {
                momentum,
                ..FistaParams::default()
            }
            .with_step(StepRule::Constant(1.0 / l))
            .with_tol(0.0)
            .with_max_iters(200);
            let sol = Fista::new(&ls, &g, fp)
                .run(Array1::zeros(n).view(), NoObserver)
                .unwrap();
            let diff = (&sol.x - &xs[200].row(b))
                .mapv(f64::abs)
                .fold(0.0f64, |a, &v| a.max(v));
            assert!(
                diff < 1e-12,
                "momentum {momentum}, row {b}: max difference {diff:e}"
            );
        }
    }
    // Restarted FISTA to a tight gap: the gap certifies the objective error.
    let params = BatchFistaParams {
        step: 1.0 / l,
        momentum: true,
        restart: Restart::Gradient,
    };
    let solver = BatchFista::new(&f, &g, params).unwrap();
    let xs = solver
        .iterates(Array2::zeros((rows, n)).view(), y.view(), 3000)
        .unwrap();
    let (gaps, vals) = lasso_gaps(a.view(), xs[3000].view(), y.view(), lambda);
    let (gaps0, vals0) = lasso_gaps(a.view(), xs[5].view(), y.view(), lambda);
    // The batched gap is the general Lasso gap of each row: ½‖r‖² + λ‖x‖₁ = m·P with
    // P = ‖r‖²/(2m) + (λ/m)‖x‖₁.
    for (b, gap0) in gaps0.iter().enumerate() {
        let pen = LassoPenalty::L1 { weights: None };
        let mf = a.nrows() as f64;
        let prob = LassoProblem::new(a.clone(), y.row(b).to_owned(), lambda / mf, pen).unwrap();
        let general = mf * prob.duality_gap(xs[5].row(b)).unwrap();
        assert!(
            (general - gap0).abs() <= 1e-10 * (1.0 + general),
            "{general} vs {gap0}"
        );
    }
    for b in 0..rows {
        assert!(gaps[b] < 1e-10, "row {b}: gap {:e}", gaps[b]);
        // At an early iterate the gap bounds the objective error F(x₅) − F*.
        assert!(gaps0[b] >= vals0[b] - vals[b] - 1e-10);
        assert!(gaps0[b] > 1e-6);
    }
}

/// FISTA with the certificate tested at the extrapolated point returns that point, and its
/// reported certificate is exactly ‖∇f(x)‖/μ at the returned x, which bounds ‖x − x*‖.
#[test]
fn fista_certified_extrapolation_returns_a_certified_point() {
    let (m, n) = (30, 10);
    let a = DenseMatrix::<f64>::gaussian(m, n, 3).unwrap();
    let b = random_point::<f64>(m, 1.0, 4);
    let ls = LeastSquares::new(a.clone(), b.clone()).unwrap();
    let sv = f64::thin_svd(a.matrix()).unwrap().1;
    let mu = sv[n - 1].powi(2);
    let zero = SqrNormL2::new(0.0).unwrap();
    let params = FistaParams::default()
        .with_strong_convexity(mu)
        .with_restart(Restart::Gradient)
        .with_track_objective(false)
        .with_certify_extrapolation(true)
        .with_tol(1e-6);
    let sol = Fista::new(&ls, &zero, params)
        .run(Array1::zeros(n).view(), NoObserver)
        .unwrap();
    assert_eq!(sol.reason, TerminationReason::Converged);
    let g = ls.gradient(sol.x.view()).unwrap();
    let measured = g.dot(&g).sqrt() / mu;
    assert!((measured - sol.certificate).abs() <= 1e-12 * measured.max(1e-300));
    assert!(sol.certificate <= 1e-6);
    // x* from the normal equations.
    let at = a.matrix().t().to_owned();
    let ata = at.dot(&a.matrix());
    let mut xs = at.dot(&b);
    let l = f64::cholesky_lower(ata.view()).unwrap();
    hyperprox_core::linalg::cholesky_solve_in_place(l.view(), xs.view_mut());
    let dist = (&sol.x - &xs).dot(&(&sol.x - &xs)).sqrt();
    assert!(
        dist <= sol.certificate,
        "‖x − x*‖ = {dist:e} > certificate {:e}",
        sol.certificate
    );
    // A supplied certificate cannot be combined with it, nor function-value restart without
    // the objective.
    let bad = FistaParams::default()
        .with_track_objective(false)
        .with_restart(Restart::FunctionValue);
    assert!(Fista::new(&ls, &zero, bad)
        .run(Array1::zeros(n).view(), NoObserver)
        .is_err());
}

/// A Gaussian 20 × 6 design and a random right-hand side (the λ_max and gap tests).
fn gaussian_data_20x6() -> (Array2<f64>, Array1<f64>) {
    let a = DenseMatrix::<f64>::gaussian(20, 6, 9)
        .unwrap()
        .matrix()
        .to_owned();
    (a, random_point::<f64>(20, 1.0, 10))
}
/// `λ_max` by its definition for the other penalties: `‖Aᵀb/n‖∞/α` for the elastic net, and
/// `max_j |a_jᵀb/n|/w_j` for weighted ℓ1 — infinite when an unpenalized feature (`w_j = 0`)
/// correlates with `b` (no λ zeroes it), and finite when it does not (a zero column).
#[test]
fn lambda_max_follows_its_definition_for_weights_and_the_elastic_net() {
    let (mut a, b) = gaussian_data_20x6();
    let c = a.t().dot(&b) / 20.0;
    let inf_norm = c.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let en = LassoProblem::lambda_max(a.view(), b.view(), &LassoPenalty::ElasticNet { alpha: 0.4 })
        .unwrap();
    assert!(
        (en - inf_norm / 0.4).abs() <= 1e-14 * en,
        "{en} vs {}",
        inf_norm / 0.4
    );
    let w = Array1::from(vec![1.0, 2.0, 0.5, 1.0, 3.0, 0.0]);
    let weighted = LassoPenalty::L1 {
        weights: Some(w.clone()),
    };
    // An unpenalized feature: λ_max is decided by the residual of b fitted on it alone, and at
    // λ_max the solution is that fit.
    let l = LassoProblem::lambda_max(a.view(), b.view(), &weighted).unwrap();
    let a5 = a.column(5).to_owned();
    let fit = a5.dot(&b) / a5.dot(&a5);
    let r = &b - &(&a5 * fit);
    let cr = a.t().dot(&r) / 20.0;
    let want = (0..5).map(|j| cr[j].abs() / w[j]).fold(0.0f64, f64::max);
    assert!((l - want).abs() <= 1e-13 * want, "{l} vs {want}");
    let prob = LassoProblem::new(a.clone(), b.clone(), l, weighted.clone()).unwrap();
    let sol = CoordinateDescent::new(&prob, CoordinateDescentParams::default().with_tol(1e-14))
        .unwrap()
        .run(Array1::zeros(6).view(), NoObserver)
        .unwrap();
    assert_eq!(sol.reason, TerminationReason::Converged);
    assert!(max_abs(sol.x.slice(ndarray::s![..5])) <= 1e-7, "{}", sol.x);
    assert!(
        (sol.x[5] - fit).abs() <= 1e-7 * fit.abs(),
        "{} vs {fit}",
        sol.x[5]
    );
    a.column_mut(5).fill(0.0);
    let c = a.t().dot(&b) / 20.0;
    let want = (0..5).map(|j| c[j].abs() / w[j]).fold(0.0f64, f64::max);
    let l = LassoProblem::lambda_max(a.view(), b.view(), &weighted).unwrap();
    assert!((l - want).abs() <= 1e-14 * want, "{l} vs {want}");
}

/// The Lasso duality gap against its definition at a point far from the solution (so the dual
/// point must be scaled): `θ = s·r/n` with `s = min(1, λ/‖Aᵀr/n‖∞)`, dual feasible
/// (`‖Aᵀθ‖∞ ≤ λ`), and `gap = P(x) − (θᵀb − (n/2)‖θ‖²)`.
#[test]
fn lasso_gap_and_dual_point_follow_their_definitions() {
    let (a, b) = gaussian_data_20x6();
    let pen = LassoPenalty::L1 { weights: None };
    let lam = 0.3 * LassoProblem::lambda_max(a.view(), b.view(), &pen).unwrap();
    let prob = LassoProblem::new(a.clone(), b.clone(), lam, pen).unwrap();
    let x = Array1::from(vec![0.5, -0.2, 0.0, 0.1, 0.0, 0.3]);
    let r = &b - &a.dot(&x);
    let n = 20.0;
    let atr = a.t().dot(&r) / n;
    let dn = atr.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(dn > lam, "the point must need scaling: {dn} ≤ {lam}");
    let s = lam / dn;
    let (gap, theta) = prob.duality_gap_with_residual(x.view(), r.view()).unwrap();
    let want_theta = &r * (s / n);
    assert!((&theta - &want_theta).iter().all(|e| e.abs() <= 1e-15), "θ");
    let feas = a.t().dot(&theta).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(feas <= lam * (1.0 + 1e-12), "‖Aᵀθ‖∞ {feas} > λ {lam}");
    let primal = r.dot(&r) / (2.0 * n) + lam * x.iter().map(|v| v.abs()).sum::<f64>();
    let dual = theta.dot(&b) - 0.5 * n * theta.dot(&theta);
    assert!(
        (gap - (primal - dual)).abs() <= 1e-12 * primal,
        "gap {gap} vs {}",
        primal - dual
    );
    assert_eq!(prob.duality_gap(x.view()).unwrap(), gap);
}

/// The ℓ1-logistic duality gap against its definition: `sᵢ = σ(−yᵢaᵢᵀx)`, `c = min(1,
/// λ/‖Aᵀ(y∘s)/n‖∞)`, `D = (1/n)Σ H(c·sᵢ)` with `H` the binary entropy in nats, `gap = P(x) −
/// D`, at points whose margins reach ±1700 (where `log(1 + e^{−m})` and `σ` must be
/// evaluated on their stable branch), with and without scaling; it bounds `P(x) − P*` (weak duality)
/// and is exactly 0 at `x = 0` for `λ ≥ λ_max`.
#[test]
fn logistic_gap_follows_its_definition_and_bounds_the_suboptimality() {
    let (a, b) = gaussian_data_20x6();
    let y = b.mapv(|v| if v > 0.0 { 1.0 } else { -1.0 });
    let n = 20.0;
    let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
    // log(1 + e^u) without overflow for the test's margins (|u| ≤ 700).
    let softplus = |u: f64| u.max(0.0) + (-u.abs()).exp().ln_1p();
    let ent = |p: f64| {
        let h = |q: f64| if q > 0.0 { -q * q.ln() } else { 0.0 };
        h(p) + h(1.0 - p)
    };
    let lmax = LogisticL1Problem::lambda_max(a.view(), y.view());
    let mut scaled = 0;
    // Margins up to about ±60 at x × 30 and ±1700 at x × 5000 (beyond e^709, where only
    // the stable branches of log(1 + e^u) stay finite).
    for (lam_f, scale) in [
        (0.2, 1.0),
        (0.2, 30.0),
        (0.2, 5000.0),
        (0.9, 0.05),
        (3.0, 0.3),
    ] {
        let lam = lam_f * lmax;
        let prob = LogisticL1Problem::new(a.clone(), y.clone(), lam).unwrap();
        let x = Array1::from(vec![0.5, -0.2, 0.0, 0.1, 0.0, 0.3]) * scale;
        let m = &a.dot(&x) * &y;
        let beyond = m.iter().any(|&v| v > 709.0) && m.iter().any(|&v| v < -709.0);
        assert_eq!(beyond, scale > 100.0, "margins {m}");
        let primal = m.iter().map(|&mi| softplus(-mi)).sum::<f64>() / n
            + lam * x.iter().map(|v| v.abs()).sum::<f64>();
        let p_got = prob.objective(x.view()).unwrap();
        assert!(
            (p_got - primal).abs() <= 1e-13 * primal,
            "P: {p_got} vs {primal}"
        );
        let s = m.mapv(|mi| sig(-mi));
        let dn = a
            .t()
            .dot(&(&y * &s / n))
            .iter()
            .fold(0.0f64, |acc, v| acc.max(v.abs()));
        let c = if dn > lam { lam / dn } else { 1.0 };
        scaled += usize::from(c < 1.0);
        let dual = s.iter().map(|&si| ent(c * si)).sum::<f64>() / n;
        let gap = prob.duality_gap(x.view()).unwrap();
        assert!(
            (gap - (primal - dual).max(0.0)).abs() <= 1e-12 * primal,
            "λ = {lam_f}·λ_max, x × {scale}: gap {gap} vs {}",
            primal - dual
        );
        // Weak duality: P(x) − P* ≤ gap, with P* from a tight solve.
        let sol = LogisticCd::new(&prob, CoordinateDescentParams::default().with_tol(1e-13))
            .unwrap()
            .run(Array1::zeros(6).view(), NoObserver)
            .unwrap();
        assert!(primal - sol.objective <= gap * (1.0 + 1e-9) + 1e-15);
        assert!(gap > 1e-6, "not at the solution: {gap}");
    }
    assert!(
        (1..5).contains(&scaled),
        "both branches of the dual scaling: {scaled}"
    );
    let prob = LogisticL1Problem::new(a.clone(), y.clone(), lmax * 1.001).unwrap();
    assert_eq!(prob.duality_gap(Array1::zeros(6).view()).unwrap(), 0.0);
}

/// PDHG's certificate at each checked iteration against its definition, from the iterates the
/// steps leave: the gap `f(x) + g(Kx) + f*(−Kᵀy) + g*(y)` when both conjugates are known and
/// finite (elastic net, and ℓ1 once `‖Kᵀy‖∞ ≤ λ`, against a translated ½‖·‖²), else the
/// residual `max(‖(x_k − x⁺)/τ − Kᵀ(y_k − y⁺)‖, ‖(y_k − y⁺)/σ − K(x_k − x⁺)‖)` (ℓ0 has no
/// convex conjugate; ℓ1's is +∞ off its ball). Between checks (`check_every = 3`) the last
/// values are reported; the last iteration (13, not a multiple of 3) is checked. With
/// `strong_convexity = γ` the steps follow `θ_k = 1/√(1 + 2γτ_k)`, `τ_{k+1} = θ_kτ_k`,
/// `σ_{k+1} = σ_k/θ_k`.
#[test]
fn pdhg_certificate_follows_its_definition_at_each_check() {
    let a = DenseMatrix::<f64>::gaussian(20, 10, 25).unwrap();
    let b = random_point::<f64>(20, 1.0, 26);
    let g = Translate::new(SqrNormL2::new(1.0).unwrap(), b.clone()).unwrap();
    let en = ElasticNet::new(0.3, 0.5).unwrap();
    let l0 = NormL0::new(0.05).unwrap();
    let l1 = NormL1::new(1.4).unwrap();
    let x0 = random_point::<f64>(10, 1.0, 27);
    let mut kinds = Vec::new();
    for (f, gamma) in [
        (&en as &dyn Prox<f64>, None),
        (&en as &dyn Prox<f64>, Some(0.15)),
        (&l0 as &dyn Prox<f64>, None),
        (&l1 as &dyn Prox<f64>, None),
    ] {
        let params = PdhgParams {
            check_every: 3,
            max_iters: 13,
            strong_convexity: gamma,
            ..Default::default()
        };
        let solver = Pdhg::new(f, &g, &a, params);
        let mut s = solver.init(x0.view()).unwrap();
        let mut last_cert = f64::INFINITY;
        let mut seen = Vec::new();
        for k in 1..=13 {
            let (xo, yo, tau, sigma) = (s.x.clone(), s.y.clone(), s.tau, s.sigma);
            let info = solver.step(&mut s).unwrap();
            assert_eq!(info.iter, k);
            let (tau2, sigma2) = match gamma {
                Some(gm) => {
                    let th = 1.0 / (1.0 + 2.0 * gm * tau).sqrt();
                    (th * tau, sigma / th)
                }
                None => (tau, sigma),
            };
            assert!(
                (s.tau - tau2).abs() <= 1e-15 * tau2 && (s.sigma - sigma2).abs() <= 1e-15 * sigma2,
                "steps at k = {k}: ({}, {}) vs ({tau2}, {sigma2})",
                s.tau,
                s.sigma
            );
            if k % 3 != 0 && k != 13 {
                assert_eq!(info.certificate.to_bits(), last_cert.to_bits(), "k = {k}");
                continue;
            }
            let kx = a.apply(s.x.view()).unwrap();
            let obj = f.value(s.x.view()).unwrap() + g.value(kx.view()).unwrap();
            assert!((info.objective - obj).abs() <= 1e-13 * obj.abs(), "k = {k}");
            let kty = a.adjoint(s.y.view()).unwrap();
            let conj = (f.conj_value((-&kty).view()), g.conj_value(s.y.view()));
            let (want, kind) = match conj {
                (Ok(fs), Ok(gs)) if fs.is_finite() && gs.is_finite() => {
                    ((obj + fs + gs).max(0.0), CertificateKind::DualityGap)
                }
                _ => {
                    let (dx, dy) = (&xo - &s.x, &yo - &s.y);
                    let p = &dx / tau - &a.adjoint(dy.view()).unwrap();
                    let d = &dy / sigma - &a.apply(dx.view()).unwrap();
                    (
                        p.dot(&p).sqrt().max(d.dot(&d).sqrt()),
                        CertificateKind::FixedPointResidual,
                    )
                }
            };
            assert_eq!(info.kind, kind, "k = {k}");
            assert!(
                (info.certificate - want).abs() <= 1e-12 * want + 1e-15,
                "k = {k}: {} vs {want}",
                info.certificate
            );
            assert!(want > 1e-8, "far from the solution at k = {k}: {want}");
            last_cert = info.certificate;
            seen.push(kind);
        }
        kinds.push(seen);
    }
    use CertificateKind::{DualityGap as Gap, FixedPointResidual as Res};
    assert!(kinds[..2].iter().flatten().all(|k| *k == Gap));
    assert!(kinds[2].iter().all(|k| *k == Res));
    assert!(
        kinds[3].contains(&Gap) && kinds[3].contains(&Res),
        "ℓ1 should start off its conjugate's domain and enter it: {:?}",
        kinds[3]
    );
}

#[test]
fn rof_above_the_constant_threshold_returns_the_mean_with_a_closed_form_certificate() {
    // The piecewise image of the test above: each row is a 1-D problem whose plateaus meet at
    // λ_max = 4·(0.56 − 0.2) = 1.44 (the cumulative sum of y − ȳ along a row), and the
    // rows-first bound is exact when all rows are alike.
    let (h, w) = (6usize, 10usize);
    let y: Array1<f64> = Array1::from_shape_fn(h * w, |k| if k % w < 4 { 0.2 } else { 0.8 });
    for kind in [TvKind::Isotropic, TvKind::Anisotropic] {
        let tv = TotalVariation::new(h, w, 1.0, kind).unwrap();
        let t = tv.constant_threshold(y.view()).unwrap();
        assert!((t - 1.44).abs() < 1e-12, "{kind:?}: {t}");
        let above = TotalVariation::new(h, w, 1.44 * (1.0 + 1e-9), kind).unwrap();
        let sol = above.solve_rof(y.view(), 1e-12).unwrap();
        assert_eq!(sol.iterations, 0);
        assert!(
            sol.x.iter().all(|&v| (v - 0.56).abs() < 1e-15),
            "{:?}",
            sol.x
        );
        assert!(sol.gap <= 1e-14, "{}", sol.gap);
        // Just below, FGP runs and the plateaus have not met (0.2 + λ/4 < 0.8 − λ/6).
        let below = TotalVariation::new(h, w, 1.4, kind).unwrap();
        let sol = below.solve_rof(y.view(), 1e-12).unwrap();
        assert!(sol.iterations > 0);
        assert!((sol.x[0] - 0.55).abs() < 1e-5 && (sol.x[9] - (0.8 - 1.4 / 6.0)).abs() < 1e-5);
    }
    // Random images: at μ = λ̂ the returned dual point proves optimality of the mean (KKT:
    // ‖q_p‖ ≤ μ and v − ∇ᵀq = x), and λ̂ is at least the necessary ‖v − v̄‖²/TV(v).
    for (k, (h, w)) in [(7usize, 5usize), (1, 9), (9, 1), (6, 6)]
        .into_iter()
        .enumerate()
    {
        let v = random_point::<f64>(h * w, 1.0, 70 + k as u64);
        let n = h * w;
        let mean = v.sum() / n as f64;
        let grad = Gradient2d::new(h, w).unwrap();
        for kind in [TvKind::Isotropic, TvKind::Anisotropic] {
            let tv1 = TotalVariation::new(h, w, 1.0, kind).unwrap();
            let t = tv1.constant_threshold(v.view()).unwrap();
            let dev = (&v - mean).mapv(|e| e * e).sum();
            assert!(t >= dev / tv1.value(v.view()).unwrap() * (1.0 - 1e-12));
            let tv = TotalVariation::new(h, w, t, kind).unwrap();
            let sol = tv.prox_certified(v.view(), 1.0).unwrap();
            assert_eq!(sol.iterations, 0, "{h}x{w} {kind:?}");
            assert!(sol.x.iter().all(|&e| e == sol.x[0]) && (sol.x[0] - mean).abs() < 1e-15);
            let q = &sol.q;
            for p in 0..n {
                let norm = match kind {
                    TvKind::Isotropic => q[p].hypot(q[n + p]),
                    TvKind::Anisotropic => q[p].abs().max(q[n + p].abs()),
                };
                assert!(
                    norm <= t * (1.0 + 1e-12),
                    "{h}x{w} {kind:?}: ‖q_{p}‖ = {norm} > {t}"
                );
            }
            let resid = &v - &grad.adjoint(q.view()).unwrap() - &sol.x;
            assert!(max_abs(resid.view()) < 1e-13, "{h}x{w} {kind:?}");
            // In 1-D the bound is λ_max itself: slightly below it the solution is not constant.
            if h == 1 || w == 1 {
                // `‖x − x*‖ ≤ tol`, so a spread above 2·tol proves x* is not constant.
                let tol = 1e-7;
                let tv = TotalVariation::new(h, w, 0.99 * t, kind)
                    .unwrap()
                    .with_tolerance(tol, 1_000_000)
                    .unwrap();
                let sol = tv.prox_certified(v.view(), 1.0).unwrap();
                let spread = sol.x.fold(f64::NEG_INFINITY, |m, &e| m.max(e))
                    - sol.x.fold(f64::INFINITY, |m, &e| m.min(e));
                assert!(
                    sol.iterations > 0 && spread > 2.0 * tol,
                    "{h}x{w} {kind:?}: {spread}"
                );
            }
        }
    }
}

/// The two closed-form dual points of the constant solution written from their definitions on
/// an `h × w` array (rows first: `q_h(i, j) = −Σ_{k≤j}(v_ik − r_i)`, `q_v(i, ·) = −Σ_{k≤i}(r_k −
/// v̄)`; columns first the transposed construction), with zeros where no difference exists (last
/// column of `q_h`, last row of `q_v`). Returned as `[q_h; q_v]` (length `2hw`).
fn constant_duals_by_definition(v: &Array1<f64>, h: usize, w: usize) -> [Array1<f64>; 2] {
    let img = Array2::from_shape_vec((h, w), v.to_vec()).unwrap();
    let mean = img.mean().unwrap();
    let stack = |qh: Array2<f64>, qv: Array2<f64>| {
        let mut q = qh.into_iter().collect::<Vec<_>>();
        q.extend(qv);
        Array1::from(q)
    };
    let (mut rh, mut rv) = (Array2::zeros((h, w)), Array2::zeros((h, w)));
    for i in 0..h {
        let r = img.row(i).mean().unwrap();
        let rows_above: f64 = (0..=i).map(|k| img.row(k).mean().unwrap() - mean).sum();
        for j in 0..w {
            if j + 1 < w {
                rh[(i, j)] = -(0..=j).map(|k| img[(i, k)] - r).sum::<f64>();
            }
            if i + 1 < h {
                rv[(i, j)] = -rows_above;
            }
        }
    }
    let (mut ch, mut cv) = (Array2::zeros((h, w)), Array2::zeros((h, w)));
    for j in 0..w {
        let c = img.column(j).mean().unwrap();
        let cols_left: f64 = (0..=j).map(|k| img.column(k).mean().unwrap() - mean).sum();
        for i in 0..h {
            if i + 1 < h {
                cv[(i, j)] = -(0..=i).map(|k| img[(k, j)] - c).sum::<f64>();
            }
            if j + 1 < w {
                ch[(i, j)] = -cols_left;
            }
        }
    }
    [stack(rh, rv), stack(ch, cv)]
}

/// `max_p ‖q_p‖` (2-norm per pixel isotropic, ∞-norm anisotropic) of `q = [q_h; q_v]`.
fn dual_norm_max(q: &Array1<f64>, kind: TvKind) -> f64 {
    let n = q.len() / 2;
    (0..n)
        .map(|p| match kind {
            TvKind::Isotropic => q[p].hypot(q[n + p]),
            TvKind::Anisotropic => q[p].abs().max(q[n + p].abs()),
        })
        .fold(0.0, f64::max)
}

#[test]
fn constant_threshold_and_its_dual_points_match_their_definitions() {
    // Images made so that each construction is the smaller one: rows alike with a column
    // trend favour rows first (the row means agree); the transpose favours columns first.
    let trend = |h: usize, w: usize, by_rows: bool, seed: u64| {
        let noise = random_point::<f64>(h * w, 0.05, seed);
        Array1::from_shape_fn(h * w, |k| {
            let (i, j) = (k / w, k % w);
            let t = if by_rows { j } else { i } as f64;
            0.3 + 0.1 * t + noise[k]
        })
    };
    let mut used = [0usize; 2];
    for (h, w, seed) in [
        (5usize, 8usize, 1u64),
        (8, 5, 2),
        (6, 6, 3),
        (1, 7, 4),
        (7, 1, 5),
    ] {
        let n = h * w;
        let grad = Gradient2d::new(h, w).unwrap();
        for v in [
            trend(h, w, true, 100 + seed),
            trend(h, w, false, 200 + seed),
            random_point::<f64>(n, 1.0, 300 + seed),
        ] {
            let mean = v.sum() / n as f64;
            let duals = constant_duals_by_definition(&v, h, w);
            for q in &duals {
                // Both are dual points of the constant: ∇ᵀq = v − v̄.
                let r = &grad.adjoint(q.view()).unwrap() - &(&v - mean);
                assert!(max_abs(r.view()) < 1e-13);
            }
            for kind in [TvKind::Isotropic, TvKind::Anisotropic] {
                let bounds = [
                    dual_norm_max(&duals[0], kind),
                    dual_norm_max(&duals[1], kind),
                ];
                let tv1 = TotalVariation::new(h, w, 1.0, kind).unwrap();
                let t = tv1.constant_threshold(v.view()).unwrap();
                assert!(
                    (t - bounds[0].min(bounds[1])).abs() <= 1e-13 * (1.0 + t),
                    "{h}x{w} {kind:?}: λ̂ = {t}, bounds {bounds:?}"
                );
                // At μ = λ̂ the smaller construction certifies (rows first in a tie, to
                // rounding); at μ above both, rows first. μ = λ̂ exactly takes the closed form.
                let which = if bounds[0] <= t * (1.0 + 1e-13) { 0 } else { 1 };
                used[which] += 1;
                for (mu, want) in [(t, which), (bounds[0].max(bounds[1]) * 1.5, 0)] {
                    let tv = TotalVariation::new(h, w, mu, kind).unwrap();
                    let sol = tv.prox_certified(v.view(), 1.0).unwrap();
                    assert_eq!(sol.iterations, 0, "{h}x{w} {kind:?} μ = {mu}, {bounds:?}");
                    let dq = &sol.q - &duals[want];
                    assert!(max_abs(dq.view()) < 1e-13, "{h}x{w} {kind:?} μ = {mu}");
                    // No value where no difference exists, exactly.
                    for i in 0..h {
                        assert_eq!(sol.q[i * w + w - 1], 0.0);
                    }
                    for j in 0..w {
                        assert_eq!(sol.q[n + (h - 1) * w + j], 0.0);
                    }
                    // The gap against P(x) − D(q) = ½‖v − x‖² + μ·TV(x) − ½‖v‖² + ½‖v − ∇ᵀq‖².
                    let atq = grad.adjoint(sol.q.view()).unwrap();
                    let primal = 0.5 * (&v - &sol.x).mapv(|e| e * e).sum()
                        + mu * tv1.value(sol.x.view()).unwrap();
                    let dual = 0.5 * v.dot(&v) - 0.5 * (&v - &atq).mapv(|e| e * e).sum();
                    assert!(
                        sol.gap >= 0.0 && (sol.gap - (primal - dual)).abs() < 1e-13,
                        "{h}x{w} {kind:?}: gap {} vs {}",
                        sol.gap,
                        primal - dual
                    );
                }
            }
        }
    }
    // Both constructions were the smaller one in some case (in 1-D they coincide).
    assert!(used[0] > 0 && used[1] > 0, "{used:?}");
}

#[test]
fn rof_with_a_huge_weight_is_the_mean_image_at_once() {
    // `denoise tv --lambda 1e300` used to run 100 000 FGP iterations into overflow.
    let (h, w) = (12usize, 9usize);
    let y = random_point::<f64>(h * w, 1.0, 80);
    let mean = y.sum() / (h * w) as f64;
    for kind in [TvKind::Isotropic, TvKind::Anisotropic] {
        for lam in [1e3, 1e300] {
            let tv = TotalVariation::new(h, w, lam, kind).unwrap();
            let sol = tv.solve_rof(y.view(), 1e-10).unwrap();
            assert_eq!(sol.iterations, 0);
            // Rounding only: the closed-form dual point is exact up to ~nε.
            assert!(sol.gap.is_finite() && sol.gap < 1e-13, "{}", sol.gap);
            assert!(sol.x.iter().all(|&e| (e - mean).abs() < 1e-15));
            // The prox with a step γ uses μ = γλ: with μ = 0.01 (noise of std 1) FGP runs.
            let p = tv.prox_certified(y.view(), 0.01 / lam).unwrap();
            assert!(p.iterations > 0 && (p.x[0] - p.x[1]).abs() > 1e-6);
        }
    }
}

/// The automatic Gram choice on a tall, strongly correlated Lasso (AR(0.99) features, long
/// inner solves): it switches to the Gram inner solver after the first inner solve, and the
/// certified solution is the one of the column solver.
#[test]
fn automatic_gram_inner_solves_on_a_tall_correlated_lasso() {
    let (n, p, rho) = (2400, 120, 0.99f64);
    let z = random_point::<f64>(n * p, 1.0, 71);
    let mut a = Array2::zeros((n, p).f());
    for i in 0..n {
        a[(i, 0)] = z[i * p];
        for j in 1..p {
            a[(i, j)] = rho * a[(i, j - 1)] + (1.0 - rho * rho).sqrt() * z[i * p + j];
        }
    }
    for mut c in a.columns_mut() {
        let nrm = c.dot(&c).sqrt();
        c.mapv_inplace(|v| v / nrm);
    }
    let xt = Array1::from_shape_fn(p, |j| if j % 9 == 2 { 1.0 } else { 0.0 });
    let b = a.dot(&xt) + random_point::<f64>(n, 0.01, 72);
    let pen = LassoPenalty::L1 { weights: None };
    let lmax = LassoProblem::lambda_max(a.view(), b.view(), &pen).unwrap();
    let prob = LassoProblem::new(a, b, 0.02 * lmax, pen).unwrap();
    let solve = |gram: Option<bool>| {
        let params = CoordinateDescentParams::default()
            .with_tol(1e-13)
            .with_gram(gram);
        CoordinateDescent::new(&prob, params)
            .unwrap()
            .run(Array1::zeros(p).view(), NoObserver)
            .unwrap()
    };
    let (auto, columns) = (solve(None), solve(Some(false)));
    let flags: Vec<bool> = auto.state.trace.outer.iter().map(|o| o.gram).collect();
    assert!(!flags[0], "the first inner solve reads the columns");
    assert!(
        flags.iter().any(|&g| g),
        "{flags:?}: never switched to the Gram matrix"
    );
    assert!(columns.state.trace.outer.iter().all(|o| !o.gram));
    assert!(auto.certificate <= 1e-13 && columns.certificate <= 1e-13);
    let (oa, oc) = (prob.objective(auto.x.view()).unwrap(), columns.objective);
    assert!((oa - oc).abs() <= 1e-12 * oc, "{oa} vs {oc}");
}
