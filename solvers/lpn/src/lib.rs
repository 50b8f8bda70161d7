#![allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x > 0)` also rejects NaN
//! # hyperprox-lpn
//!
//! Learned proximal networks (Fang, Buchanan & Sulam, ICLR 2024): a denoiser that is *exactly*
//! a proximal operator, `f_θ = ∇ψ_θ` with `ψ_θ` an input-convex network.
//!
//! - [`Icnn`]: the network, `ψ`, `f = ∇ψ` by an explicit backward pass, Hessian-vector
//!   products, and the second-order parameter gradient that training needs, all derived by
//!   hand (module [`icnn`]) and checked against finite differences;
//! - [`train`](mod@train): ℓ2, ℓ1 and proximal-matching losses, the paper's schedules, Adam with
//!   projection onto `W ≥ 0`, checkpoint/resume;
//! - [`prior`]: the regularizer `R_θ` with `f_θ = prox_{R_θ}`, by inverting `f` (Newton-CG);
//! - [`LpnProx`]: the LPN as a core `Prox`, for plug-and-play proximal gradient and ADMM with
//!   the core solvers;
//! - [`laplace`]: the paper's 1-D Laplacian experiment and its reference curves.

pub mod composed;
pub mod digits;
pub mod experiments;
pub mod icnn;
pub mod laplace;
mod pnp;
pub mod prior;
pub mod train;

pub use icnn::{Arch, Icnn, IcnnConfig};
pub use pnp::LpnProx;
pub use prior::{invert, regularizer, regularizer_rows, Inversion, InvertParams};
pub use train::{train, Loss, Sampler, Stage, TrainState};
