//! Solver benchmarks on the cases of `hyperprox::bench_cases` (the same as `hyperprox bench`):
//! Lasso 500×2000 to an absolute gap of 1e-8 (CD with working sets on row- and column-major A,
//! plain screened CD, FISTA, ADMM) and ROF 256²/512² to a
//! certified relative objective error of 1e-4 (FGP at 256² and 512², PDHG at 256²; PDHG at 512²
//! takes ~20 s per run and is only in `hyperprox bench`).
//!
//! A sparse Lasso (20000×5000, 0.2 % nonzeros, CSC) by CD with working sets and plain CD, with
//! the same matrix stored dense as the baseline of the same run.
//!
//! `cargo bench --bench solvers`

use criterion::{criterion_group, criterion_main, Criterion};
use hyperprox::bench_cases::{lasso_case, rof_case};
use hyperprox::prelude::*;
use ndarray::{Array1, ShapeBuilder};
use std::hint::black_box;

fn bench_lasso(c: &mut Criterion) {
    let prob = lasso_case(0).unwrap();
    let p = prob.n_features();
    let mut group = c.benchmark_group("lasso 500x2000 gap 1e-8");
    group.sample_size(10);
    // Working sets with Anderson and dual extrapolation (the default), against plain
    // screened epochs (the baseline of the same run), on A row-major (a transposed copy per
    // solve) and column-major (no copy).
    let dense = prob.a().expect("the bench case is dense");
    let mut fortran = ndarray::Array2::zeros(dense.dim().f());
    fortran.assign(&dense);
    let prob_f = LassoProblem::new(
        fortran,
        prob.b().to_owned(),
        prob.lambda(),
        prob.penalty().clone(),
    )
    .unwrap();
    for (name, pr, ws) in [
        ("cd", &prob, true),
        ("cd column-major A", &prob_f, true),
        ("cd plain epochs", &prob, false),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let params = CoordinateDescentParams::default()
                    .with_tol(1e-8)
                    .with_working_sets(ws);
                let cd = CoordinateDescent::new(pr, params).unwrap();
                black_box(cd.run(Array1::zeros(p).view(), NoObserver).unwrap())
            })
        });
    }
    let f = prob.smooth_part().unwrap();
    let g = prob.penalty_function().unwrap();
    group.bench_function("fista", |b| {
        b.iter(|| {
            let s = Fista::new(&f, &*g, FistaParams::default().with_tol(1e-8))
                .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x.view()))
                .run(Array1::zeros(p).view(), NoObserver)
                .unwrap();
            black_box(s)
        })
    });
    let a_op = DenseMatrix::new(dense.to_owned()).unwrap();
    let n = prob.n_samples() as f64;
    let scaled = LassoProblem::new(
        dense.to_owned(),
        prob.b().to_owned(),
        n * prob.lambda(),
        prob.penalty().clone(),
    )
    .unwrap();
    let g2 = scaled.penalty_function().unwrap();
    group.bench_function("admm", |b| {
        b.iter(|| {
            let s = Admm::dense(
                &a_op,
                prob.b().to_owned(),
                &*g2,
                AdmmParams::default().with_tol(1e-8),
            )
            .unwrap()
            .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x.view()))
            .run(Array1::zeros(p).view(), NoObserver)
            .unwrap();
            black_box(s)
        })
    });
    group.finish();
}

fn bench_rof(c: &mut Criterion) {
    let mut group = c.benchmark_group("rof rel 1e-4");
    group.sample_size(10);
    for size in [256usize, 512] {
        let (noisy, _) = rof_case(size, 0).unwrap();
        let y = Array1::from_iter(noisy.iter().copied());
        group.bench_function(format!("fgp {size}"), |b| {
            b.iter(|| {
                let tv = TotalVariation::new(size, size, 0.1, TvKind::Isotropic).unwrap();
                black_box(tv.solve_rof(y.view(), 1e-4).unwrap())
            })
        });
        if size == 256 {
            let grad = Gradient2d::new(size, size).unwrap();
            let fq = Translate::new(SqrNormL2::new(1.0).unwrap(), y.clone()).unwrap();
            let n = size * size;
            let pairs: Vec<Vec<usize>> = (0..n).map(|p| vec![p, n + p]).collect();
            let gl = NormL21::new(Groups::new(2 * n, pairs).unwrap(), 0.1).unwrap();
            group.bench_function(format!("pdhg {size}"), |b| {
                b.iter(|| {
                    let s = Pdhg::new(
                        &fq,
                        &gl,
                        &grad,
                        PdhgParams::default().with_tol(1e-4).relative(true),
                    )
                    .run(y.view(), NoObserver)
                    .unwrap();
                    black_box(s)
                })
            });
        }
    }
    group.finish();
}

fn bench_sparse_lasso(c: &mut Criterion) {
    use rand::{Rng, SeedableRng};
    let (n, p, density) = (20_000, 5_000, 2e-3);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut trip = Vec::new();
    for i in 0..n {
        for j in 0..p {
            if rng.random::<f64>() < density {
                trip.push((i, j, rng.random::<f64>() * 2.0 - 1.0));
            }
        }
    }
    let csr = CsrMatrix::from_triplets(n, p, &trip).unwrap();
    let dense = csr.to_dense();
    let xt = Array1::from_shape_fn(p, |j| if j % 40 == 0 { 1.0 } else { 0.0 });
    let b = &dense.dot(&xt) + &Array1::from_shape_fn(n, |i| 0.01 * ((i * 7919) % 13) as f64);
    let pen = LassoPenalty::L1 { weights: None };
    let lam = 0.1 * LassoProblem::lambda_max(&csr, b.view(), &pen).unwrap();
    let sparse = LassoProblem::with_design(Design::from(csr), b.clone(), lam, pen.clone()).unwrap();
    let mut fortran = ndarray::Array2::zeros(dense.dim().f());
    fortran.assign(&dense);
    let dense = LassoProblem::new(fortran, b, lam, pen).unwrap();
    let mut group = c.benchmark_group("sparse lasso 20000x5000 density 2e-3 gap 1e-8");
    group.sample_size(10);
    for (name, prob) in [("csc", &sparse), ("dense", &dense)] {
        for ws in [true, false] {
            let params = CoordinateDescentParams::default().with_working_sets(ws);
            let label = format!("cd {name}{}", if ws { "" } else { " no working sets" });
            group.bench_function(label, |bch| {
                bch.iter(|| {
                    let s = CoordinateDescent::new(prob, params)
                        .unwrap()
                        .run(Array1::zeros(p).view(), NoObserver)
                        .unwrap();
                    black_box(s)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_lasso, bench_rof, bench_sparse_lasso);
criterion_main!(benches);
