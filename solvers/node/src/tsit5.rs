//! Tsitouras' 5(4) Runge–Kutta pair with its free 4th-order interpolant, a PI step-size
//! controller, per-step error and stiffness estimates, and a discrete adjoint through the
//! recorded stages.
//!
//! # One step
//! With `k₁ = f(t, u)` (first same as last: the previous step's `k₇`),
//!
//! ```text
//! gᵢ = u + h Σ_{l<i} a_{il} k_l,   kᵢ = f(t + cᵢh, gᵢ)      (i = 2..6)
//! u⁺ = u + h Σ_{l≤6} a_{7l} k_l,   k₇ = f(t + h, u⁺)
//! e  = h Σ_{l≤7} b̃_l k_l,          sc = atol + rtol·max(|u|, |u⁺|)
//! EEst = √(mean((e/sc)²)),          ρ = ‖k₇ − k₆‖ / ‖u⁺ − g₆‖
//! ```
//!
//! A step is accepted when `EEst ≤ 1`. The next step size follows OrdinaryDiffEq's PI
//! controller for a method of order 5: `q = EEst^β₁ / q_old^β₂` with `β₁ = 7/50`,
//! `β₂ = 2/25`, clamped to `[1/q_max, 1/q_min]` after division by the safety factor
//! `γ = 9/10` (`q_min = 1/5`, `q_max = 10`), `h ← h/q`; after a rejection
//! `h ← h / min(1/q_min, EEst^β₁/γ)`. The first step size is Hairer–Nørsett–Wanner's
//! (Solving ODEs I, §II.4). `ρ` estimates the magnitude of the dominant Jacobian eigenvalue
//! (Shampine's stiffness test as in OrdinaryDiffEq's `eigen_est`); `ρ/3.5068` (the size of
//! Tsit5's stability region on the negative real axis) is SRNODE's per-step value, and
//! `EEst·h` is ERNODE's.
//!
//! # Dense output
//! `u(t + θh) = u + h Σᵢ bᵢ(θ) kᵢ` with Tsitouras' 4th-order interpolation polynomials
//! (`bᵢ(1)` are the step's weights `a₇ᵢ`, `b₇(1) = 0`, `b₁'(0) = 1`); save points are
//! interpolated, not stepped to, so they do not change the step sequence.
//!
//! # Discrete adjoint
//! Reverse mode through the recorded stages of the accepted steps, with the step sizes
//! treated as constants (as the reference code's controller, which sits outside the tape of
//! the step's arithmetic, and the local variant do): the cotangents of the save points enter
//! through the interpolant, those of the regularizers through `e`, `sc`, `ρ`, and each stage
//! passes its cotangent back through the right-hand side's VJP. The FSAL stage `k₇` of one
//! step is `k₁` of the next and is differentiated once.
//!
//! # References
//! * Ch. Tsitouras, "Runge–Kutta pairs of order 5(4) satisfying only the first column
//!   simplifying assumption", Computers & Mathematics with Applications 62 (2011) 770–775.
//! * E. Hairer, S. P. Nørsett, G. Wanner, Solving Ordinary Differential Equations I, §II.4
//!   (starting step size) and §IV.2 (stiffness detection).
//! * A. Pal, Y. Ma, V. Shah, C. Rackauckas, "Opening the blackbox: accelerating neural
//!   differential equations by regularizing internal solver heuristics", ICML 2021.

#![allow(clippy::excessive_precision)] // the published coefficients, digit for digit

use hyperprox_core::diff::Differentiable;
use hyperprox_core::error::{Error, Result};
use ndarray::{Array2, ArrayView2, Zip};
use serde::{Deserialize, Serialize};

/// Nodes `cᵢ`.
pub const C: [f64; 7] = [0.0, 0.161, 0.327, 0.9, 0.980_025_540_904_509_7, 1.0, 1.0];

/// The lower-triangular coefficients `a_{il}` (row `i` = stage `i + 1`; row 6 holds the
/// weights of `u⁺`).
pub const A: [[f64; 6]; 7] = [
    [0.0; 6],
    [0.161, 0.0, 0.0, 0.0, 0.0, 0.0],
    [
        -0.008_480_655_492_356_989,
        0.335_480_655_492_357,
        0.0,
        0.0,
        0.0,
        0.0,
    ],
    [
        2.897_153_057_105_493_5,
        -6.359_448_489_975_075,
        4.362_295_432_869_581_5,
        0.0,
        0.0,
        0.0,
    ],
    [
        5.325_864_828_439_257,
        -11.748_883_564_062_828,
        7.495_539_342_889_836_5,
        -0.092_495_066_361_755_25,
        0.0,
        0.0,
    ],
    [
        5.861_455_442_946_42,
        -12.920_969_317_847_11,
        8.159_367_898_576_159,
        -0.071_584_973_281_401,
        -0.028_269_050_394_068_383,
        0.0,
    ],
    [
        0.096_460_766_818_065_23,
        0.01,
        0.479_889_650_414_499_6,
        1.379_008_574_103_742,
        -3.290_069_515_436_081,
        2.324_710_524_099_774,
    ],
];

/// Error weights `b̃` (5th-order weights minus the embedded 4th-order ones).
pub const BTILDE: [f64; 7] = [
    -0.001_780_011_052_225_777_1,
    -0.000_816_434_459_656_746_9,
    0.007_880_878_010_261_995,
    -0.144_711_007_173_262_9,
    0.582_357_165_452_555_2,
    -0.458_082_105_929_186_97,
    1.0 / 66.0,
];

/// The extent of Tsit5's stability region on the negative real axis (SRNODE's normalization).
pub const STABILITY_SIZE: f64 = 3.5068;

/// Tsitouras' interpolation weights `bᵢ(θ)`, `i = 1..7`.
pub fn interp_weights(th: f64) -> [f64; 7] {
    let t2 = th * th;
    [
        -1.053_088_497_729_021_6
            * th
            * (th - 1.329_989_018_975_141_2)
            * (t2 - 1.436_402_854_171_635_1 * th + 0.713_981_691_707_420_9),
        0.1017 * t2 * (t2 - 2.196_656_833_824_975_4 * th + 1.294_985_250_737_463_1),
        2.490_627_285_651_252_8
            * t2
            * (t2 - 2.385_356_454_720_616_6 * th + 1.578_034_682_080_924_9),
        -16.548_102_889_244_902
            * (th - 1.217_129_272_955_332_4)
            * (th - 0.616_204_060_378_000_9)
            * t2,
        47.379_521_962_819_28
            * (th - 1.203_071_208_372_362_6)
            * (th - 0.658_047_292_653_547_4)
            * t2,
        -34.870_657_861_496_61 * (th - 1.2) * (th - 2.0 / 3.0) * t2,
        2.5 * (th - 1.0) * (th - 0.6) * t2,
    ]
}

/// Tolerances and controller settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// First step size (`None`: Hairer's estimate, two extra evaluations).
    pub dt0: Option<f64>,
    /// Accepted plus rejected steps at most.
    pub max_steps: usize,
}

impl Default for Options {
    /// `rtol = 1e-3`, `atol = 1e-6` (OrdinaryDiffEq's defaults), at most 100 000 steps.
    fn default() -> Self {
        Self {
            rtol: 1e-3,
            atol: 1e-6,
            dt0: None,
            max_steps: 100_000,
        }
    }
}

impl Options {
    /// `rtol = atol = tol`.
    pub fn tol(tol: f64) -> Self {
        Self {
            rtol: tol,
            atol: tol,
            ..Self::default()
        }
    }

    fn check(&self) -> Result<()> {
        for (n, v) in [("rtol", self.rtol), ("atol", self.atol)] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(Error::param(n, v, "tolerances must be positive and finite"));
            }
        }
        if let Some(h) = self.dt0 {
            if !(h > 0.0 && h.is_finite()) {
                return Err(Error::param("dt0", h, "the first step must be positive"));
            }
        }
        if self.max_steps == 0 {
            return Err(Error::param("max_steps", 0, "must be at least 1"));
        }
        Ok(())
    }
}

/// What one accepted step keeps for the adjoint and the regularizers.
#[derive(Clone, Debug)]
pub struct Step {
    /// Start time.
    pub t: f64,
    /// Step size.
    pub h: f64,
    /// Stage arguments `g₁ = u, g₂, …, g₆`.
    pub g: Vec<Array2<f64>>,
    /// Stage values `k₁, …, k₇`.
    pub k: Vec<Array2<f64>>,
    /// The new state `u⁺`.
    pub u1: Array2<f64>,
    /// The scaled error estimate `EEst`.
    pub eest: f64,
    /// The stiffness estimate `ρ`.
    pub rho: f64,
}

impl Step {
    /// `u(t + θh)` by the interpolant.
    pub fn interpolate(&self, th: f64) -> Array2<f64> {
        let b = interp_weights(th);
        let mut out = self.g[0].clone();
        for (bi, k) in b.iter().zip(&self.k) {
            out.scaled_add(self.h * bi, k);
        }
        out
    }
}

/// Counters of one solve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Right-hand-side evaluations (NFE).
    pub nfe: usize,
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected steps (error test failures, or a non-finite stage).
    pub rejected: usize,
}

/// A solve: the states at the save times, the accepted steps and the counters.
#[derive(Clone, Debug)]
pub struct Trajectory {
    /// Save times.
    pub times: Vec<f64>,
    /// States at the save times (B × n each).
    pub states: Vec<Array2<f64>>,
    /// Accepted steps, in order.
    pub steps: Vec<Step>,
    /// Counters.
    pub stats: Stats,
    /// The initial state.
    pub u0: Array2<f64>,
}

impl Trajectory {
    /// The step containing `t` and `θ`, or `None` for `t` at the start.
    pub fn locate(&self, t: f64) -> Result<Option<(usize, f64)>> {
        let t0 = self.steps.first().map_or(f64::NAN, |s| s.t);
        if self.steps.is_empty() || t <= t0 {
            return if self.steps.is_empty() || t == t0 {
                Ok(None)
            } else {
                Err(Error::param("time", t, "before the start of the solve"))
            };
        }
        let j = self.steps.partition_point(|s| s.t + s.h < t);
        let s = self
            .steps
            .get(j)
            .ok_or_else(|| Error::param("time", t, "after the end of the solve"))?;
        Ok(Some((j, ((t - s.t) / s.h).clamp(0.0, 1.0))))
    }

    /// `u(t)` by the dense output.
    pub fn at(&self, t: f64) -> Result<Array2<f64>> {
        Ok(match self.locate(t)? {
            None => self.u0.clone(),
            Some((j, th)) => self.steps[j].interpolate(th),
        })
    }

    /// The final state.
    pub fn last(&self) -> &Array2<f64> {
        self.steps.last().map_or(&self.u0, |s| &s.u1)
    }
}

/// The right-hand side `f(p; u, t)`: a [`Differentiable`] block from `B × n` to `B × n` whose
/// context, if it reads one (`ctx_dim() == 1`), is the time.
pub struct Rhs<'a> {
    f: &'a dyn Differentiable<f64>,
    p: &'a [f64],
}

impl<'a> Rhs<'a> {
    /// `Err` unless `f` maps `n → n` and reads at most one context column.
    pub fn new(f: &'a dyn Differentiable<f64>, p: &'a [f64]) -> Result<Self> {
        if f.in_dim() != f.out_dim() {
            return Err(Error::param(
                "right-hand side",
                f.name(),
                format!(
                    "maps {} → {}; an ODE needs the same width in and out",
                    f.in_dim(),
                    f.out_dim()
                ),
            ));
        }
        if f.ctx_dim() > 1 {
            return Err(Error::param(
                "right-hand side",
                f.name(),
                "its context must be the time alone (width 0 or 1)",
            ));
        }
        hyperprox_core::linalg::check_len(
            "ODE right-hand side",
            "parameters",
            f.num_params(),
            p.len(),
        )?;
        Ok(Self { f, p })
    }

    fn ctx(&self, t: f64, rows: usize) -> Array2<f64> {
        Array2::from_elem((rows, self.f.ctx_dim()), t)
    }

    /// `f(t, u)`.
    pub fn eval(&self, t: f64, u: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        self.f.forward(self.p, u, self.ctx(t, u.nrows()).view())
    }

    /// `(∂f/∂u)ᵀ v`, adding `(∂f/∂p)ᵀ v` to `gp`.
    pub fn vjp(
        &self,
        t: f64,
        u: ArrayView2<'_, f64>,
        v: ArrayView2<'_, f64>,
        gp: &mut [f64],
    ) -> Result<Array2<f64>> {
        self.f.vjp(self.p, u, self.ctx(t, u.nrows()).view(), v, gp)
    }
}

fn rms_scaled(v: &Array2<f64>, u: &Array2<f64>, opts: &Options) -> f64 {
    let n = v.len().max(1) as f64;
    let s: f64 = Zip::from(v).and(u).fold(0.0, |acc, &a, &b| {
        let r = a / (opts.atol + opts.rtol * b.abs());
        acc + r * r
    });
    (s / n).sqrt()
}

fn norm(v: &Array2<f64>) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// One Tsit5 step from `(t, u)` of size `h` given `k₁ = f(t, u)`; counts 6 evaluations.
pub fn step(
    rhs: &Rhs<'_>,
    t: f64,
    u: &Array2<f64>,
    k1: Array2<f64>,
    h: f64,
    opts: &Options,
    nfe: &mut usize,
) -> Result<Step> {
    let mut g = vec![u.clone()];
    let mut k = vec![k1];
    for i in 1..6 {
        let mut gi = u.clone();
        for (l, kl) in k.iter().enumerate() {
            gi.scaled_add(h * A[i][l], kl);
        }
        k.push(rhs.eval(t + C[i] * h, gi.view())?);
        g.push(gi);
    }
    let mut u1 = u.clone();
    for (l, kl) in k.iter().enumerate() {
        u1.scaled_add(h * A[6][l], kl);
    }
    k.push(rhs.eval(t + h, u1.view())?);
    *nfe += 6;
    let mut e = Array2::zeros(u.raw_dim());
    for (b, kl) in BTILDE.iter().zip(&k) {
        e.scaled_add(h * b, kl);
    }
    let n = e.len().max(1) as f64;
    let s: f64 = Zip::from(&e).and(u).and(&u1).fold(0.0, |acc, &ei, &a, &b| {
        let r = ei / (opts.atol + opts.rtol * a.abs().max(b.abs()));
        acc + r * r
    });
    let eest = (s / n).sqrt();
    let rho = {
        let num = norm(&(&k[6] - &k[5]));
        let den = norm(&(&u1 - &g[5]));
        if den > 0.0 && num.is_finite() {
            num / den
        } else {
            0.0
        }
    };
    Ok(Step {
        t,
        h,
        g,
        k,
        u1,
        eest,
        rho,
    })
}

/// Solves `u' = f(p; u, t)` from `u(t₀) = u0` (B × n: the rows are solved together with one
/// step-size sequence and the error norm over all entries) and returns the states at `times`
/// (non-decreasing, the first `≥ t₀`; the last is the end of the solve). `Err` on bad input,
/// on more than `max_steps` steps, or when the step size underflows (a blow-up).
pub fn solve(
    f: &dyn Differentiable<f64>,
    p: &[f64],
    u0: ArrayView2<'_, f64>,
    t0: f64,
    times: &[f64],
    opts: &Options,
) -> Result<Trajectory> {
    opts.check()?;
    let rhs = Rhs::new(f, p)?;
    hyperprox_core::linalg::check_len("ODE solve", "state width", f.in_dim(), u0.ncols())?;
    let flat: Vec<f64> = u0.iter().copied().collect();
    hyperprox_core::linalg::check_finite(
        "ODE solve: initial state",
        ndarray::ArrayView1::from(&flat),
    )?;
    if times.is_empty() {
        return Err(Error::param("times", "[]", "give at least one output time"));
    }
    if !t0.is_finite() || times.iter().any(|t| !t.is_finite()) {
        return Err(Error::param("times", "non-finite", "times must be finite"));
    }
    if times[0] < t0 || times.windows(2).any(|w| w[1] < w[0]) {
        return Err(Error::param(
            "times",
            format!("{:?}…", &times[..times.len().min(4)]),
            "output times must be non-decreasing and not before t₀",
        ));
    }
    let t_end = *times.last().unwrap_or(&t0);
    let u0 = u0.to_owned();
    let mut stats = Stats::default();
    let mut traj = Trajectory {
        times: times.to_vec(),
        states: vec![],
        steps: vec![],
        stats,
        u0: u0.clone(),
    };
    let mut next = 0;
    while next < times.len() && times[next] <= t0 {
        traj.states.push(u0.clone());
        next += 1;
    }
    if t_end <= t0 {
        traj.stats.nfe = 0;
        return Ok(traj);
    }
    let mut k1 = rhs.eval(t0, u0.view())?;
    stats.nfe += 1;
    let mut h = match opts.dt0 {
        Some(h) => h,
        None => initial_step(&rhs, t0, &u0, &k1, opts, &mut stats.nfe)?,
    };
    let (beta1, beta2, qmin, qmax, gamma) = (7.0 / 50.0, 2.0 / 25.0, 0.2, 10.0, 0.9);
    let mut qold: f64 = 1e-4;
    let (mut t, mut u) = (t0, u0);
    while t < t_end {
        if stats.accepted + stats.rejected >= opts.max_steps {
            return Err(Error::Diverged {
                method: "Tsit5".into(),
                iteration: opts.max_steps,
                detail: format!(
                    "{} steps without reaching t = {t_end} (at t = {t}); raise max_steps or the tolerances",
                    opts.max_steps
                ),
            });
        }
        let last = t + h >= t_end || (t_end - t - h) < 1e-12 * t_end.abs().max(1.0);
        let hs = if last { t_end - t } else { h };
        let st = step(&rhs, t, &u, k1.clone(), hs, opts, &mut stats.nfe)?;
        let finite = st.eest.is_finite() && st.u1.iter().all(|v| v.is_finite());
        if finite && st.eest <= 1.0 {
            stats.accepted += 1;
            let t1 = if last { t_end } else { t + hs };
            while next < times.len() && times[next] <= t1 {
                let th = ((times[next] - t) / hs).clamp(0.0, 1.0);
                traj.states.push(if th == 1.0 {
                    st.u1.clone()
                } else {
                    st.interpolate(th)
                });
                next += 1;
            }
            let e = st.eest.max(1e-16);
            let q = (e.powf(beta1) / qold.powf(beta2) / gamma).clamp(1.0 / qmax, 1.0 / qmin);
            qold = e.max(1e-4);
            h = hs / q;
            t = t1;
            u = st.u1.clone();
            k1 = st.k[6].clone();
            traj.steps.push(st);
        } else {
            stats.rejected += 1;
            h = if finite {
                hs / (1.0 / qmin).min(st.eest.powf(beta1) / gamma)
            } else {
                hs * qmin
            };
        }
        if h.is_nan() || h <= 1e-14 * t.abs().max(1.0) {
            return Err(Error::Diverged {
                method: "Tsit5".into(),
                iteration: stats.accepted + stats.rejected,
                detail: format!("the step size fell to {h:e} at t = {t}: the solution blows up or the problem is too stiff for an explicit method"),
            });
        }
    }
    traj.stats = stats;
    Ok(traj)
}

/// Replays a solve with the given step sizes `hs` (every step accepted, no error test): the
/// discrete map that [`backward`] differentiates exactly, e.g. to check it by finite
/// differences, or a fixed-grid Tsit5. The states are saved at `times` inside the steps'
/// span (an `Err` past its end).
pub fn replay(
    f: &dyn Differentiable<f64>,
    p: &[f64],
    u0: ArrayView2<'_, f64>,
    t0: f64,
    hs: &[f64],
    times: &[f64],
    opts: &Options,
) -> Result<Trajectory> {
    opts.check()?;
    let rhs = Rhs::new(f, p)?;
    hyperprox_core::linalg::check_len("ODE replay", "state width", f.in_dim(), u0.ncols())?;
    if hs.iter().any(|h| !(*h > 0.0 && h.is_finite())) {
        return Err(Error::param(
            "step sizes",
            "",
            "must be positive and finite",
        ));
    }
    let mut traj = Trajectory {
        times: times.to_vec(),
        states: vec![],
        steps: vec![],
        stats: Stats::default(),
        u0: u0.to_owned(),
    };
    let (mut t, mut u) = (t0, u0.to_owned());
    let mut k1 = rhs.eval(t, u.view())?;
    traj.stats.nfe += 1;
    for &h in hs {
        let st = step(&rhs, t, &u, k1, h, opts, &mut traj.stats.nfe)?;
        traj.stats.accepted += 1;
        t += h;
        u = st.u1.clone();
        k1 = st.k[6].clone();
        traj.steps.push(st);
    }
    for &ts in times {
        let y = traj.at(ts)?;
        traj.states.push(y);
    }
    Ok(traj)
}

fn initial_step(
    rhs: &Rhs<'_>,
    t0: f64,
    u0: &Array2<f64>,
    f0: &Array2<f64>,
    opts: &Options,
    nfe: &mut usize,
) -> Result<f64> {
    let d0 = rms_scaled(u0, u0, opts);
    let d1 = rms_scaled(f0, u0, opts);
    let h0 = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    };
    let mut u1 = u0.clone();
    u1.scaled_add(h0, f0);
    let f1 = rhs.eval(t0 + h0, u1.view())?;
    *nfe += 1;
    let d2 = rms_scaled(&(&f1 - f0), u0, opts) / h0;
    let h1 = if d1.max(d2) <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(1.0 / 6.0)
    };
    Ok((100.0 * h0).min(h1))
}

/// A regularizer of the solver's heuristics and how the steps' values are aggregated.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Heuristic {
    /// `EEst·h` per step (ERNODE).
    Error,
    /// `ρ/3.5068` per step (SRNODE).
    Stiffness,
}

/// How the per-step values are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Σ over the accepted steps.
    Sum,
    /// Mean over the accepted steps.
    Mean,
    /// Maximum over the accepted steps.
    Max,
}

/// The value of one step's heuristic.
pub fn step_value(s: &Step, h: Heuristic) -> f64 {
    match h {
        Heuristic::Error => s.eest * s.h,
        Heuristic::Stiffness => s.rho / STABILITY_SIZE,
    }
}

/// The aggregated heuristic over the accepted steps and each step's weight in it (the
/// derivative of the aggregate with respect to the step's value; for `Max` one step gets 1).
pub fn aggregate(steps: &[Step], h: Heuristic, agg: Aggregate) -> (f64, Vec<f64>) {
    let vals: Vec<f64> = steps.iter().map(|s| step_value(s, h)).collect();
    let n = vals.len();
    if n == 0 {
        return (0.0, vec![]);
    }
    match agg {
        Aggregate::Sum => (vals.iter().sum(), vec![1.0; n]),
        Aggregate::Mean => (vals.iter().sum::<f64>() / n as f64, vec![1.0 / n as f64; n]),
        Aggregate::Max => {
            let (j, m) =
                vals.iter()
                    .copied()
                    .enumerate()
                    .fold(
                        (0, f64::NEG_INFINITY),
                        |a, (i, v)| if v > a.1 { (i, v) } else { a },
                    );
            let mut w = vec![0.0; n];
            w[j] = 1.0;
            (m, w)
        }
    }
}

/// Cotangents of one step's quantities.
struct StepBar {
    u: Array2<f64>,
    u1: Array2<f64>,
    k: Vec<Array2<f64>>,
    g6: Array2<f64>,
}

impl StepBar {
    fn zeros(s: &Step) -> Self {
        let z = Array2::zeros(s.u1.raw_dim());
        Self {
            u: z.clone(),
            u1: z.clone(),
            k: vec![z.clone(); 7],
            g6: z,
        }
    }
}

/// Adds the cotangents of `w · value(step)` to `bar`.
fn heuristic_bar(s: &Step, heur: Heuristic, w: f64, opts: &Options, bar: &mut StepBar) {
    if w == 0.0 {
        return;
    }
    match heur {
        Heuristic::Error => {
            if s.eest <= 0.0 {
                return;
            }
            let mut e = Array2::zeros(s.u1.raw_dim());
            for (b, kl) in BTILDE.iter().zip(&s.k) {
                e.scaled_add(s.h * b, kl);
            }
            let n = e.len() as f64;
            let c = w * s.h / (n * s.eest);
            let mut ebar = Array2::zeros(e.raw_dim());
            Zip::from(&mut ebar)
                .and(&mut bar.u)
                .and(&mut bar.u1)
                .and(&e)
                .and(&s.g[0])
                .and(&s.u1)
                .for_each(|eb, ub, u1b, &ei, &a, &b| {
                    let sc = opts.atol + opts.rtol * a.abs().max(b.abs());
                    *eb = c * ei / (sc * sc);
                    let dsc = -c * ei * ei / (sc * sc * sc) * opts.rtol;
                    if a.abs() >= b.abs() {
                        *ub += dsc * a.signum();
                    } else {
                        *u1b += dsc * b.signum();
                    }
                });
            for (b, kb) in BTILDE.iter().zip(bar.k.iter_mut()) {
                kb.scaled_add(s.h * b, &ebar);
            }
        }
        Heuristic::Stiffness => {
            let dk = &s.k[6] - &s.k[5];
            let du = &s.u1 - &s.g[5];
            let (a, b) = (norm(&dk), norm(&du));
            if a <= 0.0 || b <= 0.0 {
                return;
            }
            let c = w / STABILITY_SIZE;
            bar.k[6].scaled_add(c / (a * b), &dk);
            bar.k[5].scaled_add(-c / (a * b), &dk);
            bar.u1.scaled_add(-c * s.rho / (b * b), &du);
            bar.g6.scaled_add(c * s.rho / (b * b), &du);
        }
    }
}

/// Back through one step's stages: given the cotangents in `bar` (with `bar.u1` complete and
/// `bar.k[6]` holding every use of `k₇`), adds to `bar.u` and returns `k̄₁` (not yet passed
/// through `f` at `u`: the caller chains it to the previous step's `k₇`, FSAL).
fn step_back(rhs: &Rhs<'_>, s: &Step, bar: &mut StepBar, gp: &mut [f64]) -> Result<Array2<f64>> {
    let t = s.t;
    let u1bar = &bar.u1 + &rhs.vjp(t + s.h, s.u1.view(), bar.k[6].view(), gp)?;
    bar.u += &u1bar;
    for (kb, a) in bar.k.iter_mut().zip(&A[6]) {
        kb.scaled_add(s.h * a, &u1bar);
    }
    for i in (1..6).rev() {
        let mut gbar = rhs.vjp(t + C[i] * s.h, s.g[i].view(), bar.k[i].view(), gp)?;
        if i == 5 {
            gbar += &bar.g6;
        }
        bar.u += &gbar;
        for (kb, a) in bar.k.iter_mut().zip(&A[i][..i]) {
            kb.scaled_add(s.h * a, &gbar);
        }
    }
    Ok(std::mem::replace(&mut bar.k[0], Array2::zeros((0, 0))))
}

/// A regularization term of the backward pass: `weight · aggregate(heuristic)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegTerm {
    /// The heuristic.
    pub heuristic: Heuristic,
    /// The aggregation over steps.
    pub aggregate: Aggregate,
    /// Its weight.
    pub weight: f64,
}

/// The discrete adjoint: given cotangents `ȳ` of the states at times `t` (`cot`: any times
/// inside the solve, e.g. the save times) and regularization terms over the accepted steps,
/// adds the parameter gradient to `gp` and returns the gradient in `u0`.
pub fn backward(
    f: &dyn Differentiable<f64>,
    p: &[f64],
    traj: &Trajectory,
    cot: &[(f64, ArrayView2<'_, f64>)],
    regs: &[RegTerm],
    opts: &Options,
    gp: &mut [f64],
) -> Result<Array2<f64>> {
    let rhs = Rhs::new(f, p)?;
    hyperprox_core::linalg::check_len("ODE adjoint", "parameter gradient", p.len(), gp.len())?;
    let n = traj.steps.len();
    let mut bars: Vec<Option<StepBar>> = (0..n).map(|_| None).collect();
    let mut u0bar = Array2::zeros(traj.u0.raw_dim());
    for (t, y) in cot {
        if y.dim() != traj.u0.dim() {
            return Err(Error::param(
                "cotangent",
                format!("{:?}", y.dim()),
                format!("must be {:?} like the state", traj.u0.dim()),
            ));
        }
        match traj.locate(*t)? {
            None => u0bar += y,
            Some((j, th)) => {
                let s = &traj.steps[j];
                let bar = bars[j].get_or_insert_with(|| StepBar::zeros(s));
                if th == 1.0 {
                    bar.u1 += y;
                } else {
                    bar.u += y;
                    for (bi, kb) in interp_weights(th).iter().zip(bar.k.iter_mut()) {
                        kb.scaled_add(s.h * bi, y);
                    }
                }
            }
        }
    }
    for r in regs {
        let (_, w) = aggregate(&traj.steps, r.heuristic, r.aggregate);
        for (j, wj) in w.iter().enumerate() {
            if *wj != 0.0 {
                let s = &traj.steps[j];
                let bar = bars[j].get_or_insert_with(|| StepBar::zeros(s));
                heuristic_bar(s, r.heuristic, r.weight * wj, opts, bar);
            }
        }
    }
    // Backwards: carry ū and k̄₁ of the step after.
    let mut carry_u: Option<Array2<f64>> = None;
    let mut carry_k1: Option<Array2<f64>> = None;
    for j in (0..n).rev() {
        let s = &traj.steps[j];
        let mut bar = bars[j].take().unwrap_or_else(|| StepBar::zeros(s));
        if let Some(u) = carry_u.take() {
            bar.u1 += &u;
        }
        if let Some(k) = carry_k1.take() {
            bar.k[6] += &k;
        }
        let k1 = step_back(&rhs, s, &mut bar, gp)?;
        carry_u = Some(bar.u);
        carry_k1 = Some(k1);
    }
    if let Some(u) = carry_u {
        u0bar += &u;
    }
    if let Some(k1) = carry_k1 {
        let t0 = traj.steps[0].t;
        u0bar += &rhs.vjp(t0, traj.u0.view(), k1.view(), gp)?;
    }
    Ok(u0bar)
}

/// The local regularizer (Pal, Edelman, Rackauckas 2023): one Tsit5 step from `u(t₁)` (dense
/// output) with the size of the accepted step containing `t₁`, its heuristic value, and the
/// backward of `weight · value`: the parameter gradient is added to `gp` and the cotangent of
/// `u(t₁)` returned, to pass to [`backward`] at `t₁`. `t₁` inside the solve.
#[allow(clippy::too_many_arguments)]
pub fn local_step(
    f: &dyn Differentiable<f64>,
    p: &[f64],
    traj: &Trajectory,
    t1: f64,
    heuristic: Heuristic,
    weight: f64,
    opts: &Options,
    gp: &mut [f64],
    nfe: &mut usize,
) -> Result<(f64, Array2<f64>)> {
    let rhs = Rhs::new(f, p)?;
    let (j, u) = match traj.locate(t1)? {
        Some((j, th)) => (j, traj.steps[j].interpolate(th)),
        None if !traj.steps.is_empty() => (0, traj.u0.clone()),
        None => return Err(Error::param("time", t1, "the solve took no step")),
    };
    let h = traj.steps[j].h;
    let k1 = rhs.eval(t1, u.view())?;
    *nfe += 1;
    let s = step(&rhs, t1, &u, k1, h, opts, nfe)?;
    let value = step_value(&s, heuristic);
    let mut bar = StepBar::zeros(&s);
    heuristic_bar(&s, heuristic, weight, opts, &mut bar);
    let k1bar = step_back(&rhs, &s, &mut bar, gp)?;
    let ubar = &bar.u + &rhs.vjp(t1, u.view(), k1bar.view(), gp)?;
    Ok((value, ubar))
}
