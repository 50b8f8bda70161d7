//! # hyperprox-stn: self-tuning networks
//!
//! The second way hyperprox tunes hyperparameters by bilevel optimization, beside MAID's implicit
//! hypergradients: learn a local approximation `ŵ_φ(λ)` of the best response
//! `w*(λ) = argmin_w L_T(λ, w)` and descend the validation loss `L_V(ŵ_φ(λ))` in λ online, in
//! one training run. Hyperparameters enter only the training step, so they need no gradient
//! through the training loss.
//!
//! * [`hyper`]: the hyperparameter container (unconstrained value, perturbation scale, range
//!   map, integer relaxation), the per-example perturbation and its entropy.
//! * [`layer`]: [`StnDense`], the structured best-response layer
//!   `out = W x + b + s_w ⊙ (W_h x) + s_b ⊙ b_h`, `[s_w; s_b] = V λ`, as a core
//!   [`Differentiable`](hyperprox_core::diff::Differentiable) block with the hyperparameters as
//!   its context (VJPs in the input, all weights and λ; JVPs in the input and the context).
//! * [`conv`]: [`StnConv2d`], the same gating per output channel of a convolution.
//! * [`ridge`]: the alternating trainer on ridge regression, where the exact best response and
//!   the exact optimum of the validation loss are known in closed form (STN and Delta-STN).
//! * [`digits`]: the MLP on the shipped digits (dropout per layer, input noise, label
//!   smoothing, a weight decay per layer, optionally ELR's weight), STN and Delta-STN (the
//!   response step on the prediction linearized by forward mode), with grid and random search
//!   at equal total training steps.
//!
//! # References
//! - M. MacKay, P. Vicol, J. Lorraine, D. Duvenaud, R. Grosse, "Self-Tuning Networks: bilevel
//!   optimization of hyperparameters using structured best-response functions", ICLR 2019
//!   (code: github.com/asteroidhouse/self-tuning-networks).
//! - J. Bae, R. Grosse, "Delta-STN: efficient bilevel optimization for neural networks using
//!   structured response Jacobians", NeurIPS 2020 (code: github.com/pomonam/Self-Tuning-Networks).

pub mod conv;
pub mod digits;
pub mod hyper;
pub mod layer;
pub mod ridge;

pub use conv::StnConv2d;
pub use hyper::{Hyper, HyperSet, Range};
pub use layer::StnDense;

use hyperprox_core::error::{Error, Result};
use hyperprox_core::nn::optim::{LrSchedule, Method, OptimConfig, ParamOptimizer};

/// An optimizer over a flat parameter vector with a constant rate and no groups.
pub(crate) fn flat_optimizer(method: Method, lr: f64, n: usize) -> Result<ParamOptimizer<f64>> {
    ParamOptimizer::new(
        OptimConfig {
            method,
            lr,
            schedule: LrSchedule::Constant,
            clip_norm: None,
            groups: vec![],
        },
        n,
    )
}

/// The checks shared by the alternating loops: counts at least 1, positive learning rates,
/// `τ ≥ 0`.
pub(crate) fn check_loop(counts: &[(&str, u64)], rates: [f64; 2], tau: f64) -> Result<()> {
    if let Some((name, _)) = counts.iter().find(|(_, v)| *v == 0) {
        return Err(Error::param(*name, 0, "must be at least 1"));
    }
    for (n, v) in [("lr_weights", rates[0]), ("lr_hyper", rates[1])] {
        if !(v > 0.0 && v.is_finite()) {
            return Err(Error::param(n, v, "must be positive"));
        }
    }
    if !(tau >= 0.0 && tau.is_finite()) {
        return Err(Error::param("tau", tau, "must be ≥ 0"));
    }
    Ok(())
}
