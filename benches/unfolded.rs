//! Deep-unfolding training throughput: one forward + backward pass (supervised loss) of
//! T = 16 layers on a minibatch of 64 at N = 500, M = 250, per model, next to 16 plain ISTA
//! iterations on the same batch (the baseline of the same run).
//!
//! `cargo bench --bench unfolded`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hyperprox::bench_cases::unfolded_case;
use hyperprox::unfolded::baselines::ista;
use hyperprox::unfolded::train::{loss_and_grad_ws, loss_for, TrainWorkspace};
use hyperprox::unfolded::{LossKind, Penalty, UnfoldedModel};
use std::hint::black_box;

fn bench_unfolded(c: &mut Criterion) {
    let (problem, batch, models) = unfolded_case().unwrap();
    let mut group = c.benchmark_group("unfolded T=16 N=500 M=250 batch=64");
    group.sample_size(10);
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("ista-16-forward-only", |b| {
        b.iter(|| black_box(ista(&problem, batch.y.view(), 0.1, Penalty::L1, 16).unwrap()))
    });
    for m in &models {
        let loss = loss_for(m, &problem, LossKind::Supervised);
        // One workspace per model, reused across iterations, as in training.
        let mut ws = TrainWorkspace::default();
        group.bench_function(format!("{}-forward-backward", m.name()), |b| {
            b.iter(|| {
                let (v, g) = loss_and_grad_ws(m, loss.as_ref(), &batch, 16, &mut ws).unwrap();
                black_box((v, g.len()))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_unfolded);
criterion_main!(benches);
