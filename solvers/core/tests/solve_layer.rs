//! The solver-as-a-layer: Lasso and TV denoising differentiated by unrolling and implicitly,
//! each against finite differences and against each other.

use hyperprox_core::diff::{check_block, Differentiable, Differentiation, Regularizer, SolveLayer};
use hyperprox_core::func::{NormL1, SmoothedTv, SqrNormL2, TvKind};
use hyperprox_core::ops::{DenseMatrix, Identity, LinearOperator};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::sync::Arc;

fn randn(r: usize, c: usize, seed: u64) -> Array2<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((r, c), |_| StandardNormal.sample(&mut rng))
}

const IMPLICIT: Differentiation = Differentiation::Implicit {
    tol: 1e-13,
    max_iters: 200_000,
    cg_tol: 1e-13,
};

/// A 15 × 25 Lasso with λ = e^θ at a third of λ_max of the first row (a few active coordinates).
fn lasso(mode: Differentiation) -> (SolveLayer<f64>, Vec<f64>, Array2<f64>) {
    let a = randn(15, 25, 1);
    let y = randn(2, 15, 2);
    let lmax = a
        .t()
        .dot(&y.row(0))
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let op: Arc<dyn LinearOperator<f64>> = Arc::new(DenseMatrix::new(a).unwrap());
    let reg = Regularizer::Prox(Arc::new(NormL1::new(1.0).unwrap()));
    (
        SolveLayer::new(op, reg, mode).unwrap(),
        vec![(lmax / 3.0).ln()],
        y,
    )
}

/// Smoothed-TV denoising of two 6 × 6 images (`A = I`, ν = 0.05).
fn tv(mode: Differentiation) -> (SolveLayer<f64>, Vec<f64>, Array2<f64>) {
    let op: Arc<dyn LinearOperator<f64>> = Arc::new(Identity::new(36));
    let r = SmoothedTv::new(6, 6, 1.0, 0.05, TvKind::Isotropic).unwrap();
    let reg = Regularizer::Smooth(Arc::new(r));
    let y = randn(2, 36, 3) * 0.3 + 0.5;
    (
        SolveLayer::new(op, reg, mode).unwrap(),
        vec![(0.2f64).ln()],
        y,
    )
}

fn vjp(layer: &SolveLayer<f64>, p: &[f64], y: &Array2<f64>, g: &Array2<f64>) -> (Array2<f64>, f64) {
    let mut gp = vec![0.0];
    let c = Array2::zeros((y.nrows(), 0));
    let gy = layer.vjp(p, y.view(), c.view(), g.view(), &mut gp).unwrap();
    (gy, gp[0])
}

fn rel(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    (a - b).mapv(|e| e * e).sum().sqrt() / b.mapv(|e| e * e).sum().sqrt()
}

#[test]
fn lasso_layer_derivatives_match_finite_differences() {
    let c = Array2::zeros((2, 0));
    let (l, p, y) = lasso(Differentiation::Unrolled { iters: 40 });
    let r = check_block(&l, &p, y.view(), c.view(), 5, 1e-6).unwrap();
    eprintln!("lasso unrolled: {r:?}");
    assert!(r.worst() < 1e-6, "{r:?}");
    let (l, p, y) = lasso(IMPLICIT);
    let r = check_block(&l, &p, y.view(), c.view(), 5, 1e-5).unwrap();
    eprintln!("lasso implicit: {r:?}");
    assert!(r.worst() < 1e-5, "{r:?}");
}

#[test]
fn tv_layer_derivatives_match_finite_differences() {
    let c = Array2::zeros((2, 0));
    let (l, p, y) = tv(Differentiation::Unrolled { iters: 30 });
    let r = check_block(&l, &p, y.view(), c.view(), 5, 1e-6).unwrap();
    eprintln!("tv unrolled: {r:?}");
    assert!(r.worst() < 1e-6, "{r:?}");
    let (l, p, y) = tv(IMPLICIT);
    let r = check_block(&l, &p, y.view(), c.view(), 5, 1e-5).unwrap();
    eprintln!("tv implicit: {r:?}");
    assert!(r.worst() < 1e-5, "{r:?}");
}

#[test]
fn unrolling_converges_to_the_implicit_derivative() {
    for (name, make) in [
        (
            "lasso",
            lasso as fn(Differentiation) -> (SolveLayer<f64>, Vec<f64>, Array2<f64>),
        ),
        ("tv", tv),
    ] {
        let (imp, p, y) = make(IMPLICIT);
        let g = randn(y.nrows(), imp.out_dim(), 9);
        let (gy_i, gl_i) = vjp(&imp, &p, &y, &g);
        let mut prev = f64::INFINITY;
        for k in [20, 200, 4000] {
            let (unr, _, _) = make(Differentiation::Unrolled { iters: k });
            let (gy_u, gl_u) = vjp(&unr, &p, &y, &g);
            let e = rel(&gy_u, &gy_i).max((gl_u - gl_i).abs() / gl_i.abs());
            eprintln!("{name}: K = {k}: {e:.2e}");
            assert!(e < prev, "{name}: the error must shrink with K");
            prev = e;
        }
        assert!(prev < 1e-6, "{name}: {prev}");
        // And the forward passes agree.
        let c = Array2::zeros((y.nrows(), 0));
        let (unr, _, _) = make(Differentiation::Unrolled { iters: 4000 });
        let xu = unr.forward(&p, y.view(), c.view()).unwrap();
        let xi = imp.forward(&p, y.view(), c.view()).unwrap();
        assert!(rel(&xu, &xi) < 1e-8, "{name}");
    }
}

#[test]
fn implicit_mode_refuses_a_prox_whose_jacobian_is_not_a_projection() {
    let op: Arc<dyn LinearOperator<f64>> = Arc::new(DenseMatrix::new(randn(6, 4, 1)).unwrap());
    let reg = Regularizer::Prox(Arc::new(SqrNormL2::new(1.0).unwrap()));
    let l = SolveLayer::new(op, reg, IMPLICIT).unwrap();
    let y = randn(1, 6, 2);
    let c = Array2::zeros((1, 0));
    let g = randn(1, 4, 3);
    let mut gp = vec![0.0];
    assert!(l
        .vjp(&[0.0], y.view(), c.view(), g.view(), &mut gp)
        .is_err());
    // Bad settings and inputs.
    let op: Arc<dyn LinearOperator<f64>> = Arc::new(Identity::new(3));
    let reg = Regularizer::Prox(Arc::new(NormL1::new(1.0).unwrap()));
    assert!(SolveLayer::new(
        op.clone(),
        reg.clone(),
        Differentiation::Unrolled { iters: 0 }
    )
    .is_err());
    let l = SolveLayer::new(op, reg, IMPLICIT).unwrap();
    let bad = ndarray::array![[1.0, f64::NAN, 0.0]];
    assert!(l
        .forward(&[0.0], bad.view(), Array2::zeros((1, 0)).view())
        .is_err());
    assert!(l
        .forward(
            &[0.0],
            Array2::zeros((1, 2)).view(),
            Array2::zeros((1, 0)).view()
        )
        .is_err());
}

#[test]
fn the_saved_forward_gives_the_same_vjp() {
    let (l, p, y) = lasso(IMPLICIT);
    let c = Array2::zeros((2, 0));
    let g = randn(2, 25, 4);
    let (x, saved) = l.forward_save(&p, y.view(), c.view()).unwrap();
    assert_eq!(x, l.forward(&p, y.view(), c.view()).unwrap());
    let mut gp1 = vec![0.0];
    let a = l
        .vjp_saved(&p, y.view(), c.view(), &saved, g.view(), &mut gp1)
        .unwrap();
    let (b, gl) = vjp(&l, &p, &y, &g);
    assert_eq!(a, b);
    assert_eq!(gp1[0], gl);
}
