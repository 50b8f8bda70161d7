//! Smooth problems by argmin's L-BFGS with the Moré–Thuente line search.

use super::{CertificateKind, Solution, TerminationReason};
use crate::error::{Error, Result};
use crate::func::Smooth;
use crate::linalg::{check_finite, check_len};
use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use ndarray::{Array1, ArrayView1};

/// Parameters of [`Lbfgs`].
#[derive(Clone, Copy, Debug)]
pub struct LbfgsParams {
    /// History length `m`.
    pub memory: usize,
    /// Stop when `‖∇f(x)‖ ≤ tol` (or `‖∇f‖/μ ≤ tol` with a strong convexity modulus).
    pub tol: f64,
    /// Strong convexity modulus `μ` of `f` (the certificate becomes the distance bound
    /// `‖x − x*‖ ≤ ‖∇f(x)‖/μ`).
    pub strong_convexity: Option<f64>,
    /// Iteration cap.
    pub max_iters: u64,
}

impl Default for LbfgsParams {
    fn default() -> Self {
        Self {
            memory: 10,
            tol: 1e-8,
            strong_convexity: None,
            max_iters: 10_000,
        }
    }
}

/// State after an L-BFGS run (argmin's counters).
#[derive(Clone, Debug)]
pub struct LbfgsState {
    /// Cost-function evaluations.
    pub cost_evals: u64,
    /// Gradient evaluations.
    pub gradient_evals: u64,
}

struct AsArgmin<'a, F: ?Sized>(&'a F);

impl<F: Smooth<f64> + ?Sized> CostFunction for AsArgmin<'_, F> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.0.value(ArrayView1::from(&p[..]))?)
    }
}

impl<F: Smooth<f64> + ?Sized> Gradient for AsArgmin<'_, F> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        Ok(self.0.gradient(ArrayView1::from(&p[..]))?.to_vec())
    }
}

/// L-BFGS (argmin's implementation, Moré–Thuente line search) for a smooth function, e.g.
/// smoothed-TV denoising or logistic regression; certified by `‖∇f‖` or `‖∇f‖/μ`.
///
/// The line search compares cost values, so near the optimum progress stops once cost
/// decreases fall below the rounding of `f` (gradient norms of roughly `√(ε·|f|·L)`); a
/// tolerance below that ends with [`TerminationReason::Stalled`] and the certificate reached.
///
/// # References
/// D. C. Liu, J. Nocedal, "On the limited memory BFGS method for large scale optimization",
/// Math. Program. 45 (1989); J. J. Moré, D. J. Thuente, ACM TOMS 20 (1994).
pub struct Lbfgs<'a, F: ?Sized> {
    f: &'a F,
    params: LbfgsParams,
}

impl<'a, F: Smooth<f64> + ?Sized> Lbfgs<'a, F> {
    /// The solver for `min f`.
    pub fn new(f: &'a F, params: LbfgsParams) -> Self {
        Self { f, params }
    }

    /// Runs from `x0`.
    pub fn run(&self, x0: ArrayView1<'_, f64>) -> Result<Solution<f64, LbfgsState>> {
        if let Some(n) = self.f.dim() {
            check_len("Lbfgs::run", "x0", n, x0.len())?;
        }
        check_finite("Lbfgs::run x0", x0)?;
        if self.params.memory == 0 {
            return Err(Error::param("memory", 0, "the L-BFGS history must be >= 1"));
        }
        let mu = self.params.strong_convexity.unwrap_or(1.0);
        // argmin stops on ‖∇f‖ ≤ tol_grad; translate the certificate tolerance.
        let ls = MoreThuenteLineSearch::new();
        let solver = LBFGS::new(ls, self.params.memory)
            .with_tolerance_grad(self.params.tol * mu)
            .map_err(|e| Error::param("tol", self.params.tol, e.to_string()))?
            .with_tolerance_cost(0.0)
            .map_err(|e| Error::param("tol", 0.0, e.to_string()))?;
        let res = Executor::new(AsArgmin(self.f), solver)
            .configure(|s| s.param(x0.to_vec()).max_iters(self.params.max_iters))
            .run()
            .map_err(|e| Error::Diverged {
                method: "L-BFGS (argmin)".into(),
                iteration: 0,
                detail: e.to_string(),
            })?;
        let st = res.state();
        let x = Array1::from(st.get_best_param().cloned().unwrap_or_else(|| x0.to_vec()));
        let g = self.f.gradient(x.view())?;
        let gn = g.dot(&g).sqrt();
        let certificate = gn / mu;
        let counts = st.get_func_counts();
        Ok(Solution {
            objective: self.f.value(x.view())?,
            iterations: st.get_iter() as usize,
            reason: if certificate <= self.params.tol {
                TerminationReason::Converged
            } else if st.get_iter() >= self.params.max_iters {
                TerminationReason::MaxIters
            } else {
                TerminationReason::Stalled
            },
            certificate,
            kind: if self.params.strong_convexity.is_some() {
                CertificateKind::DistanceBound
            } else {
                CertificateKind::FixedPointResidual
            },
            x,
            state: LbfgsState {
                cost_evals: counts.get("cost_count").copied().unwrap_or(0),
                gradient_evals: counts.get("gradient_count").copied().unwrap_or(0),
            },
        })
    }
}
