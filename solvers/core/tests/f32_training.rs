//! The learning primitives in single precision: an unrolled DU-ISTA-type network
//! (`x + γAᵀ(y − Ax)`, then a learned soft threshold, per layer) built, differentiated and
//! trained with `f32` blocks and `Adam<f32>`, against the same network in `f64`.

use hyperprox_core::diff::{
    Adam, BatchLoss, Chain, Differentiable, ResidualStep, SoftThreshold, SquaredError, Unrolled,
};
use hyperprox_core::linalg::Real;
use ndarray::Array2;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::sync::Arc;

const M: usize = 12;
const N: usize = 20;
const B: usize = 16;
const K: usize = 4;

/// `(A, x_true, y = A x_true)` in f64, `A` with columns of norm about 1, `x` 3-sparse rows.
fn data() -> (Array2<f64>, Array2<f64>, Array2<f64>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut g = || -> f64 { StandardNormal.sample(&mut rng) };
    let a = Array2::from_shape_fn((M, N), |_| g() / (M as f64).sqrt());
    let x = Array2::from_shape_fn(
        (B, N),
        |(b, j)| if (b + 2 * j) % 7 == 0 { g() } else { 0.0 },
    );
    let y = x.dot(&a.t());
    (a, x, y)
}

fn network<T: Real>(a: &Array2<f64>) -> Unrolled<T> {
    let a_t: Arc<Array2<T>> = Arc::new(a.mapv(T::c));
    let layers: Vec<Box<dyn Differentiable<T>>> = (0..K)
        .map(|_| {
            let step = ResidualStep::scaled(a_t.clone(), a_t.clone()).unwrap();
            let blocks: Vec<Box<dyn Differentiable<T>>> =
                vec![Box::new(step), Box::new(SoftThreshold::scalar(N))];
            Box::new(Chain::new(blocks).unwrap()) as Box<dyn Differentiable<T>>
        })
        .collect();
    Unrolled::new(layers).unwrap()
}

/// Step 0.3 and threshold 0.01 per layer.
fn init<T: Real>() -> Vec<T> {
    (0..K).flat_map(|_| [T::c(0.3), T::c(0.01)]).collect()
}

#[test]
fn f32_gradients_match_f64_and_f32_training_descends() {
    let (a, x, y) = data();
    let (x32, y32) = (x.mapv(|v| v as f32), y.mapv(|v| v as f32));
    let net64 = network::<f64>(&a);
    let net32 = network::<f32>(&a);
    let zeros64 = Array2::<f64>::zeros((B, N));
    let zeros32 = Array2::<f32>::zeros((B, N));
    let loss: &dyn BatchLoss<f32> = &SquaredError;
    let (p64, p32) = (init::<f64>(), init::<f32>());
    let (v64, g64) = net64
        .value_and_grad(&p64, zeros64.view(), y.view(), K, &SquaredError, x.view())
        .unwrap();
    let (v32, g32) = net32
        .value_and_grad(&p32, zeros32.view(), y32.view(), K, loss, x32.view())
        .unwrap();
    // Same network, same derivative rules: agreement to single precision.
    assert!(((v32 as f64) - v64).abs() <= 1e-5 * v64, "{v32} vs {v64}");
    let scale = g64.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    for (a, b) in g32.iter().zip(&g64) {
        assert!(((*a as f64) - b).abs() <= 1e-4 * scale, "{a} vs {b}");
    }
    // Adam<f32> trains the f32 network: the loss falls well below its start.
    let mut p = p32.clone();
    let mut adam = Adam::<f32>::new(p.len(), 1e-2).unwrap();
    for _ in 0..300 {
        let (_, g) = net32
            .value_and_grad(&p, zeros32.view(), y32.view(), K, loss, x32.view())
            .unwrap();
        adam.step(&mut p, &g).unwrap();
    }
    let (v_end, _) = net32
        .value_and_grad(&p, zeros32.view(), y32.view(), K, loss, x32.view())
        .unwrap();
    assert!(v_end < 0.5 * v32, "loss {v32} -> {v_end}");
    assert!(p.iter().all(|v| v.is_finite()));
}
