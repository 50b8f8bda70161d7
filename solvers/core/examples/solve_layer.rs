//! A certified solver inside a trainable model: a Lasso solve (a `SolveLayer` with a learnable
//! λ, differentiated implicitly) followed by a dense layer (which learns to undo the Lasso's
//! shrinkage bias), trained end to end with Adam on the squared error to the true signals.
//!
//! Data: x ∈ ℝ⁶⁰ with 5 nonzero ±1 entries, y = A x + 0.05·noise, A Gaussian 30 × 60 scaled by
//! 1/√30. The model starts as the plain Lasso at λ = 0.5 (identity dense layer); training
//! moves λ and the correction together.
//!
//! Run: `cargo run --release -p hyperprox-core --example solve_layer`

use hyperprox_core::diff::{Differentiable, Differentiation, Regularizer, SolveLayer};
use hyperprox_core::error::Result;
use hyperprox_core::func::NormL1;
use hyperprox_core::nn::optim::{Method, OptimConfig, ParamOptimizer};
use hyperprox_core::nn::{Dense, Layer, Sequential};
use hyperprox_core::ops::{DenseMatrix, LinearOperator};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use std::sync::Arc;

/// `b` sparse signals and their measurements.
fn data(a: &Array2<f64>, b: usize, rng: &mut StdRng) -> (Array2<f64>, Array2<f64>) {
    let (m, n) = a.dim();
    let mut x = Array2::zeros((b, n));
    for mut r in x.rows_mut() {
        for _ in 0..5 {
            r[rng.random_range(0..n)] = if rng.random::<bool>() { 1.0 } else { -1.0 };
        }
    }
    let noise = Array2::from_shape_fn((b, m), |_| 0.05 * rng.sample::<f64, _>(StandardNormal));
    (x.dot(&a.t()) + noise, x)
}

/// Mean squared error per signal of the model's output.
fn mse(net: &Sequential, p: &[f64], y: &Array2<f64>, x: &Array2<f64>) -> Result<f64> {
    let out = net.forward(p, y.view(), Array2::zeros((y.nrows(), 0)).view())?;
    Ok((&out - x).mapv(|e| e * e).sum() / x.nrows() as f64)
}

fn main() -> Result<()> {
    let (m, n) = (30, 60);
    let mut rng = StdRng::seed_from_u64(0);
    let a = Array2::from_shape_fn((m, n), |_| {
        rng.sample::<f64, _>(StandardNormal) / (m as f64).sqrt()
    });
    let op: Arc<dyn LinearOperator<f64>> = Arc::new(DenseMatrix::new(a.clone())?);
    let mode = Differentiation::Implicit {
        tol: 1e-9,
        max_iters: 100_000,
        cg_tol: 1e-10,
    };
    let lasso = SolveLayer::new(op, Regularizer::Prox(Arc::new(NormL1::new(1.0)?)), mode)?;
    let net = Sequential::new(vec![
        Arc::new(lasso) as Arc<dyn Layer>,
        Arc::new(Dense::new(n, n)),
    ])?;
    // Start: λ = 0.5, dense layer = identity, bias 0.
    let mut p = vec![0.5f64.ln()];
    let mut w = Array2::<f64>::eye(n).into_raw_vec_and_offset().0;
    w.extend(vec![0.0; n]);
    p.extend(w);

    let (y_test, x_test) = data(&a, 200, &mut rng);
    println!(
        "start: λ = {:.3}, test MSE {:.4}",
        p[0].exp(),
        mse(&net, &p, &y_test, &x_test)?
    );
    let mut cfg = OptimConfig::for_groups(
        Method::by_name("adam")?,
        1e-3,
        &net.param_groups(),
        0.0,
        false,
    );
    // The solver's log λ (group "0.log_lambda") learns 20 times faster than the dense layer.
    cfg.groups[0].lr_scale = 20.0;
    let mut opt = ParamOptimizer::new(cfg, p.len())?;
    let e = Array2::zeros((32, 0));
    for step in 1..=300 {
        let (y, x) = data(&a, 32, &mut rng);
        let (out, saved) = net.forward_save(&p, y.view(), e.view())?;
        let g = (&out - &x) * (2.0 / 32.0);
        let mut gp = vec![0.0; p.len()];
        net.vjp_saved(&p, y.view(), e.view(), &saved, g.view(), &mut gp)?;
        opt.step(&mut p, &gp)?;
        if step % 100 == 0 {
            println!(
                "step {step}: λ = {:.3}, test MSE {:.4}",
                p[0].exp(),
                mse(&net, &p, &y_test, &x_test)?
            );
        }
    }
    // The plain Lasso at the best λ of a grid, for comparison.
    let mut best = (f64::INFINITY, 0.0);
    for k in 0..12 {
        let lam = 0.005 * 1.6f64.powi(k);
        let mut q = p.clone();
        q[0] = lam.ln();
        let eye = Array2::<f64>::eye(n).into_raw_vec_and_offset().0;
        q[1..1 + n * n].copy_from_slice(&eye);
        q[1 + n * n..].fill(0.0);
        let e = mse(&net, &q, &y_test, &x_test)?;
        if e < best.0 {
            best = (e, lam);
        }
    }
    println!(
        "plain Lasso at its best grid λ = {:.3}: test MSE {:.4}",
        best.1, best.0
    );
    Ok(())
}
