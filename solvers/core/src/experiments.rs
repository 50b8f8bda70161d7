//! The core's command-level tasks as library functions: certified sparse regression, TV
//! denoising and TV deblurring. Each validates its input, runs the solver and returns the
//! solution with a serializable report (the `hyperprox solve`, `denoise` and `deblur` commands
//! print these reports; `hyperprox bench` runs the same functions).

use crate::device::Device;
use crate::error::{Error, Result};
use crate::func::Groups;
use crate::func::{
    Function, IndBox, Logistic, NormL1, NormL21, Prox, SeparableSum, SqrNormL2, TotalVariation,
    Translate, TvKind,
};
use crate::linalg::Real;
use crate::ops::{Boundary, Conv2d, ConvMethod, DenseMatrix, Gradient2d, Stack};
use crate::solve::{
    lambda_grid, lasso_path, Admm, AdmmParams, CertificateKind, CoordinateDescent,
    CoordinateDescentParams, Fista, FistaParams, LassoPenalty, LassoProblem, LogisticCd,
    LogisticL1Problem, NoObserver, Pdhg, PdhgParams, Solution, TerminationReason,
};
use ndarray::{Array1, Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Solvers of the certified sparse-regression problems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum SparseSolver {
    /// Coordinate descent with gap-safe screening.
    Cd,
    /// FISTA with the duality gap as stopping certificate.
    Fista,
    /// ADMM (Cholesky of AᵀA + ρI or its Woodbury form), gap-certified (least squares only).
    Admm,
}

/// How λ is given: a value, or a fraction of `λ_max` (the smallest λ whose solution is 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LambdaChoice {
    /// λ itself.
    Value(f64),
    /// `ratio · λ_max`.
    Ratio(f64),
}

impl LambdaChoice {
    /// The value of λ, given `λ_max`; `Err` unless it is finite and positive.
    pub fn resolve(self, lambda_max: impl FnOnce() -> Result<f64>) -> Result<f64> {
        let lambda = match self {
            LambdaChoice::Value(l) => l,
            LambdaChoice::Ratio(r) if r >= 0.0 => r * lambda_max()?,
            LambdaChoice::Ratio(r) => {
                return Err(Error::param("lambda ratio", r, "must be >= 0"));
            }
        };
        if !(lambda > 0.0) || !lambda.is_finite() {
            return Err(Error::param("lambda", lambda, "must be finite and > 0"));
        }
        Ok(lambda)
    }
}

/// Settings of a certified sparse-regression solve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SolveSettings {
    /// Algorithm.
    pub solver: SparseSolver,
    /// Duality-gap tolerance: absolute, or relative to `P(0)` if `relative`.
    pub tol: f64,
    /// Iteration (epoch) cap.
    pub max_iters: usize,
    /// Coordinate descent: working sets (with Anderson and dual extrapolation for ℓ1 and
    /// elastic net, prox-Newton for logistic-l1; see [`CoordinateDescentParams::working_sets`]).
    pub working_sets: bool,
    /// Stop at a gap `≤ tol·P(0)` (`P(0) = ‖b‖²/(2n)` for the Lasso family, `log 2` for
    /// logistic regression) instead of `≤ tol`: the stopping test then does not depend on the
    /// scale of the data (`b → s·b`, `λ → s·λ` scales `x` by `s` and stops at the same iterate).
    pub relative: bool,
    /// Where FISTA runs ([`Device::Cuda`]: the ℓ1 Lasso with a dense design on the GPU;
    /// coordinate descent and ADMM run on the CPU only).
    pub device: Device,
}

impl SolveSettings {
    /// The absolute gap tolerance for an objective `P(0) = p0` at `x = 0`; `Err` for a tolerance
    /// that is not finite and positive.
    /// Also `Err` for `max_iters = 0`.
    pub fn gap_tol(&self, p0: impl FnOnce() -> Result<f64>) -> Result<f64> {
        check_tol(self.tol)?;
        check_iters(self.max_iters)?;
        Ok(if self.relative {
            (self.tol * p0()?).max(f64::MIN_POSITIVE)
        } else {
            self.tol
        })
    }
}

impl Default for SolveSettings {
    fn default() -> Self {
        Self {
            solver: SparseSolver::Cd,
            tol: 1e-8,
            max_iters: 100_000,
            working_sets: true,
            relative: false,
            device: Device::Cpu,
        }
    }
}

/// The report of a certified sparse-regression solve.
#[derive(Clone, Debug, Serialize)]
pub struct SolveReport {
    /// Problem name (`lasso`, `elastic-net`, `group-lasso`, `logistic-l1`).
    pub problem: String,
    /// `float64`, or `float32` for float32 data.
    pub precision: &'static str,
    /// Algorithm.
    pub solver: SparseSolver,
    /// Objective `P(x)` of the problem as stated (`1/n`-scaled data term).
    pub objective: f64,
    /// Duality gap at `x` (the certificate).
    pub gap: f64,
    /// Always `duality_gap`.
    pub certificate: &'static str,
    /// Iterations (epochs for coordinate descent).
    pub iterations: usize,
    /// Wall-clock seconds of the solve.
    pub time_s: f64,
    /// Whether the gap reached the tolerance.
    pub converged: bool,
    /// Nonzero coefficients.
    pub nnz: usize,
    /// λ used.
    pub lambda: f64,
    /// Logistic labels given as {0, 1} and mapped to {−1, +1}.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels_mapped_from_01: Option<bool>,
    /// Rows of `A`.
    pub n_samples: usize,
    /// Columns of `A`.
    pub n_features: usize,
    /// The GPU it ran on (absent: the CPU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl SolveReport {
    fn new<T: Real>(problem: &str, s: &SolveSettings, sol: &Solution<T, ()>, time_s: f64) -> Self {
        Self {
            problem: problem.into(),
            precision: precision_name::<T>(),
            solver: s.solver,
            objective: sol.objective.as_f64(),
            gap: sol.certificate.as_f64(),
            certificate: "duality_gap",
            iterations: sol.iterations,
            time_s,
            converged: sol.reason == TerminationReason::Converged,
            nnz: sol.x.iter().filter(|&&v| v != T::zero()).count(),
            lambda: f64::NAN,
            labels_mapped_from_01: None,
            n_samples: 0,
            n_features: sol.x.len(),
            device: None,
        }
    }
}

/// One point of a [`PathReport`].
#[derive(Clone, Debug, Serialize)]
pub struct PathPointReport {
    /// `λ`.
    pub lambda: f64,
    /// `P(x)`.
    pub objective: f64,
    /// The certified duality gap.
    pub gap: f64,
    /// Epochs of this solve.
    pub epochs: usize,
    /// Outer iterations of the working-set solver (gap evaluations; 0 for plain epochs).
    pub outer: usize,
    /// Nonzero coefficients.
    pub nnz: usize,
    /// Whether the gap reached the tolerance.
    pub converged: bool,
}

/// The report of a regularization path ([`solve_path`]).
#[derive(Clone, Debug, Serialize)]
pub struct PathReport {
    /// Problem name (`lasso`, `elastic-net`, `group-lasso`).
    pub problem: String,
    /// Always coordinate descent.
    pub solver: SparseSolver,
    /// Always `duality_gap`.
    pub certificate: &'static str,
    /// `λ_max` (the first point; x = 0 there).
    pub lambda_max: f64,
    /// The smallest λ as a fraction of `λ_max`.
    pub lambda_min_ratio: f64,
    /// Wall-clock seconds of the whole path.
    pub time_s: f64,
    /// Total epochs.
    pub epochs: usize,
    /// Whether every point reached the tolerance.
    pub converged: bool,
    /// Rows of `A`.
    pub n_samples: usize,
    /// Columns of `A`.
    pub n_features: usize,
    /// The points, from `λ_max` down.
    pub path: Vec<PathPointReport>,
}

/// The path of a Lasso-type problem on `n` values of `λ` from `λ_max` down to
/// `min_ratio·λ_max` ([`crate::solve::lasso_path`]: warm starts, strong rule, working sets),
/// each point certified to the settings' gap. Returns the solutions (one row per `λ`) and the
/// report. Only coordinate descent computes paths.
pub fn solve_path(
    a: impl Into<crate::solve::Design<f64>>,
    b: Array1<f64>,
    penalty: LassoPenalty<f64>,
    n: usize,
    min_ratio: f64,
    name: &str,
    s: &SolveSettings,
) -> Result<(Array2<f64>, PathReport)> {
    if s.solver != SparseSolver::Cd {
        return Err(Error::param(
            "solver",
            format!("{:?}", s.solver).to_lowercase(),
            "a path is computed by coordinate descent (--solver cd)",
        ));
    }
    let a: crate::solve::Design<f64> = a.into().into_column_major();
    let (n_samples, p) = a.dim();
    let lmax = LassoProblem::lambda_max(&a, b.view(), &penalty)?;
    let lambdas = lambda_grid(lmax, n, min_ratio)?;
    let zero_obj = 0.5 * b.dot(&b) / n_samples.max(1) as f64;
    let tol = s.gap_tol(|| Ok(zero_obj))?;
    let params = CoordinateDescentParams::default()
        .with_tol(tol)
        .with_max_epochs(s.max_iters)
        .with_working_sets(s.working_sets);
    let t0 = Instant::now();
    let pts = lasso_path(a, b, penalty, &lambdas, params)?;
    let time_s = t0.elapsed().as_secs_f64();
    let mut xs = Array2::zeros((pts.len(), p));
    for (mut row, pt) in xs.rows_mut().into_iter().zip(&pts) {
        row.assign(&pt.x);
    }
    let path: Vec<PathPointReport> = pts
        .iter()
        .map(|pt| PathPointReport {
            lambda: pt.lambda,
            objective: pt.objective,
            gap: pt.gap,
            epochs: pt.epochs,
            outer: pt.outer,
            nnz: pt.x.iter().filter(|v| **v != 0.0).count(),
            converged: pt.converged,
        })
        .collect();
    let report = PathReport {
        problem: name.into(),
        solver: SparseSolver::Cd,
        certificate: "duality_gap",
        lambda_max: lmax,
        lambda_min_ratio: min_ratio,
        time_s,
        epochs: path.iter().map(|p| p.epochs).sum(),
        converged: path.iter().all(|p| p.converged),
        n_samples,
        n_features: p,
        path,
    };
    Ok((xs, report))
}

fn strip<T, S>(s: Solution<T, S>) -> Solution<T, ()> {
    Solution {
        x: s.x,
        state: (),
        reason: s.reason,
        iterations: s.iterations,
        objective: s.objective,
        certificate: s.certificate,
        kind: s.kind,
    }
}

/// ADMM on a Lasso-type problem: `n·P(x) = ½‖Ax − b‖² + nλΩ(x)` is solved unscaled and
/// certified by `P`'s duality gap; the returned objective is `P(x)`.
pub fn lasso_admm<T: Real>(
    prob: &LassoProblem<T>,
    tol: T,
    max_iters: usize,
) -> Result<Solution<T, ()>> {
    let n = T::c(prob.n_samples() as f64);
    let Some(dense) = prob.a() else {
        return Err(Error::param(
            "solver",
            "admm",
            "ADMM factors a dense A^T A + rho I; with a sparse design use --solver cd or fista",
        ));
    };
    let a_op = DenseMatrix::new(dense.to_owned())?;
    let scaled = LassoProblem::new(
        dense.to_owned(),
        prob.b().to_owned(),
        n * prob.lambda(),
        prob.penalty().clone(),
    )?;
    let g = scaled.penalty_function()?;
    let params = AdmmParams::default()
        .with_tol(tol)
        .with_max_iters(max_iters);
    let mut s = strip(
        Admm::dense(&a_op, prob.b().to_owned(), &*g, params)?
            .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x.view()))
            .run(Array1::zeros(prob.n_features()).view(), NoObserver)?,
    );
    s.objective = prob.objective(s.x.view())?;
    Ok(s)
}

/// The FISTA settings of a gap-certified Lasso solve (on any device): no objective per
/// iteration (one product with `A` less; no restart needs it); the gap, every 10 iterations,
/// is the stopping test, and the objective is computed at the end.
pub(crate) fn lasso_fista_params<T: Real>(tol: T, max_iters: usize) -> FistaParams<T> {
    FistaParams {
        track_objective: false,
        ..FistaParams::default()
            .with_tol(tol)
            .with_max_iters(max_iters)
            .with_certificate_every(10)
    }
}

/// FISTA on a Lasso-type problem, certified by the duality gap (checked every 10 iterations).
pub fn lasso_fista<T: Real>(
    prob: &LassoProblem<T>,
    tol: T,
    max_iters: usize,
) -> Result<Solution<T, ()>> {
    let f = prob.smooth_part()?;
    let g = prob.penalty_function()?;
    let params = lasso_fista_params(tol, max_iters);
    let mut s = Fista::new(&f, &*g, params)
        .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x.view()))
        .run(Array1::zeros(prob.n_features()).view(), NoObserver)?;
    s.objective = prob.objective(s.x.view())?;
    Ok(strip(s))
}

/// Solves a Lasso-type problem (ℓ1, elastic net, group lasso) to a certified duality gap.
/// Returns `x` and the report (`name` is the report's problem name).
pub fn solve_penalized<T: Real>(
    prob: &LassoProblem<T>,
    name: &str,
    s: &SolveSettings,
) -> Result<(Array1<T>, SolveReport)> {
    if !s.device.is_cpu() && s.solver != SparseSolver::Fista {
        return Err(Error::param(
            "solver",
            format!("{:?}", s.solver).to_lowercase(),
            "on the GPU the Lasso runs FISTA: pass --solver fista (or --device cpu)",
        ));
    }
    let zero = Array1::zeros(prob.n_features());
    let p0 = prob.objective(zero.view())?.as_f64();
    let tol = T::c(s.gap_tol(|| Ok(p0))?);
    check_precision::<T>(tol.as_f64(), p0)?;
    let t0 = Instant::now();
    let sol = match s.solver {
        SparseSolver::Cd => {
            let params = CoordinateDescentParams::default()
                .with_tol(tol)
                .with_max_epochs(s.max_iters)
                .with_working_sets(s.working_sets);
            strip(
                CoordinateDescent::new(prob, params)?
                    .run(Array1::zeros(prob.n_features()).view(), NoObserver)?,
            )
        }
        SparseSolver::Admm => lasso_admm(prob, tol, s.max_iters)?,
        SparseSolver::Fista => match s.device {
            Device::Cpu => lasso_fista(prob, tol, s.max_iters)?,
            Device::Cuda(k) => lasso_fista_gpu(k, prob, tol, s.max_iters)?,
        },
    };
    let mut r = SolveReport::new(name, s, &sol, t0.elapsed().as_secs_f64());
    r.lambda = prob.lambda().as_f64();
    r.n_samples = prob.n_samples();
    if !s.device.is_cpu() {
        r.device = Some(s.device.to_string());
    }
    Ok((sol.x, r))
}

/// [`lasso_fista`] on CUDA device `k` (the core FISTA on device vectors); without the `cuda`
/// feature, the error saying how to rebuild.
fn lasso_fista_gpu<T: Real>(
    k: usize,
    prob: &LassoProblem<T>,
    tol: T,
    max_iters: usize,
) -> Result<Solution<T, ()>> {
    #[cfg(feature = "cuda")]
    {
        let gpu = crate::cuda::Gpu::new(k)?;
        crate::cuda::solve_lasso(&gpu, prob, tol, max_iters)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (k, prob, tol, max_iters);
        Err(crate::device::no_cuda_build())
    }
}

/// Sparse logistic regression `(1/n)Σ log(1 + exp(−bᵢaᵢᵀx)) + λ‖x‖₁` to a certified duality
/// gap. Labels in {−1, +1}, or in {0, 1} (mapped, and said so in the report). `a`: a dense
/// `Array2` or a sparse [`Design`](crate::solve::Design).
pub fn solve_logistic(
    a: impl Into<crate::solve::Design<f64>>,
    mut labels: Array1<f64>,
    lambda: LambdaChoice,
    s: &SolveSettings,
) -> Result<(Array1<f64>, SolveReport)> {
    // P(0) = log 2 whatever the data.
    let tol = s.gap_tol(|| Ok(std::f64::consts::LN_2))?;
    let mapped = labels.iter().all(|&v| v == 0.0 || v == 1.0);
    if mapped {
        labels.mapv_inplace(|v| 2.0 * v - 1.0);
    }
    let a: crate::solve::Design<f64> = a.into().into_column_major();
    let (n, p) = a.dim();
    crate::linalg::check_len("logistic-l1", "labels (rows of A)", n, labels.len())?;
    let lambda = lambda.resolve(|| Ok(LogisticL1Problem::lambda_max(&a, labels.view())))?;
    let prob = LogisticL1Problem::with_design(a, labels.clone(), lambda)?;
    let t0 = Instant::now();
    let x0 = Array1::zeros(p);
    let mut sol = match s.solver {
        SparseSolver::Cd => {
            let params = CoordinateDescentParams::default()
                .with_tol(tol)
                .with_max_epochs(s.max_iters)
                .with_working_sets(s.working_sets);
            strip(LogisticCd::new(&prob, params)?.run(x0.view(), NoObserver)?)
        }
        SparseSolver::Fista => {
            let f = Logistic::new(prob.design().clone(), labels)?;
            let g = NormL1::new(n as f64 * lambda)?;
            let params = FistaParams::default()
                .with_tol(tol)
                .with_max_iters(s.max_iters)
                .with_certificate_every(10);
            let s = Fista::new(&f, &g, params)
                .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x.view()))
                .run(x0.view(), NoObserver)?;
            strip(s)
        }
        SparseSolver::Admm => {
            return Err(Error::param(
                "solver",
                "admm",
                "ADMM applies to least-squares problems; use cd or fista for logistic-l1",
            ))
        }
    };
    let time_s = t0.elapsed().as_secs_f64();
    sol.objective = prob.objective(sol.x.view())?;
    let mut r = SolveReport::new("logistic-l1", s, &sol, time_s);
    r.lambda = lambda;
    r.labels_mapped_from_01 = Some(mapped);
    r.n_samples = n;
    Ok((sol.x, r))
}

/// The report of a TV denoising or deblurring solve.
#[derive(Clone, Debug, Serialize)]
pub struct TvReport {
    /// `rof` (denoising) or `tv-deblur`.
    pub problem: &'static str,
    /// `float64`, or `float32` for float32 data.
    pub precision: &'static str,
    /// Isotropic or anisotropic TV (denoising).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tv: Option<&'static str>,
    /// `fgp` or `pdhg`.
    pub solver: &'static str,
    /// Objective at the solution.
    pub objective: f64,
    /// Duality gap (the certificate).
    pub gap: f64,
    /// Gap relative to the objective.
    pub relative_gap: f64,
    /// Name of the certificate.
    pub certificate: &'static str,
    /// Iterations.
    pub iterations: usize,
    /// Wall-clock seconds of the solve.
    pub time_s: f64,
    /// Whether the certificate reached the tolerance.
    pub converged: bool,
    /// λ.
    pub lambda: f64,
    /// Denoising: `λ̂(y) ≥ λ_max`, the weight from which the answer is the constant mean image
    /// (returned at once, with a closed-form certificate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda_max_bound: Option<f64>,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// The GPU it ran on (absent: the CPU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

fn check_lambda_tol(lambda: f64, tol: f64) -> Result<()> {
    if !(lambda >= 0.0) || !lambda.is_finite() {
        return Err(Error::param("lambda", lambda, "must be finite and >= 0"));
    }
    check_tol(tol)
}

/// `Err` for an iteration cap of 0 (nothing would run).
fn check_iters(max_iters: usize) -> Result<()> {
    if max_iters == 0 {
        return Err(Error::param("max_iters", 0, "must be at least 1"));
    }
    Ok(())
}

/// `float32` or `float64`: the precision of `T`.
fn precision_name<T: Real>() -> &'static str {
    if T::epsilon().as_f64() > 1e-10 {
        "float32"
    } else {
        "float64"
    }
}

/// `Err` when a gap tolerance is below what arithmetic in `T` can certify: the gap is a
/// difference of the primal and dual values, each rounded to about `ε_T` times the objective
/// `P(0)` of the zero start or more: below `30·ε·P(0)` (`3.6e-6·P(0)` in float32) a float32
/// gap is mostly rounding, so such tolerances are refused up front. Only f32
/// is checked (for f64 the floor, `~1e-13·P(0)`, is below any tolerance a user asks for and
/// the solvers stop on stalls).
pub fn check_precision<T: Real>(tol: f64, p0: f64) -> Result<()> {
    let eps = T::epsilon().as_f64();
    if eps > 1e-10 && tol < 30.0 * eps * p0 {
        return Err(Error::param(
            "tol",
            tol,
            format!(
                "float32 data cannot certify a duality gap below about {:.1e} (30·eps·P(0), P(0) = {p0:.3e}): pass --relative --tol 1e-5 or more, or float64 arrays",
                30.0 * eps * p0
            ),
        ));
    }
    Ok(())
}

/// `Err` when a relative tolerance (of the TV solvers) is below what arithmetic in `T` can
/// certify: below `100·ε_T` (`1.2e-5` in float32).
pub fn check_relative_precision<T: Real>(tol: f64) -> Result<()> {
    let eps = T::epsilon().as_f64();
    if eps > 1e-10 && tol < 100.0 * eps {
        return Err(Error::param(
            "tol",
            tol,
            format!(
                "float32 data cannot certify a relative error below about {:.1e} (100·eps): pass --tol 1e-4 or more, or float64 data",
                100.0 * eps
            ),
        ));
    }
    Ok(())
}

/// `Err` unless `tol` is finite and `> 0` (a tolerance of 0 would never be reached, a
/// negative, NaN or infinite one is meaningless).
pub fn check_tol(tol: f64) -> Result<()> {
    if !(tol > 0.0) || !tol.is_finite() {
        return Err(Error::param("tol", tol, "must be finite and > 0"));
    }
    Ok(())
}

/// ROF denoising `min ½‖x − y‖² + λ·TV(x)` by the dual FGP method, stopped at a certified
/// relative objective error `tol` (duality gap `≤ tol·(P − gap)`).
pub fn denoise_tv<T: Real>(
    y: ArrayView2<'_, T>,
    lambda: f64,
    kind: TvKind,
    tol: f64,
    max_iters: usize,
) -> Result<(Array2<T>, TvReport)> {
    denoise_tv_on(Device::Cpu, y, lambda, kind, tol, max_iters)
}

/// [`denoise_tv`] on a chosen device: the same FGP loop, with the GPU's fused kernels on
/// [`Device::Cuda`] ([`cuda::solve_rof`](crate::cuda::solve_rof), feature `cuda`).
pub fn denoise_tv_on<T: Real>(
    device: Device,
    y: ArrayView2<'_, T>,
    lambda: f64,
    kind: TvKind,
    tol: f64,
    max_iters: usize,
) -> Result<(Array2<T>, TvReport)> {
    check_lambda_tol(lambda, tol)?;
    check_iters(max_iters)?;
    check_relative_precision::<T>(tol)?;
    let (h, w) = y.dim();
    let tv =
        TotalVariation::new(h, w, T::c(lambda), kind)?.with_tolerance(T::c(1e-6), max_iters)?;
    let flat = Array1::from_iter(y.iter().copied());
    let t0 = Instant::now();
    let r = match device {
        Device::Cpu => tv.solve_rof(flat.view(), T::c(tol))?,
        #[cfg(feature = "cuda")]
        Device::Cuda(k) => {
            let gpu = crate::cuda::Gpu::new(k)?;
            crate::cuda::solve_rof(&gpu, &tv, flat.view(), T::c(tol))?
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => return Err(crate::device::no_cuda_build()),
    };
    let time_s = t0.elapsed().as_secs_f64();
    let lambda_max_bound = tv.constant_threshold(flat.view())?.as_f64();
    let objective =
        (T::c(0.5) * (&r.x - &flat).mapv(|v| v * v).sum() + tv.value(r.x.view())?).as_f64();
    let gap = r.gap.as_f64();
    let report = TvReport {
        problem: "rof",
        precision: precision_name::<T>(),
        tv: Some(match kind {
            TvKind::Isotropic => "isotropic",
            TvKind::Anisotropic => "anisotropic",
        }),
        solver: "fgp",
        objective,
        gap,
        // 0/0 for a constant image (objective and gap 0): the gap is then exactly 0.
        relative_gap: if gap == 0.0 {
            0.0
        } else {
            gap / (objective - gap)
        },
        certificate: "duality_gap",
        iterations: r.iterations,
        time_s,
        converged: true,
        lambda,
        lambda_max_bound: Some(lambda_max_bound),
        height: h,
        width: w,
        device: (!device.is_cpu()).then(|| device.to_string()),
    };
    Ok((to_image(r.x, h, w)?, report))
}

fn to_image<T: Real>(x: Array1<T>, h: usize, w: usize) -> Result<Array2<T>> {
    let n = x.len();
    x.into_shape_with_order((h, w))
        .map_err(|_| Error::shape("image", "pixels", h * w, n))
}

/// TV deblurring `min_{x ∈ [0,1]} ½‖k ∗ x − y‖² + λ·TV(x)` by PDHG on `K = [blur; ∇]`, stopped
/// at a certified relative primal–dual gap `tol`.
pub fn deblur_tv<T: Real + rustfft::FftNum>(
    y: ArrayView2<'_, T>,
    kernel: Array2<T>,
    lambda: f64,
    boundary: Boundary,
    tol: f64,
    max_iters: usize,
) -> Result<(Array2<T>, TvReport)> {
    check_lambda_tol(lambda, tol)?;
    check_iters(max_iters)?;
    check_relative_precision::<T>(tol)?;
    let (h, w) = y.dim();
    let n = h * w;
    let blur = Conv2d::new(h, w, kernel, boundary, ConvMethod::Auto)?;
    let yv = Array1::from_iter(y.iter().copied());
    let kop = Stack::new(&blur, Gradient2d::new(h, w)?)?;
    let pairs: Vec<Vec<usize>> = (0..n).map(|p| vec![p, n + p]).collect();
    let fidelity = Translate::new(SqrNormL2::new(T::one())?, yv.clone())?;
    let tv = NormL21::new(Groups::new(2 * n, pairs)?, T::c(lambda))?;
    let g = SeparableSum::new(vec![
        (n, Box::new(fidelity) as Box<dyn Prox<T>>),
        (2 * n, Box::new(tv)),
    ])?;
    let f = IndBox::new(T::zero(), T::one())?;
    let x0 = yv.mapv(|v| v.max(T::zero()).min(T::one()));
    let params = PdhgParams::default()
        .with_tol(T::c(tol))
        .relative(true)
        .with_max_iters(max_iters);
    let t0 = Instant::now();
    let sol = Pdhg::new(&f, &g, &kop, params).run(x0.view(), NoObserver)?;
    let report = TvReport {
        problem: "tv-deblur",
        precision: precision_name::<T>(),
        tv: None,
        solver: "pdhg",
        objective: sol.objective.as_f64(),
        gap: sol.certificate.as_f64(),
        relative_gap: (sol.certificate / sol.objective.abs()).as_f64(),
        certificate: sol.kind.name(),
        iterations: sol.iterations,
        time_s: t0.elapsed().as_secs_f64(),
        converged: sol.reason == TerminationReason::Converged,
        lambda,
        lambda_max_bound: None,
        height: h,
        width: w,
        device: None,
    };
    Ok((to_image(sol.x, h, w)?, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn small_lasso(lambda: f64) -> LassoProblem<f64> {
        let a = array![
            [1.0, 0.5, 0.0],
            [0.0, 1.0, 0.3],
            [0.2, 0.0, 1.0],
            [0.5, 0.5, 0.5]
        ];
        let b = array![1.0, -0.5, 0.8, 0.2];
        LassoProblem::new(
            a,
            b,
            lambda,
            crate::solve::LassoPenalty::L1 { weights: None },
        )
        .unwrap()
    }

    #[test]
    fn lambda_choice_resolves_and_rejects() {
        assert_eq!(LambdaChoice::Value(0.3).resolve(|| Ok(9.0)).unwrap(), 0.3);
        assert_eq!(LambdaChoice::Ratio(0.5).resolve(|| Ok(4.0)).unwrap(), 2.0);
        assert!(LambdaChoice::Ratio(-0.1).resolve(|| Ok(4.0)).is_err());
        assert!(LambdaChoice::Ratio(0.0).resolve(|| Ok(4.0)).is_err());
        assert!(LambdaChoice::Value(f64::NAN).resolve(|| Ok(1.0)).is_err());
    }

    #[test]
    fn every_solver_reports_the_certified_gap_of_its_solution() {
        let prob = small_lasso(0.05);
        // P* from plain screened epochs to a gap of 1e-15.
        let params = CoordinateDescentParams::default()
            .with_tol(1e-15)
            .with_working_sets(false);
        let p_star = CoordinateDescent::new(&prob, params)
            .unwrap()
            .run(Array1::zeros(3).view(), NoObserver)
            .unwrap()
            .objective;
        for solver in [SparseSolver::Cd, SparseSolver::Fista, SparseSolver::Admm] {
            let s = SolveSettings {
                solver,
                tol: 1e-10,
                ..SolveSettings::default()
            };
            let (x, r) = solve_penalized(&prob, "lasso", &s).unwrap();
            assert!(r.converged && r.gap <= 1e-10, "{solver:?}: {r:?}");
            // The report describes x: a gap that certifies it (at most the gap at the
            // rescaled residual: working-set CD keeps a better dual point), its objective and
            // its support.
            assert!(r.gap <= prob.duality_gap(x.view()).unwrap() + 1e-12);
            assert!(r.objective - p_star <= r.gap + 1e-15, "{solver:?}");
            assert!((prob.objective(x.view()).unwrap() - r.objective).abs() <= 1e-12);
            assert_eq!(r.nnz, x.iter().filter(|v| **v != 0.0).count());
            assert_eq!((r.n_samples, r.n_features, r.lambda), (4, 3, 0.05));
        }
    }

    #[test]
    fn logistic_maps_01_labels_and_refuses_admm() {
        let a = array![[1.0, 0.2], [-0.5, 1.0], [0.3, -1.0], [1.0, 1.0]];
        let y01 = array![1.0, 0.0, 0.0, 1.0];
        let ypm = y01.mapv(|v| 2.0 * v - 1.0);
        let s = SolveSettings::default();
        let (x1, r1) = solve_logistic(a.clone(), y01, LambdaChoice::Ratio(0.3), &s).unwrap();
        let (x2, r2) =
            solve_logistic(a.clone(), ypm.clone(), LambdaChoice::Ratio(0.3), &s).unwrap();
        assert_eq!(r1.labels_mapped_from_01, Some(true));
        assert_eq!(r2.labels_mapped_from_01, Some(false));
        assert_eq!(x1, x2);
        let admm = SolveSettings {
            solver: SparseSolver::Admm,
            ..s
        };
        assert!(solve_logistic(a.clone(), ypm.clone(), LambdaChoice::Value(0.1), &admm).is_err());
        assert!(solve_logistic(
            a,
            ypm.slice(ndarray::s![..3]).to_owned(),
            LambdaChoice::Value(0.1),
            &s
        )
        .is_err());
    }

    #[test]
    fn tv_reports_match_their_images() {
        let y = Array2::from_shape_fn((12, 10), |(i, j)| ((i * 7 + j * 3) % 5) as f64 / 5.0);
        let (x, r) = denoise_tv(y.view(), 0.1, TvKind::Isotropic, 1e-8, 10_000).unwrap();
        let tv = TotalVariation::new(12, 10, 0.1, TvKind::Isotropic).unwrap();
        let flat = Array1::from_iter(x.iter().copied());
        let obj = 0.5 * (&x - &y).mapv(|v| v * v).sum() + tv.value(flat.view()).unwrap();
        assert!((obj - r.objective).abs() <= 1e-12 * obj);
        assert!(r.relative_gap <= 1e-8 && r.gap >= 0.0);
        assert!(denoise_tv(y.view(), -1.0, TvKind::Isotropic, 1e-6, 10).is_err());
        let k = array![[0.0, 0.2, 0.0], [0.2, 0.2, 0.2], [0.0, 0.2, 0.0]];
        let (xd, rd) = deblur_tv(y.view(), k, 0.01, Boundary::Reflect, 1e-4, 20_000).unwrap();
        assert!(rd.converged && rd.relative_gap <= 1e-4);
        assert!(
            xd.iter().all(|v| (0.0..=1.0).contains(v)),
            "the box constraint holds"
        );
        assert_eq!(xd.dim(), (12, 10));
    }

    /// float32 data: every solver certifies its float32 gap, and the float32 solution is as
    /// good on the float64 problem as that gap says, up to the rounding of the data to f32
    /// (`2e-6·P(0)`, about 17 float32 epsilons); tolerances float32 cannot certify are refused.
    #[test]
    fn float32_solves_are_certified_and_close_to_the_float64_optimum() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let (n, p) = (60, 150);
        let a = Array2::from_shape_simple_fn((n, p), || {
            let v: f64 = StandardNormal.sample(&mut rng);
            v / (n as f64).sqrt()
        });
        let xt = Array1::from_shape_fn(p, |j| if j % 15 == 0 { 1.0 } else { 0.0 });
        let b = a.dot(&xt) + Array1::from_shape_fn(n, |i| 0.01 * ((i % 7) as f64 - 3.0));
        let pen = crate::solve::LassoPenalty::L1 { weights: None };
        let lmax = LassoProblem::lambda_max(a.view(), b.view(), &pen).unwrap();
        let p64 = LassoProblem::new(a.clone(), b.clone(), 0.1 * lmax, pen.clone()).unwrap();
        let p32 = LassoProblem::new(
            a.mapv(|v| v as f32),
            b.mapv(|v| v as f32),
            (0.1 * lmax) as f32,
            crate::solve::LassoPenalty::L1 { weights: None },
        )
        .unwrap();
        let p_star =
            CoordinateDescent::new(&p64, CoordinateDescentParams::default().with_tol(1e-14))
                .unwrap()
                .run(Array1::zeros(p).view(), NoObserver)
                .unwrap()
                .objective;
        let p0 = 0.5 * b.dot(&b) / n as f64;
        for solver in [SparseSolver::Cd, SparseSolver::Fista, SparseSolver::Admm] {
            let s = SolveSettings {
                solver,
                tol: 1e-5,
                relative: true,
                ..SolveSettings::default()
            };
            let (x, r) = solve_penalized(&p32, "lasso", &s).unwrap();
            assert_eq!(r.precision, "float32");
            assert!(r.converged && r.gap <= 1e-5 * p0, "{solver:?}: {r:?}");
            let obj = p64.objective(x.mapv(f64::from).view()).unwrap();
            assert!(
                obj - p_star <= r.gap + 2e-6 * p0,
                "{solver:?}: P(x32) − P* = {:e} > gap {:e} + rounding",
                obj - p_star,
                r.gap
            );
        }
        let tight = SolveSettings {
            tol: 1e-9,
            ..SolveSettings::default()
        };
        let e = solve_penalized(&p32, "lasso", &tight)
            .unwrap_err()
            .to_string();
        assert!(e.contains("float32") && e.contains("--relative"), "{e}");
        // The same tolerance in float64 is accepted.
        assert!(solve_penalized(&p64, "lasso", &tight).is_ok());
    }

    /// TV denoising of float32 data: certified to the relative tolerance, and its objective
    /// within that tolerance (plus rounding) of the float64 solve of the same image.
    #[test]
    fn float32_denoising_is_certified_and_close_to_float64() {
        let y = Array2::from_shape_fn((24, 20), |(i, j)| {
            ((i * 7 + j * 3) % 11) as f64 / 11.0 + if i > 12 { 0.5 } else { 0.0 }
        });
        let (x64, r64) = denoise_tv(y.view(), 0.2, TvKind::Isotropic, 1e-6, 100_000).unwrap();
        let (x32, r32) = denoise_tv(
            y.mapv(|v| v as f32).view(),
            0.2,
            TvKind::Isotropic,
            1e-4,
            100_000,
        )
        .unwrap();
        assert_eq!((r64.precision, r32.precision), ("float64", "float32"));
        assert!(r32.converged && r32.relative_gap <= 1e-4, "{r32:?}");
        let tv = TotalVariation::new(24, 20, 0.2, TvKind::Isotropic).unwrap();
        let obj = |x: &Array2<f64>| {
            let f = Array1::from_iter(x.iter().copied());
            let yf = Array1::from_iter(y.iter().copied());
            0.5 * (&f - &yf).mapv(|v| v * v).sum() + tv.value(f.view()).unwrap()
        };
        let (o64, o32) = (obj(&x64), obj(&x32.mapv(f64::from)));
        assert!(o32 - o64 <= (1e-4 + 1e-6) * o64, "{o32} vs {o64}");
        assert!(denoise_tv(
            y.mapv(|v| v as f32).view(),
            0.2,
            TvKind::Isotropic,
            1e-7,
            100
        )
        .unwrap_err()
        .to_string()
        .contains("float32"));
    }
}
