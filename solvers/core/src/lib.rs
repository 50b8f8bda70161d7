//! # hyperprox-core
//!
//! The foundation of hyperprox: scalars and vectors ([`linalg`]), linear operators with adjoints
//! ([`ops`]), functions with proximal operators ([`func`]) and, behind the `testing` feature,
//! the conformance test kit (module `testing`).
//!
//! ```
//! use hyperprox_core::prelude::*;
//! use ndarray::array;
//!
//! // ½‖Ax − b‖² + λ‖x‖₁ ingredients: an operator, a smooth loss, a prox.
//! let a = DenseMatrix::new(array![[1.0, 2.0], [3.0, 4.0]]).unwrap();
//! let loss = LeastSquares::new(a, array![1.0, 1.0]).unwrap();
//! let g = loss.gradient(array![0.0, 0.0].view()).unwrap();
//! assert_eq!(g, array![-4.0, -6.0]);
//! let l1 = NormL1::new(0.5).unwrap();
//! let p = l1.prox(array![2.0, -0.2].view(), 1.0).unwrap();
//! assert_eq!(p, array![1.5, 0.0]);
//! ```
#![warn(missing_docs)]
// `!(x > 0)` is used on purpose throughout: unlike `x <= 0` it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod backend;
pub mod bench;
pub mod comm;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub mod diff;
pub mod error;
pub mod experiments;
pub mod figure;
pub mod func;
#[cfg(feature = "nalgebra")]
pub mod interop;
pub mod io;
pub mod linalg;
pub mod nn;
pub mod ops;
pub mod solve;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Error, Result};
pub use linalg::{Real, Vector};

/// Everything a typical user needs, in one import.
pub mod prelude {
    pub use crate::error::{Error, Result};
    pub use crate::func::*;
    pub use crate::linalg::{Real, Vector};
    pub use crate::ops::*;
    pub use crate::solve::*;
}
