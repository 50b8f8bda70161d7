//! # hyperprox
//!
//! A Rust toolkit for solving inverse problems, learning their hyperparameters by bilevel
//! optimization, and researching learned (unfolded) algorithms.
//!
//! This facade re-exports the workspace crates:
//!
//! * [`core`] (`hyperprox-core`): scalars and vectors, linear operators with adjoints,
//!   functions with proximal operators, and the conformance test kit (feature `testing`).
//! * [`bilevel`] (`hyperprox-bilevel`): MAID, HOAG and hypergradient oracles.
//! * [`lpn`] (`hyperprox-lpn`): learned proximal networks.
//! * [`unfolded`] (`hyperprox-unfolded`): deep-unfolded ISTA/IHT and the LISTA family.
//! * [`stn`] (`hyperprox-stn`): self-tuning networks.
//! * [`node`] (`hyperprox-node`): neural ODEs with regularized solver heuristics.
//!
//! ```
//! use hyperprox::prelude::*;
//! use ndarray::array;
//!
//! let grad = Gradient2d::new(2, 2).unwrap();
//! let g = grad.apply(array![0.0, 1.0, 2.0, 4.0].view()).unwrap();
//! assert_eq!(g, array![1.0, 0.0, 2.0, 0.0, 2.0, 3.0, 0.0, 0.0]);
//! ```

pub use hyperprox_bilevel as bilevel;
pub use hyperprox_core as core;
pub use hyperprox_lpn as lpn;
pub use hyperprox_node as node;
pub use hyperprox_stn as stn;
pub use hyperprox_unfolded as unfolded;

pub mod bench_cases;
pub mod report;

/// Everything a typical user needs, in one import.
pub mod prelude {
    pub use hyperprox_core::prelude::*;
}

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
