//! A DU-ISTA (and DU-IHT) forward + backward pass allocates nothing once its workspace exists:
//! a counting global allocator measures `Unrolled::value_and_grad_ws` after warm-up calls.
//! The same measurement sees the allocations of a network whose blocks use the allocating
//! default path (LISTA-CP), so the test can fail.
//!
//! One test function runs every case in sequence (the counter is global).

use hyperprox_core::diff::{SquaredError, UnrolledWorkspace};
use hyperprox_core::testing::{allocated_by, CountingAllocator};
use hyperprox_unfolded::train::{loss_and_grad_ws, loss_for, TrainWorkspace};
use hyperprox_unfolded::{
    sample, LossKind, ModelKind, ModelSpec, Problem, Signal, Unfolded, UnfoldedModel,
};
use ndarray::Array2;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The fewest bytes one call of `f` allocates over three calls, after two warm-up calls (the
/// minimum drops a stray allocation of a worker thread; one in every call survives it).
fn bytes_per_call(mut f: impl FnMut()) -> usize {
    f();
    f();
    (0..3).map(|_| allocated_by(&mut f)).min().unwrap_or(0)
}

#[test]
fn du_ista_forward_backward_allocates_nothing_after_the_first_call() {
    // (M, N, batch): a small case (sequential kernels) and the paper's size (parallel GEMMs).
    for (m, n, b) in [(30, 60, 8), (250, 500, 64)] {
        let problem = Problem::gaussian(m, n, 1).unwrap();
        let batch = sample(&problem, &Signal::default(), b, 2).unwrap();
        let x0 = Array2::<f64>::zeros((b, n));
        for kind in [ModelKind::DuIsta, ModelKind::DuIht, ModelKind::ListaCp] {
            let model = Unfolded::new(ModelSpec::new(kind, 8), &problem).unwrap();
            let (net, p) = (model.net(), model.params());
            let (y, x) = (batch.y.view(), batch.x.view());
            let mut ws = UnrolledWorkspace::default();
            // The workspace path computes what the allocating path computes, bit for bit.
            let (v_ws, g_ws) = net
                .value_and_grad_ws(&mut ws, p, x0.view(), y, 8, &SquaredError, x)
                .map(|(v, g)| (v, g.to_vec()))
                .unwrap();
            let (v, g) = net
                .value_and_grad(p, x0.view(), y, 8, &SquaredError, x)
                .unwrap();
            assert_eq!((v_ws, &g_ws), (v, &g), "{kind:?}");
            let bytes = bytes_per_call(|| {
                net.value_and_grad_ws(&mut ws, p, x0.view(), y, 8, &SquaredError, x)
                    .unwrap();
            });
            // Training's entry point (supervised loss) is the same path.
            let mut tw = TrainWorkspace::default();
            let loss = loss_for(&model, &problem, LossKind::Supervised);
            let train_bytes = bytes_per_call(|| {
                loss_and_grad_ws(&model, loss.as_ref(), &batch, 8, &mut tw).unwrap();
            });
            assert_eq!(
                train_bytes == 0,
                bytes == 0,
                "{kind:?}: {train_bytes} vs {bytes}"
            );
            match kind {
                ModelKind::ListaCp => assert!(
                    bytes >= 8 * b * n * 8,
                    "{kind:?} ({m}×{n}): the allocating default path must be seen ({bytes} B)"
                ),
                _ => assert_eq!(
                    bytes, 0,
                    "{kind:?} ({m}×{n}): {bytes} B per forward+backward"
                ),
            }
        }
    }
}
