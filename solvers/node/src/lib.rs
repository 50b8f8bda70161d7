//! # hyperprox-node: neural ODEs with regularized solver heuristics
//!
//! * [`tsit5`]: Tsitouras' 5(4) pair with a PI controller, dense output, per-step error
//!   (`EEst`) and stiffness (`ρ`) estimates, and a discrete adjoint through the recorded stages
//!   (step sizes held constant), for right-hand sides that are core
//!   [`Differentiable`](hyperprox_core::diff::Differentiable) blocks.
//! * [`reg`]: the regularizers of Pal et al. (ERNODE: `Σ or mean EEst·h`; SRNODE:
//!   `max or Σ ρ/3.5068`), global or local (one step at a random time), with weight schedules.
//! * [`layers`]: the elementwise cube `u ↦ u³` (the spiral model's input map).
//! * [`spiral`]: the spiral benchmark `u' = A u³` and its neural ODE, trained with and without
//!   the regularizers.
//!
//! # References
//! * A. Pal, Y. Ma, V. Shah, C. Rackauckas, "Opening the blackbox: accelerating neural
//!   differential equations by regularizing internal solver heuristics", ICML 2021 (code:
//!   github.com/avik-pal/RegNeuralDE.jl).
//! * A. Pal, A. Edelman, C. Rackauckas, "Locally regularized neural differential equations:
//!   some black boxes were meant to remain closed!", ICML 2023 (code:
//!   github.com/avik-pal/LocalRegNeuralDE.jl).
//! * Ch. Tsitouras, "Runge–Kutta pairs of order 5(4) satisfying only the first column
//!   simplifying assumption", Comput. Math. Appl. 62 (2011).

pub mod digits;
pub mod fit;
pub mod layers;
pub mod ode;
pub mod reg;
pub mod spiral;
pub mod tsit5;

pub use layers::Cube;
pub use reg::{Regularizer, Schedule};
pub use tsit5::{backward, solve, Aggregate, Heuristic, Options, RegTerm, Trajectory};
