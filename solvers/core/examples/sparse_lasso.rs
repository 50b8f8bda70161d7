//! A Lasso and an ℓ1-logistic regression on a sparse design (CSR built from triplets, stored in
//! columns), each certified by its duality gap, beside the same problems with the matrix
//! stored dense: same objective, time ratio of the same run.
//!
//! `cargo run --release -p hyperprox-core --example sparse_lasso`; `SPARSE_NPZ=FILE.npz` (a
//! `scipy.sparse.save_npz` file) with `SPARSE_B=b.npy` solves that design instead.
use hyperprox_core::io::{read_design, read_npy_1d};
use hyperprox_core::ops::CsrMatrix;
use hyperprox_core::solve::{
    CoordinateDescent, CoordinateDescentParams, Design, LassoPenalty, LassoProblem, LogisticCd,
    LogisticL1Problem, NoObserver,
};
use ndarray::Array1;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn main() -> hyperprox_core::Result<()> {
    let (design, b) = match (std::env::var("SPARSE_NPZ"), std::env::var("SPARSE_B")) {
        (Ok(a), Ok(b)) => (read_design(a)?, read_npy_1d(b)?),
        _ => {
            // 20000 × 4000 with 0.25 % nonzeros (uniform values), 100 true features.
            let (n, p) = (20_000, 4_000);
            let mut rng = rand::rngs::StdRng::seed_from_u64(1);
            let mut trip = Vec::new();
            for i in 0..n {
                for j in 0..p {
                    if rng.random::<f64>() < 2.5e-3 {
                        trip.push((i, j, rng.random::<f64>() * 2.0 - 1.0));
                    }
                }
            }
            let a = CsrMatrix::from_triplets(n, p, &trip)?;
            let xt = Array1::from_shape_fn(p, |j| if j % 40 == 0 { 1.0 } else { 0.0 });
            let noise = Array1::from_shape_fn(n, |_| 0.01 * (rng.random::<f64>() - 0.5));
            let b = &hyperprox_core::solve::DesignRef::from(&a).apply(xt.view()) + &noise;
            (Design::from(a), b)
        }
    };
    let dense = Design::from(design.to_dense()).into_column_major();
    let (n, p) = design.dim();
    println!(
        "design {n}×{p}, {} nonzeros ({:.3} %)",
        design.nnz(),
        100.0 * design.nnz() as f64 / (n * p) as f64
    );
    let pen = LassoPenalty::L1 { weights: None };
    let lam = 0.1 * LassoProblem::lambda_max(&design, b.view(), &pen)?;
    let x0 = Array1::zeros(p);
    let mut times = Vec::new();
    for (name, d) in [("sparse", &design), ("dense", &dense)] {
        let prob = LassoProblem::with_design(d.clone(), b.clone(), lam, pen.clone())?;
        let t = Instant::now();
        let s = CoordinateDescent::new(&prob, CoordinateDescentParams::default())?
            .run(x0.view(), NoObserver)?;
        let dt = t.elapsed().as_secs_f64();
        times.push(dt);
        println!(
            "Lasso, {name:6}: objective {:.12e}, gap {:.1e}, {} nonzeros, {:.1} ms",
            s.objective,
            s.certificate,
            s.x.iter().filter(|v| **v != 0.0).count(),
            dt * 1e3
        );
    }
    println!("Lasso sparse / dense time: {:.2}", times[0] / times[1]);
    let y = b.mapv(|v| if v > 0.0 { 1.0 } else { -1.0 });
    let lam = 0.1 * LogisticL1Problem::lambda_max(&design, y.view());
    times.clear();
    for (name, d) in [("sparse", &design), ("dense", &dense)] {
        let prob = LogisticL1Problem::with_design(d.clone(), y.clone(), lam)?;
        let t = Instant::now();
        let s = LogisticCd::new(&prob, CoordinateDescentParams::default())?
            .run(x0.view(), NoObserver)?;
        let dt = t.elapsed().as_secs_f64();
        times.push(dt);
        println!(
            "ℓ1-logistic, {name:6}: objective {:.12e}, gap {:.1e}, {:.1} ms",
            s.objective,
            s.certificate,
            dt * 1e3
        );
    }
    println!(
        "ℓ1-logistic sparse / dense time: {:.2}",
        times[0] / times[1]
    );
    Ok(())
}
