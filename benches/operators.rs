//! Operator and prox throughput. Ratios that matter: FFT vs direct convolution for small and
//! large kernels, faer GEMV vs a plain loop, and the TV prox per certified solve.
//!
//! `cargo bench --bench operators`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hyperprox::prelude::*;
use ndarray::{Array1, Array2};
use std::hint::black_box;

fn image(n: usize) -> Array1<f64> {
    Array1::from_shape_fn(n * n, |i| ((i * 7919) % 255) as f64 / 255.0)
}

fn bench_gradient(c: &mut Criterion) {
    let g = Gradient2d::new(256, 256).unwrap();
    let x = image(256);
    let mut y = Array1::zeros(2 * 256 * 256);
    let mut z = Array1::zeros(256 * 256);
    c.bench_function("gradient2d 256² apply+adjoint", |b| {
        b.iter(|| {
            g.apply_into(y.view_mut(), x.view()).unwrap();
            g.adjoint_into(z.view_mut(), y.view()).unwrap();
            black_box(&z);
        })
    });
}

fn bench_conv(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d 256² reflect");
    let x = image(256);
    let mut y = Array1::zeros(256 * 256);
    for k in [3usize, 9, 15] {
        let ker = Conv2d::<f64>::gaussian_kernel(k, k as f64 / 4.0).unwrap();
        for (name, m) in [("direct", ConvMethod::Direct), ("fft", ConvMethod::Fft)] {
            let op = Conv2d::new(256, 256, ker.clone(), Boundary::Reflect, m).unwrap();
            group.bench_with_input(BenchmarkId::new(name, k), &k, |b, _| {
                b.iter(|| {
                    op.apply_into(y.view_mut(), x.view()).unwrap();
                    black_box(&y);
                })
            });
        }
    }
    group.finish();
}

fn bench_dense(c: &mut Criterion) {
    let a = DenseMatrix::<f64>::gaussian(500, 2000, 1).unwrap();
    let am: Array2<f64> = a.matrix().to_owned();
    let x = Array1::from_shape_fn(2000, |i| (i as f64).sin());
    let mut y = Array1::zeros(500);
    let mut group = c.benchmark_group("gemv 500x2000");
    group.bench_function("faer", |b| {
        b.iter(|| {
            a.apply_into(y.view_mut(), x.view()).unwrap();
            black_box(&y);
        })
    });
    group.bench_function("plain loop", |b| {
        b.iter(|| {
            for i in 0..500 {
                let mut s = 0.0;
                for j in 0..2000 {
                    s += am[(i, j)] * x[j];
                }
                y[i] = s;
            }
            black_box(&y);
        })
    });
    group.finish();
}

fn bench_tv_prox(c: &mut Criterion) {
    let tv = TotalVariation::new(64, 64, 0.1, TvKind::Isotropic)
        .unwrap()
        .with_tolerance(1e-4, 100_000)
        .unwrap();
    let x = image(64);
    let mut group = c.benchmark_group("tv prox 64² (certified 1e-4)");
    group.sample_size(10);
    group.bench_function("fgp", |b| {
        b.iter(|| black_box(tv.prox(x.view(), 1.0).unwrap()))
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_gradient,
    bench_conv,
    bench_dense,
    bench_tv_prox
);
criterion_main!(benches);
