//! Parameter estimation for ODEs: least squares over observed trajectories, by argmin's
//! L-BFGS (backtracking Armijo line search) on adjoint (or forward-sensitivity) gradients.
//!
//! ```text
//! min_θ  L(θ) = 1/(2N) Σ_k Σ_i ‖u_k(t_ki; θ) − d_ki‖²,   N = number of observed values,
//! ```
//!
//! over one or more trajectories `k` (each with its own `u₀`, times and observations; the first
//! time is the `t₀` of `u₀`). With `log_params`, the search runs over `η = ln θ` (so θ stays
//! positive: the bounds θ > 0 of rate constants), with `∂L/∂η = θ ⊙ ∂L/∂θ`.

use crate::ode::{OdeSolve, Sensitivity};
use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::condition::ArmijoCondition;
use argmin::solver::linesearch::BacktrackingLineSearch;
use argmin::solver::quasinewton::LBFGS;
use hyperprox_core::{Error, Result};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
use std::cell::Cell;

/// One observed trajectory.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Observation times (strictly increasing; the first is `t₀`).
    pub times: Vec<f64>,
    /// The initial state at `times[0]`.
    pub u0: Vec<f64>,
    /// `T × n`: row `i` observed at `times[i]`.
    pub data: Array2<f64>,
}

/// Settings of [`fit`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct FitOptions {
    /// Search over `ln θ` (θ > 0).
    pub log_params: bool,
    /// How gradients are computed.
    pub sensitivity: Sensitivity,
    /// L-BFGS history.
    pub memory: usize,
    /// Stop when `‖∇L‖` (in the search variables) falls below this.
    pub grad_tol: f64,
    /// Iteration cap.
    pub max_iters: u64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            log_params: true,
            sensitivity: Sensitivity::Adjoint,
            memory: 10,
            grad_tol: 1e-8,
            max_iters: 200,
        }
    }
}

/// The result of [`fit`].
#[derive(Clone, Debug, Serialize)]
pub struct FitReport {
    /// The estimated θ.
    pub params: Vec<f64>,
    /// `L(θ)` at the estimate.
    pub loss: f64,
    /// `L` at the initial guess.
    pub initial_loss: f64,
    /// `‖∇L‖` in the search variables at the estimate.
    pub grad_norm: f64,
    /// L-BFGS iterations.
    pub iterations: u64,
    /// Loss evaluations (ODE solves) and gradient evaluations.
    pub cost_evals: u64,
    /// Gradient evaluations (forward solve plus the adjoint or sensitivity pass).
    pub gradient_evals: u64,
    /// Right-hand-side evaluations over the whole fit.
    pub rhs_evals: usize,
    /// Why it stopped.
    pub termination: String,
}

struct Objective<'a> {
    ode: &'a OdeSolve,
    obs: &'a [Observed],
    opts: FitOptions,
    nvalues: f64,
    rhs_evals: Cell<usize>,
}

impl Objective<'_> {
    fn theta(&self, x: &[f64]) -> Vec<f64> {
        if self.opts.log_params {
            x.iter().map(|v| v.exp()).collect()
        } else {
            x.to_vec()
        }
    }

    fn loss(&self, x: &[f64]) -> Result<f64> {
        let theta = self.theta(x);
        let mut total = 0.0;
        for o in self.obs {
            let s = self.ode.solve(&theta, &o.u0, &o.times)?;
            self.rhs_evals.set(self.rhs_evals.get() + s.stats.rhs_evals);
            total += (&s.states - &o.data).mapv(|v| v * v).sum();
        }
        Ok(total / (2.0 * self.nvalues))
    }

    fn grad(&self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let theta = self.theta(x);
        let mut g = vec![0.0; theta.len()];
        let mut total = 0.0;
        for o in self.obs {
            let n = self.nvalues;
            let mut loss = |y: ndarray::ArrayView2<'_, f64>| {
                let r = &y - &o.data;
                Ok((r.mapv(|v| v * v).sum() / (2.0 * n), r / n))
            };
            let r = self
                .ode
                .gradient(&theta, &o.u0, &o.times, self.opts.sensitivity, &mut loss)?;
            self.rhs_evals.set(self.rhs_evals.get() + r.stats.rhs_evals);
            total += r.loss;
            for (gi, v) in g.iter_mut().zip(r.grad_params.iter()) {
                *gi += v;
            }
        }
        if self.opts.log_params {
            for (gi, t) in g.iter_mut().zip(&theta) {
                *gi *= t;
            }
        }
        Ok((total, g))
    }
}

/// The objective as argmin sees it (borrowed, so that its counters outlive the run).
struct ByRef<'a, 'b>(&'a Objective<'b>);

impl CostFunction for ByRef<'_, '_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        // A trial point where the solve fails (a blow-up far from the data) is infinitely bad
        // to the line search, which then shortens the step.
        // A non-finite trial point means the quasi-Newton direction broke down (s and y both
        // rounding to zero at the noise floor of the solves): end the run at the best point.
        if x.iter().any(|v| !v.is_finite()) {
            return Err(argmin::core::Error::msg(
                "the search direction is not finite (converged to the solver's noise floor)",
            ));
        }
        Ok(self.0.loss(x).unwrap_or(f64::INFINITY))
    }
}

impl Gradient for ByRef<'_, '_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        Ok(self.0.grad(x)?.1)
    }
}

/// Checks the observed trajectories against the model's sizes.
pub fn check_observed(ode: &OdeSolve, obs: &[Observed]) -> Result<()> {
    if obs.is_empty() {
        return Err(Error::param(
            "observations",
            0,
            "give at least one observed trajectory",
        ));
    }
    let n = ode.rhs().nstates();
    for (k, o) in obs.iter().enumerate() {
        if o.data.dim() != (o.times.len(), n) {
            return Err(Error::shape(
                format!("trajectory {k}"),
                "observations (one row per time, one column per state)",
                format!("{}×{n}", o.times.len()),
                format!("{}×{}", o.data.nrows(), o.data.ncols()),
            ));
        }
        if let Some(i) = o.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: format!("observations of trajectory {k}"),
                index: i,
                value: o.data.iter().nth(i).unwrap().to_string(),
            });
        }
    }
    Ok(())
}

/// Fits θ to the observed trajectories from the guess `init`.
pub fn fit(ode: &OdeSolve, obs: &[Observed], init: &[f64], opts: FitOptions) -> Result<FitReport> {
    check_observed(ode, obs)?;
    let np = ode.rhs().nparams();
    if init.len() != np {
        return Err(Error::shape("fit", "an initial guess θ", np, init.len()));
    }
    if opts.log_params {
        if let Some(i) = init.iter().position(|v| !(*v > 0.0 && v.is_finite())) {
            return Err(Error::param(
                format!("init[{i}]"),
                init[i],
                "with log-parameters every initial value must be positive (or turn log_params off)",
            ));
        }
    }
    let obj = Objective {
        ode,
        obs,
        opts,
        nvalues: obs.iter().map(|o| o.data.len()).sum::<usize>() as f64,
        rhs_evals: Cell::new(0),
    };
    let x0: Vec<f64> = if opts.log_params {
        init.iter().map(|v| v.ln()).collect()
    } else {
        init.to_vec()
    };
    let initial_loss = obj.loss(&x0)?;
    // Backtracking on the Armijo condition only needs costs at trial points, so a trial step
    // that makes the solve fail (cost +∞: θ overflows, the trajectory blows up) is simply
    // shortened; Moré–Thuente would also ask for the gradient there.
    let armijo =
        ArmijoCondition::new(1e-4).map_err(|e| Error::param("armijo", 1e-4, e.to_string()))?;
    let ls = BacktrackingLineSearch::new(armijo)
        .rho(0.5)
        .map_err(|e| Error::param("rho", 0.5, e.to_string()))?;
    let solver = LBFGS::new(ls, opts.memory)
        .with_tolerance_grad(opts.grad_tol)
        .map_err(|e| Error::param("grad_tol", opts.grad_tol, e.to_string()))?
        // Stop once an iteration no longer changes the loss beyond rounding.
        .with_tolerance_cost(4.0 * f64::EPSILON * initial_loss.abs())
        .map_err(|e| Error::param("cost tolerance", initial_loss, e.to_string()))?;
    let res = Executor::new(ByRef(&obj), solver)
        .configure(|s| s.param(x0.clone()).max_iters(opts.max_iters))
        .run()
        .map_err(|e| Error::Diverged {
            method: "L-BFGS (argmin) on the ODE fit".into(),
            iteration: 0,
            detail: e.to_string(),
        })?;
    let st = res.state();
    let x = st.get_best_param().cloned().unwrap_or(x0);
    let (loss, g) = obj.grad(&x)?;
    let counts = st.get_func_counts();
    Ok(FitReport {
        params: obj.theta(&x),
        loss,
        initial_loss,
        grad_norm: Array1::from(g).mapv(|v| v * v).sum().sqrt(),
        iterations: st.get_iter(),
        cost_evals: counts.get("cost_count").copied().unwrap_or(0),
        gradient_evals: counts.get("gradient_count").copied().unwrap_or(0),
        rhs_evals: obj.rhs_evals.get(),
        termination: st.get_termination_status().to_string(),
    })
}
