//! The PDHG iteration as a block: its derivatives (state, steps, context, JVP) against finite
//! differences in f64 and f32, and K blocks against K iterations of the core PDHG on TV
//! deblurring.

use hyperprox_core::diff::{check_block, Differentiable, PdhgStep, Unrolled};
use hyperprox_core::func::{
    Groups, IndBox, NormL1, NormL21, Prox, SeparableSum, SqrNormL2, Translate,
};
use hyperprox_core::linalg::Real;
use hyperprox_core::ops::{Boundary, Conv2d, ConvMethod, Gradient2d, LinearOperator, Stack};
use hyperprox_core::solve::{NoObserver, Pdhg, PdhgParams};
use ndarray::{concatenate, Array1, Array2, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

const H: usize = 6;
const W: usize = 5;
const N: usize = H * W;

fn blur<T: Real + hyperprox_core::ops::FftNum>() -> Conv2d<T> {
    let k = Conv2d::<T>::gaussian_kernel(3, 0.8).unwrap();
    Conv2d::new(H, W, k, Boundary::Reflect, ConvMethod::Direct).unwrap()
}

/// TV deblurring `min_{x∈[0,1]} ½‖Bx − z‖² + λ‖∇x‖_{2,1}`: `K = [B; ∇]`, the context `z`.
fn tv_step<T: Real + hyperprox_core::ops::FftNum>(lambda: f64) -> PdhgStep<T> {
    tv_step_with(lambda, Arc::new(IndBox::new(T::zero(), T::one()).unwrap()))
}

/// The same with another primal function `f` in place of the box.
fn tv_step_with<T: Real + hyperprox_core::ops::FftNum>(
    lambda: f64,
    f: Arc<dyn Prox<T>>,
) -> PdhgStep<T> {
    let k: Arc<dyn LinearOperator<T>> =
        Arc::new(Stack::new(blur::<T>(), Gradient2d::new(H, W).unwrap()).unwrap());
    let g = SeparableSum::new(vec![
        (
            N,
            Box::new(SqrNormL2::new(T::one()).unwrap()) as Box<dyn Prox<T>>,
        ),
        (
            2 * N,
            Box::new(NormL21::new(Groups::stacked(N, 2).unwrap(), T::c(lambda)).unwrap()),
        ),
    ])
    .unwrap();
    PdhgStep::new(k, f, Arc::new(g), N).unwrap()
}

fn uniform<T: Real>(r: usize, c: usize, lo: f64, hi: f64, seed: u64) -> Array2<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((r, c), |_| T::c(rng.random_range(lo..hi)))
}

/// A state away from the kinks: x strictly inside [0, 1] (with some outside so the box
/// clips), duals of both signs.
fn state<T: Real>(b: usize, seed: u64) -> (Array2<T>, Array2<T>) {
    let x = uniform::<T>(b, 2 * N, -0.2, 1.2, seed);
    let y = uniform::<T>(b, 3 * N, -0.3, 0.3, seed + 1);
    let z = uniform::<T>(b, N, 0.0, 1.0, seed + 2);
    (concatenate![Axis(1), x, y], z)
}

#[test]
fn derivatives_match_finite_differences_f64() {
    let step = tv_step::<f64>(0.05);
    let (x, z) = state::<f64>(3, 10);
    let p = PdhgStep::params_for(0.3, 0.6).unwrap();
    let r = check_block(&step, &p, x.view(), z.view(), 4, 1e-6).unwrap();
    println!("{r:?}");
    assert!(
        r.state < 1e-6 && r.params < 1e-6 && r.context < 1e-6,
        "{r:?}"
    );
    assert!(r.jvp < 1e-6 && r.transpose < 1e-9, "{r:?}");
}

/// A primal prox that depends on its scale (ℓ1: soft thresholding at τ·0.3; the box's
/// projection does not, which hides the scale term of the τ derivative).
#[test]
fn derivatives_with_a_scale_dependent_primal_prox_match_finite_differences() {
    let step = tv_step_with::<f64>(0.05, Arc::new(NormL1::new(0.3).unwrap()));
    let (x, z) = state::<f64>(3, 60);
    let p = PdhgStep::params_for(0.4, 0.6).unwrap();
    let r = check_block(&step, &p, x.view(), z.view(), 7, 1e-6).unwrap();
    assert!(r.worst() < 1e-6, "{r:?}");
}

/// Over-relaxation θ ≠ 1 (θ = 1 hides a θ used as a divisor).
#[test]
fn derivatives_with_over_relaxation_match_finite_differences() {
    let step = tv_step::<f64>(0.05).with_theta(0.4).unwrap();
    let (x, z) = state::<f64>(2, 50);
    let p = PdhgStep::params_for(0.2, 0.9).unwrap();
    let r = check_block(&step, &p, x.view(), z.view(), 6, 1e-6).unwrap();
    assert!(r.worst() < 1e-6, "{r:?}");
}

#[test]
fn derivatives_match_finite_differences_f32() {
    let step = tv_step::<f32>(0.05);
    let (x, z) = state::<f32>(2, 20);
    let p = PdhgStep::params_for(0.3f32, 0.6).unwrap();
    let r = check_block(&step, &p, x.view(), z.view(), 5, 1e-3).unwrap();
    println!("{r:?}");
    // Single precision: h = 1e-3 keeps the differences off the kinks; the step gradient sums
    // products over all 90 dual coordinates, so its difference quotient cancels most.
    assert!(r.state < 1e-3 && r.context < 1e-3 && r.jvp < 1e-3, "{r:?}");
    assert!(r.params < 3e-2 && r.transpose < 1e-5, "{r:?}");
}

/// K blocks at fixed steps are K iterations of the core PDHG from `(x₀, y = 0)`, `x̄₀ = x₀`.
#[test]
fn unrolled_blocks_are_the_core_pdhg() {
    let lambda = 0.04;
    let mut rng = StdRng::seed_from_u64(7);
    let obs: Array1<f64> = Array1::from_shape_fn(N, |_| rng.random_range(0.0..1.0));
    let step = tv_step::<f64>(lambda);
    let p = step.classical_params().unwrap();
    let (tau, sigma) = PdhgStep::<f64>::steps(&p);
    let iters = 25;
    let net = Unrolled::new(
        (0..iters)
            .map(|_| Box::new(tv_step::<f64>(lambda)) as Box<dyn Differentiable>)
            .collect(),
    )
    .unwrap();
    let params: Vec<f64> = (0..iters).flat_map(|_| p).collect();
    let x0 = obs.mapv(|v| v.clamp(0.0, 1.0));
    let mut s0 = Array2::zeros((1, 5 * N));
    s0.slice_mut(ndarray::s![0, ..N]).assign(&x0);
    s0.slice_mut(ndarray::s![0, N..2 * N]).assign(&x0);
    let ctx = obs.clone().insert_axis(Axis(0));
    let traj = net.forward(&params, s0.view(), ctx.view(), iters).unwrap();
    let ours = traj.last().row(0).slice(ndarray::s![..N]).to_owned();

    let k = Stack::new(blur::<f64>(), Gradient2d::new(H, W).unwrap()).unwrap();
    let g = SeparableSum::new(vec![
        (
            N,
            Box::new(Translate::new(SqrNormL2::new(1.0).unwrap(), obs.clone()).unwrap())
                as Box<dyn Prox<f64>>,
        ),
        (
            2 * N,
            Box::new(NormL21::new(Groups::stacked(N, 2).unwrap(), lambda).unwrap()),
        ),
    ])
    .unwrap();
    let f = IndBox::new(0.0, 1.0).unwrap();
    let params = PdhgParams::default()
        .with_steps(tau, sigma)
        .with_tol(1e-300)
        .with_max_iters(iters);
    let sol = Pdhg::new(&f, &g, &k, params)
        .run(x0.view(), NoObserver)
        .unwrap();
    assert_eq!(sol.iterations, iters);
    let err = (&ours - &sol.x)
        .mapv(f64::abs)
        .fold(0.0f64, |m, &v| m.max(v));
    println!("max |unrolled − core PDHG| after {iters} iterations: {err:.1e}");
    assert!(err < 1e-12, "{err}");
    // And the iterates moved (the comparison is not between two copies of x₀).
    assert!((&sol.x - &x0).mapv(f64::abs).sum() > 1e-2);
}

#[test]
fn bad_inputs_are_errors() {
    let step = tv_step::<f64>(0.05);
    let (x, z) = state::<f64>(2, 40);
    assert!(PdhgStep::params_for(0.0, 1.0).is_err());
    assert!(PdhgStep::params_for(1.0, f64::NAN).is_err());
    let p = [0.0, 0.0];
    assert!(step.forward(&p[..1], x.view(), z.view()).is_err());
    assert!(step
        .forward(&p, x.slice(ndarray::s![.., 1..]), z.view())
        .is_err());
    assert!(step
        .forward(&p, x.view(), z.slice(ndarray::s![.., 1..]))
        .is_err());
    let k: Arc<dyn LinearOperator<f64>> = Arc::new(Gradient2d::new(H, W).unwrap());
    let f: Arc<dyn Prox<f64>> = Arc::new(IndBox::new(0.0, 1.0).unwrap());
    assert!(PdhgStep::new(k.clone(), f.clone(), f.clone(), 2 * N + 1).is_err());
    assert!(tv_step::<f64>(0.1).with_theta(1.5).is_err());
}
