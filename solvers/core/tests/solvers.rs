//! Classical solvers against known solutions and their published guarantees.

use hyperprox_core::prelude::*;
use hyperprox_core::testing::random_point;
use ndarray::{Array1, Array2, ArrayView1};

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
            .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x));
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
        .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x))
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
