//! Bilevel benchmarks on the TV-denoising case of `hyperprox::bench_cases` (6 shipped Kodak
//! images at 96², θ₀ = (−5, −5)): one implicit hypergradient at ε = δ = 1e-4 and at 1e-8 (cold
//! start), and the unrolled hypergradient through 100 gradient steps.
//!
//! `cargo bench --bench bilevel`

use criterion::{criterion_group, criterion_main, Criterion};
use hyperprox::bench_cases::tv_bilevel_case;
use hyperprox::bilevel::{BilevelProblem, Estimates, Oracle};
use std::hint::black_box;

fn bench_hypergradients(c: &mut Criterion) {
    let p = tv_bilevel_case(6, 96).unwrap();
    let o = Oracle::new(&p);
    let theta = p.theta_start();
    let x0 = p.x_start();
    let mut group = c.benchmark_group("tv 6x96 hypergradient");
    group.sample_size(10);
    for eps in [1e-4, 1e-8] {
        group.bench_function(format!("implicit eps=delta={eps:.0e}"), |b| {
            b.iter(|| {
                black_box(
                    o.hypergradient(theta.view(), x0.view(), eps, eps, &mut Estimates::default())
                        .unwrap(),
                )
            })
        });
    }
    group.bench_function("unrolled K=100", |b| {
        b.iter(|| black_box(o.unrolled(theta.view(), x0.view(), 100).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench_hypergradients);
criterion_main!(benches);
