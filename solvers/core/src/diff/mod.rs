//! Learning primitives shared by the learned-algorithm crates: the [`Differentiable`] trait
//! with explicit vector-Jacobian products, differentiable [`blocks`] for unfolded algorithms,
//! the [`Unrolled`] composite, first-order optimizers over flat parameter vectors (Adam, SGD
//! with momentum), learning-rate schedules and seeded minibatch seeds.
//!
//! Parameters live in one flat slice, so an optimizer state is two vectors and a step counter,
//! which makes checkpoints trivial (`state()` / `from_state()`). Everything is generic over the
//! scalar [`Real`] with `f64` as the default type parameter (`Differentiable` means
//! `Differentiable<f64>`), so single-precision networks train with the same blocks and
//! optimizers (`Unrolled<f32>`, `Adam<f32>`).
//!
//! # References
//! D. P. Kingma, J. Ba, "Adam: a method for stochastic optimization", ICLR 2015.

use crate::error::{Error, Result};
use crate::linalg::Real;

pub mod blocks;
pub mod check;
mod differentiable;
pub mod on;
pub mod pdhg_step;
pub mod solve_layer;
pub mod unrolled;

pub use crate::func::{matmul, residual, BatchSmooth, LeastSquaresBatch};
pub use crate::linalg::check_batch;
pub use blocks::{
    GradientStep, HardThreshold, LearnedLinear, LinearBlock, ResidualStep, SoftThreshold,
};
pub use check::{check_block, BlockCheck};
pub use differentiable::{BatchLoss, Differentiable, Saved, SquaredError, Workspace};
pub use on::{
    check_vjp_on, value_and_grad_on, BatchLossOn, BatchMat, DifferentiableOn, UnrolledOn,
    UnrolledWorkspaceOn, VjpCheckOn, WorkspaceOn,
};
pub use pdhg_step::PdhgStep;
pub use solve_layer::{Differentiation, Regularizer, SolveLayer};
pub use unrolled::{check_vjp, Chain, Trajectory, Unrolled, UnrolledWorkspace};

/// The seed of minibatch `step` of a run seeded with `seed` (SplitMix64 of the pair), so that a
/// minibatch is a pure function of the step and a resumed run draws the same data.
pub fn batch_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(step.wrapping_add(1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Advances a training `state` to step `end` in segments that end at multiples of `every`,
/// calling `save` (e.g. write a checkpoint) after each segment that made progress, so an
/// interrupted run loses at most `every` steps; with a training loop whose resumption is exact,
/// the segmentation changes nothing. `advance(state, target)` trains towards step `target`
/// (it may stop short); a segment without progress ends the loop.
pub fn checkpointed<S, E: From<Error>>(
    state: &mut S,
    end: u64,
    every: u64,
    step: impl Fn(&S) -> u64,
    mut advance: impl FnMut(&mut S, u64) -> Result<()>,
    mut save: impl FnMut(&S) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let every = every.max(1);
    while step(state) < end {
        let before = step(state);
        advance(state, ((before / every + 1) * every).min(end))?;
        if step(state) == before {
            break;
        }
        save(state)?;
    }
    Ok(())
}

/// Adam with bias correction: `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `θ ← θ − lr·m̂/(√v̂ + ε)`. Defaults `β₁ = 0.9`, `β₂ = 0.999`, `ε = 1e-8` (the paper's).
/// Generic over the scalar (`f64` by default; `Adam<f32>` trains single-precision networks).
#[derive(Clone, Debug, PartialEq)]
pub struct Adam<T: Real = f64> {
    /// Learning rate.
    pub lr: T,
    /// First-moment decay.
    pub beta1: T,
    /// Second-moment decay.
    pub beta2: T,
    /// Denominator offset.
    pub eps: T,
    m: Vec<T>,
    v: Vec<T>,
    t: u64,
}

/// `Err(NonFinite)` at the first non-finite gradient entry.
fn check_gradient<T: Real>(grad: &[T]) -> Result<()> {
    match grad.iter().position(|g| !g.is_finite()) {
        Some(i) => Err(Error::NonFinite {
            what: "gradient".into(),
            index: i,
            value: grad[i].to_string(),
        }),
        None => Ok(()),
    }
}

fn check_lr<T: Real>(lr: T) -> Result<()> {
    if !(lr > T::zero() && lr.is_finite()) {
        return Err(Error::param(
            "lr",
            lr,
            "the learning rate must be positive (e.g. 1e-3)",
        ));
    }
    Ok(())
}

impl<T: Real> Adam<T> {
    /// Adam for `n` parameters with learning rate `lr`.
    pub fn new(n: usize, lr: T) -> Result<Self> {
        check_lr(lr)?;
        Ok(Self {
            lr,
            beta1: T::c(0.9),
            beta2: T::c(0.999),
            eps: T::c(1e-8),
            m: vec![T::zero(); n],
            v: vec![T::zero(); n],
            t: 0,
        })
    }

    /// One step on `params` with gradient `grad`; `Err` on a length mismatch or a non-finite
    /// gradient (the parameters are then left unchanged).
    pub fn step(&mut self, params: &mut [T], grad: &[T]) -> Result<()> {
        crate::linalg::check_len("Adam::step", "gradient", self.m.len(), grad.len())?;
        crate::linalg::check_len("Adam::step", "parameters", self.m.len(), params.len())?;
        check_gradient(grad)?;
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = T::one() - b1.powi(self.t.min(i32::MAX as u64) as i32);
        let c2 = T::one() - b2.powi(self.t.min(i32::MAX as u64) as i32);
        for (((p, &g), m), v) in params
            .iter_mut()
            .zip(grad)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            *m = b1 * *m + (T::one() - b1) * g;
            *v = b2 * *v + (T::one() - b2) * g * g;
            *p -= self.lr * (*m / c1) / ((*v / c2).sqrt() + self.eps);
        }
        Ok(())
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// The moment vectors and step counter (for checkpoints).
    pub fn state(&self) -> (&[T], &[T], u64) {
        (&self.m, &self.v, self.t)
    }

    /// Restores a state saved by [`Adam::state`].
    pub fn from_state(lr: T, m: Vec<T>, v: Vec<T>, t: u64) -> Result<Self> {
        let mut a = Self::new(m.len(), lr)?;
        crate::linalg::check_len("Adam::from_state", "second moments", m.len(), v.len())?;
        a.m = m;
        a.v = v;
        a.t = t;
        Ok(a)
    }
}

/// Stochastic gradient descent with (heavy-ball) momentum: `b ← μb + g`, `θ ← θ − lr·b`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sgd<T: Real = f64> {
    /// Learning rate.
    pub lr: T,
    /// Momentum `μ ∈ [0, 1)`.
    pub momentum: T,
    buf: Vec<T>,
}

impl<T: Real> Sgd<T> {
    /// SGD for `n` parameters.
    pub fn new(n: usize, lr: T, momentum: T) -> Result<Self> {
        check_lr(lr)?;
        if !(momentum >= T::zero() && momentum < T::one()) {
            return Err(Error::param("momentum", momentum, "must lie in [0, 1)"));
        }
        Ok(Self {
            lr,
            momentum,
            buf: vec![T::zero(); n],
        })
    }

    /// One step.
    pub fn step(&mut self, params: &mut [T], grad: &[T]) -> Result<()> {
        crate::linalg::check_len("Sgd::step", "gradient", self.buf.len(), grad.len())?;
        crate::linalg::check_len("Sgd::step", "parameters", self.buf.len(), params.len())?;
        check_gradient(grad)?;
        for ((p, &g), b) in params.iter_mut().zip(grad).zip(&mut self.buf) {
            *b = self.momentum * *b + g;
            *p -= self.lr * *b;
        }
        Ok(())
    }

    /// The momentum buffer (for checkpoints).
    pub fn state(&self) -> &[T] {
        &self.buf
    }

    /// Restores a state saved by [`Sgd::state`].
    pub fn from_state(lr: T, momentum: T, buf: Vec<T>) -> Result<Self> {
        let mut s = Self::new(buf.len(), lr, momentum)?;
        s.buf = buf;
        Ok(s)
    }
}

/// Adam or SGD behind one interface, with a state that round-trips through
/// `(first vector, second vector, step)` (SGD leaves the second vector empty).
#[derive(Clone, Debug, PartialEq)]
pub enum Optimizer<T: Real = f64> {
    /// Adam.
    Adam(Adam<T>),
    /// SGD with momentum.
    Sgd(Sgd<T>),
}

impl<T: Real> Optimizer<T> {
    /// One step.
    pub fn step(&mut self, params: &mut [T], grad: &[T]) -> Result<()> {
        match self {
            Optimizer::Adam(a) => a.step(params, grad),
            Optimizer::Sgd(s) => s.step(params, grad),
        }
    }
}

/// A learning-rate schedule as a function of the step.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// Constant.
    Constant(f64),
    /// `lr·factor^⌊step/every⌋`.
    Step {
        /// Initial rate.
        lr: f64,
        /// Steps between decays.
        every: u64,
        /// Decay factor.
        factor: f64,
    },
    /// Piecewise constant: `(first step, rate)` pairs in increasing order.
    Piecewise(Vec<(u64, f64)>),
}

impl Schedule {
    /// The rate at `step`.
    pub fn at(&self, step: u64) -> f64 {
        match self {
            Schedule::Constant(lr) => *lr,
            Schedule::Step { lr, every, factor } => {
                lr * factor.powi((step / (*every).max(1)) as i32)
            }
            Schedule::Piecewise(v) => v
                .iter()
                .rev()
                .find(|(s, _)| *s <= step)
                .or(v.first())
                .map_or(0.0, |p| p.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_and_sgd_minimize_a_quadratic() {
        // f(θ) = ½Σ cᵢ(θᵢ − 1)², minimum at 1.
        let c = [1.0, 10.0, 0.1];
        let grad = |p: &[f64]| {
            p.iter()
                .zip(&c)
                .map(|(x, c)| c * (x - 1.0))
                .collect::<Vec<_>>()
        };
        let mut p: Vec<f64> = vec![0.0; 3];
        let mut adam = Adam::new(3, 0.05).unwrap();
        for _ in 0..3000 {
            let g = grad(&p);
            adam.step(&mut p, &g).unwrap();
        }
        assert!(p.iter().all(|x| (x - 1.0).abs() < 1e-3), "{p:?}");
        let mut p: Vec<f64> = vec![0.0; 3];
        let mut sgd = Sgd::new(3, 0.05, 0.9).unwrap();
        for _ in 0..3000 {
            let g = grad(&p);
            sgd.step(&mut p, &g).unwrap();
        }
        assert!(p.iter().all(|x| (x - 1.0).abs() < 1e-3), "{p:?}");
    }

    #[test]
    fn adam_first_step_moves_by_lr_and_state_round_trips() {
        let mut p: Vec<f64> = vec![0.0, 0.0];
        let mut a = Adam::new(2, 0.1).unwrap();
        a.step(&mut p, &[3.0, -0.5]).unwrap();
        // Bias-corrected first step is lr·sign(g) (up to ε).
        assert!(
            (p[0] + 0.1).abs() < 1e-8 && (p[1] - 0.1).abs() < 1e-8,
            "{p:?}"
        );
        let (m, v, t) = a.state();
        let mut b = Adam::from_state(0.1, m.to_vec(), v.to_vec(), t).unwrap();
        let (mut p1, mut p2) = (p.clone(), p.clone());
        a.step(&mut p1, &[1.0, 1.0]).unwrap();
        b.step(&mut p2, &[1.0, 1.0]).unwrap();
        assert_eq!(p1, p2);
        assert!(a.step(&mut p1, &[f64::NAN, 0.0]).is_err());
        assert!(Adam::new(2, 0.0).is_err());
    }

    #[test]
    fn schedules() {
        assert_eq!(
            Schedule::Step {
                lr: 1.0,
                every: 10,
                factor: 0.5
            }
            .at(25),
            0.25
        );
        let s = Schedule::Piecewise(vec![(0, 1e-3), (100, 1e-4)]);
        assert_eq!(
            (s.at(0), s.at(99), s.at(100), s.at(1000)),
            (1e-3, 1e-3, 1e-4, 1e-4)
        );
    }
    #[test]
    fn checkpointed_saves_at_multiples_and_stops_at_the_end() {
        let mut saves = Vec::new();
        let mut state = 3u64;
        // Each call advances by at most 4 steps (a training chunk may stop short of the target).
        let advance = |s: &mut u64, target: u64| {
            *s = (*s + 4).min(target);
            Ok(())
        };
        checkpointed::<_, Error>(
            &mut state,
            23,
            10,
            |s| *s,
            advance,
            |s| {
                saves.push(*s);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(state, 23);
        assert_eq!(saves, vec![7, 10, 14, 18, 20, 23]);
        // No progress (a finished schedule): one call, no save, no endless loop.
        let mut calls = 0;
        let mut s = 0u64;
        checkpointed::<_, Error>(
            &mut s,
            5,
            2,
            |s| *s,
            |_, _| {
                calls += 1;
                Ok(())
            },
            |_| panic!("nothing to save"),
        )
        .unwrap();
        assert_eq!(calls, 1);
    }
}
