//! Neural-network training throughput: forward, cross-entropy and backward of the MLP
//! 64-256-256-10 and the small CNN (conv 16, conv 32, 3×3, max pooling) at batch 128 in f32,
//! next to one plain 128×256×256 GEMM of the same run (the baseline). PyTorch on the same
//! machine is measured by `benches/peers_nn.py`.
//!
//! `cargo bench --bench nn`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hyperprox::core::linalg::Real;
use hyperprox::core::nn::train::{in_pool, Arch, StepCase};
use hyperprox::core::nn::ImageShape;
use ndarray::Array2;
use std::hint::black_box;

fn bench_nn(c: &mut Criterion) {
    let mut group = c.benchmark_group("nn training step batch=128 f32");
    group.sample_size(10);
    group.throughput(Throughput::Elements(128));
    let a = Array2::<f32>::from_elem((128, 256), 0.5);
    let w = Array2::<f32>::from_elem((256, 256), 0.01);
    group.bench_function("gemm-128x256x256 (baseline)", |b| {
        b.iter(|| {
            let mut out = Array2::<f32>::zeros((128, 256));
            f32::gemm(out.view_mut(), a.view(), w.view(), 1.0, false);
            black_box(out[(0, 0)])
        })
    });
    let input = ImageShape::new(1, 8, 8);
    for arch in ["mlp:256,256", "cnn:16,32"] {
        let mut case =
            StepCase::<f32>::new(&Arch::parse(arch).unwrap(), input, 10, 128, 0).unwrap();
        group.bench_function(format!("{arch}-forward-backward"), |b| {
            b.iter(|| in_pool(|| black_box(case.step().unwrap())))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_nn);
criterion_main!(benches);
