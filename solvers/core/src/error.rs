//! The one error type of `hyperprox-core`.

use thiserror::Error;

/// Everything that can go wrong in `hyperprox-core`.
///
/// Every message says what was wrong *and* how to fix the input.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// Two sizes that must agree do not.
    #[error("shape mismatch in {context}: expected {expected}, got {got}; pass {what} of the expected size")]
    ShapeMismatch {
        /// Where the mismatch was detected (operator or function name and argument).
        context: String,
        /// What the argument is (for the hint).
        what: String,
        /// Expected size or shape.
        expected: String,
        /// Size or shape that was passed.
        got: String,
    },
    /// NaN or ±Inf in an input that must be finite.
    #[error("non-finite value ({value}) in {what} at index {index}; remove NaN/Inf from the input (check the data or the previous computation)")]
    NonFinite {
        /// The argument that contains the value.
        what: String,
        /// Flat index of the first offending entry.
        index: usize,
        /// The offending value, printed.
        value: String,
    },
    /// A parameter outside its admissible range (γ ≤ 0, q outside (0, 2], empty group, …).
    #[error("invalid parameter {name} = {value}: {hint}")]
    InvalidParameter {
        /// Parameter name as in the docs.
        name: String,
        /// The value that was passed, printed.
        value: String,
        /// Admissible range and how to fix it.
        hint: String,
    },
    /// The operation is not available for this object (e.g. the Jacobian of a prox that has none).
    #[error("{what} is not supported by {by}{hint}")]
    Unsupported {
        /// The operation.
        what: String,
        /// The object that lacks it.
        by: String,
        /// An optional hint (starts with "; ").
        hint: String,
    },
    /// An inner iterative method (dual solver, CG, Newton) did not reach its tolerance.
    #[error("{method} did not converge in {iterations} iterations (residual {residual:.3e} > tolerance {tol:.3e}); increase max_iters or loosen the tolerance")]
    NotConverged {
        /// The inner method.
        method: String,
        /// Iterations performed.
        iterations: usize,
        /// Final residual or gap.
        residual: f64,
        /// Requested tolerance.
        tol: f64,
    },
    /// An iteration produced NaN/Inf.
    #[error("{method} diverged at iteration {iteration}: {detail}; reduce the step size or check the problem's constants")]
    Diverged {
        /// The method.
        method: String,
        /// Iteration at which the non-finite value appeared.
        iteration: usize,
        /// What became non-finite.
        detail: String,
    },
    /// A numerical check of the test kit failed (adjoint, prox optimality, finite differences…).
    #[error("check failed: {0}")]
    CheckFailed(String),
    /// A rank of a data-parallel run failed (see [`crate::comm`]): every rank returns this
    /// error, so that none waits for the failed one.
    #[error("rank {rank} of {size} failed: {message}")]
    RankFailed {
        /// The first rank (in rank order) that failed.
        rank: usize,
        /// Number of ranks.
        size: usize,
        /// Its error message.
        message: String,
    },
    /// No usable GPU, or a GPU operation failed (see [`crate::device`]).
    #[error("{0}")]
    Device(String),
    /// File or I/O problem.
    #[error("I/O error on {path}: {source}; check that the file exists and is readable")]
    Io {
        /// The path involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for `hyperprox-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::ShapeMismatch`].
    pub fn shape(
        context: impl Into<String>,
        what: impl Into<String>,
        expected: impl std::fmt::Display,
        got: impl std::fmt::Display,
    ) -> Self {
        Error::ShapeMismatch {
            context: context.into(),
            what: what.into(),
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }

    /// Shorthand for [`Error::InvalidParameter`].
    pub fn param(
        name: impl Into<String>,
        value: impl std::fmt::Display,
        hint: impl Into<String>,
    ) -> Self {
        Error::InvalidParameter {
            name: name.into(),
            value: value.to_string(),
            hint: hint.into(),
        }
    }

    /// Shorthand for [`Error::Unsupported`].
    pub fn unsupported(what: impl Into<String>, by: impl Into<String>) -> Self {
        Error::Unsupported {
            what: what.into(),
            by: by.into(),
            hint: String::new(),
        }
    }
}
