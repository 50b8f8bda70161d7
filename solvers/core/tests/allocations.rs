//! Hot loops allocate nothing: a counting global allocator measures the bytes a solver run
//! allocates with `K₁` and with `K₂ > K₁` iterations (same start, certificate out of reach).
//! Everything a run allocates once (state, buffers, the result) cancels in the difference, so
//! `bytes(K₂) − bytes(K₁)` is what `K₂ − K₁` iterations allocate, and it must be 0.
//!
//! One test function runs every case in sequence: the test harness spawns no other test
//! thread while a measurement is under way (the counter is global). The last case runs a
//! deliberately allocating smooth function through FISTA and checks that the measurement sees
//! it, so the test can fail.

use hyperprox_core::prelude::*;
use hyperprox_core::solve::{
    Fista, FistaParams, NoObserver, Pdhg, PdhgParams, Restart, StepRule, TerminationReason,
};
use hyperprox_core::testing::{allocated_by, CountingAllocator};
use ndarray::{Array1, ArrayView1, ArrayViewMut1};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Bytes allocated per extra iteration band: `min bytes(run(k2)) − min bytes(run(k1))` over
/// three runs each, after warm-up runs (lazy one-time allocations: a Lipschitz estimate,
/// rayon's thread pool). The minimum drops a stray allocation of another thread (a rayon or
/// faer worker finishing its bookkeeping); an allocation in every iteration survives it.
fn extra_bytes(k1: usize, k2: usize, run: impl Fn(usize)) -> isize {
    run(k2);
    run(k1);
    let min_of = |k: usize| (0..3).map(|_| allocated_by(|| run(k))).min().unwrap_or(0);
    let a = min_of(k1);
    let b = min_of(k2);
    b as isize - a as isize
}

fn lasso(m: usize, n: usize) -> (LeastSquares<f64, DenseMatrix<f64>>, NormL1<f64>) {
    let a = DenseMatrix::<f64>::gaussian(m, n, 3).unwrap();
    let b = Array1::from_shape_fn(m, |i| ((i * 7) % 5) as f64 - 2.0);
    (LeastSquares::new(a, b).unwrap(), NormL1::new(0.01).unwrap())
}

/// `½‖x‖²` whose gradient allocates a temporary on purpose.
struct AllocatingQuadratic;

impl Function<f64> for AllocatingQuadratic {
    fn name(&self) -> String {
        "allocating quadratic".into()
    }
    fn value(&self, x: ArrayView1<'_, f64>) -> hyperprox_core::Result<f64> {
        Ok(0.5 * x.dot(&x))
    }
    fn properties(&self) -> Properties {
        Properties::default()
    }
}

impl Smooth<f64> for AllocatingQuadratic {
    fn gradient_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
    ) -> hyperprox_core::Result<()> {
        let tmp = x.to_owned(); // the deliberate allocation
        out.assign(&tmp);
        Ok(())
    }
    fn hvp_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        _x: ArrayView1<'_, f64>,
        v: ArrayView1<'_, f64>,
    ) -> hyperprox_core::Result<()> {
        out.assign(&v);
        Ok(())
    }
    fn lipschitz(&self) -> Option<f64> {
        Some(1.0)
    }
}

fn fista_run<F: Smooth<f64>, G: Prox<f64>>(f: &F, g: &G, params: FistaParams<f64>, n: usize) {
    let x0 = Array1::from_elem(n, 0.1);
    let params = params.with_tol(0.0);
    let sol = Fista::new(f, g, params).run(x0.view(), NoObserver).unwrap();
    assert_eq!(sol.reason, TerminationReason::MaxIters, "{params:?}");
}

#[test]
fn hot_loops_allocate_nothing_after_the_first_iteration() {
    let mut report = Vec::new();
    // FISTA on a Lasso (constant step, no restart) and with backtracking + gradient restart.
    let (f, g) = lasso(40, 60);
    for (name, params) in [
        ("FISTA", FistaParams::default()),
        (
            "FISTA (backtracking, gradient restart)",
            FistaParams::default()
                .with_step(StepRule::Backtracking {
                    initial: 1.0,
                    eta: 0.5,
                })
                .with_restart(Restart::Gradient),
        ),
    ] {
        let bytes = extra_bytes(5, 45, |k| fista_run(&f, &g, params.with_max_iters(k), 60));
        report.push((name, bytes));
    }
    // The bilevel lower-level configuration: smooth (g = 0), strongly convex momentum, no
    // objective, the gradient-norm certificate at the extrapolated point.
    let zero = SqrNormL2::new(0.0).unwrap();
    let smooth = FistaParams::default()
        .with_strong_convexity(1e-3)
        .with_restart(Restart::Gradient)
        .with_track_objective(false)
        .with_certify_extrapolation(true);
    report.push((
        "FISTA (smooth, certified extrapolation)",
        extra_bytes(5, 45, |k| {
            fista_run(&f, &zero, smooth.with_max_iters(k), 60)
        }),
    ));
    // PDHG: ½‖x − y‖-type problem min ½‖x‖² + 0.1‖∇x‖₁ (gap available) and with an ℓ0 term
    // (no conjugate: the residual certificate).
    let grad = Gradient2d::new(16, 16).unwrap();
    let l1 = NormL1::new(0.1).unwrap();
    let sq = SqrNormL2::new(1.0).unwrap();
    let l0 = NormL0::new(0.1).unwrap();
    let x0 = Array1::from_shape_fn(256, |i| (i % 7) as f64 * 0.1);
    let pdhg_bytes = |f: &dyn Fn(usize)| extra_bytes(10, 50, f);
    report.push((
        "PDHG (duality gap)",
        pdhg_bytes(&|k| {
            let p = PdhgParams::default().with_tol(0.0).with_max_iters(k);
            Pdhg::new(&sq, &l1, &grad, p)
                .run(x0.view(), NoObserver)
                .unwrap();
        }),
    ));
    report.push((
        "PDHG (primal-dual residual)",
        pdhg_bytes(&|k| {
            let p = PdhgParams::default().with_tol(0.0).with_max_iters(k);
            Pdhg::new(&l0, &l1, &grad, p)
                .run(x0.view(), NoObserver)
                .unwrap();
        }),
    ));
    // The FGP solver of the TV prox, on one band (64²) and on the rayon-banded sweep (256²).
    for (name, side) in [
        ("TV prox (FGP, 64²)", 64),
        ("TV prox (FGP, 256², banded)", 256),
    ] {
        let v = Array1::from_shape_fn(side * side, |i| ((i * 13) % 17) as f64 / 17.0);
        let bytes = extra_bytes(10, 50, |k| {
            let tv = TotalVariation::new(side, side, 0.2, TvKind::Isotropic)
                .unwrap()
                .with_tolerance(1e-300, k)
                .unwrap();
            assert!(tv.prox_certified(v.view(), 1.0).is_err());
        });
        report.push((name, bytes));
    }
    // The measurement can fail: a gradient that allocates 60 floats per call is seen.
    let caught = extra_bytes(5, 45, |k| {
        fista_run(
            &AllocatingQuadratic,
            &zero,
            FistaParams::default()
                .with_step(StepRule::Constant(0.1))
                .with_max_iters(k),
            60,
        )
    });
    assert!(
        caught >= (40 * 60 * 8) as isize,
        "a deliberately allocating step must be seen: {caught} bytes"
    );
    let bad: Vec<_> = report.iter().filter(|(_, b)| *b != 0).collect();
    assert!(
        bad.is_empty(),
        "bytes allocated by the extra iterations: {bad:?}"
    );
}
