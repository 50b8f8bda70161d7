//! The spiral benchmark of the neural-ODE literature and its regularized training.
//!
//! Data: `u' = A u³` (cube elementwise), `A = [[−0.1, 2], [−2, −0.1]]`, `u₀ = (2, 0)`, 30
//! points evenly on `[0, 1.5]` (DiffEqFlux's neural-ODE example and the drift of RegNeuralDE's
//! SDE demo; the column-vector form `A u³`), solved by Tsit5 at `rtol = atol = 1e-10`.
//! The test points are the 29 midpoints of the training grid.
//!
//! Model: `u ↦ Dense(50→2)(tanh(Dense(2→50)(u³)))` as the right-hand side, solved by Tsit5 at
//! the training tolerance; loss the mean squared error over the points, plus the regularizer.
//! Adam on the parameters.

use crate::layers::Cube;
use crate::reg::Regularizer;
use crate::tsit5::{backward, local_step, solve, Options, Trajectory};
use hyperprox_core::diff::{batch_seed, Differentiable};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::nn::optim::{LrSchedule, Method, OptimConfig, OptimState, ParamOptimizer};
use hyperprox_core::nn::{Act, Activation, Dense, Layer, Sequential};
use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The true dynamics `u' = A u³`.
pub const TRUE_A: [[f64; 2]; 2] = [[-0.1, 2.0], [-2.0, -0.1]];

/// The true right-hand side as a block (for generating the data).
#[derive(Clone, Copy, Debug, Default)]
pub struct TrueSpiral;

impl Differentiable<f64> for TrueSpiral {
    fn name(&self) -> String {
        "spiral u' = A u³".into()
    }
    fn in_dim(&self) -> usize {
        2
    }
    fn out_dim(&self) -> usize {
        2
    }
    fn num_params(&self) -> usize {
        0
    }
    fn forward(
        &self,
        _p: &[f64],
        x: ArrayView2<'_, f64>,
        _c: ArrayView2<'_, f64>,
    ) -> Result<Array2<f64>> {
        let mut out = Array2::zeros(x.raw_dim());
        for (mut o, r) in out.rows_mut().into_iter().zip(x.rows()) {
            let (a, b) = (r[0].powi(3), r[1].powi(3));
            o[0] = TRUE_A[0][0] * a + TRUE_A[0][1] * b;
            o[1] = TRUE_A[1][0] * a + TRUE_A[1][1] * b;
        }
        Ok(out)
    }
    fn vjp(
        &self,
        _p: &[f64],
        x: ArrayView2<'_, f64>,
        _c: ArrayView2<'_, f64>,
        g: ArrayView2<'_, f64>,
        _gp: &mut [f64],
    ) -> Result<Array2<f64>> {
        let mut out = Array2::zeros(x.raw_dim());
        for ((mut o, r), gr) in out.rows_mut().into_iter().zip(x.rows()).zip(g.rows()) {
            let s0 = TRUE_A[0][0] * gr[0] + TRUE_A[1][0] * gr[1];
            let s1 = TRUE_A[0][1] * gr[0] + TRUE_A[1][1] * gr[1];
            o[0] = 3.0 * r[0] * r[0] * s0;
            o[1] = 3.0 * r[1] * r[1] * s1;
        }
        Ok(out)
    }
}

/// The data: training and test times and states (one row per time, 2 columns).
#[derive(Clone, Debug)]
pub struct SpiralData {
    /// Initial state.
    pub u0: [f64; 2],
    /// Training times (the first is 0).
    pub train_t: Vec<f64>,
    /// Training states.
    pub train_u: Array2<f64>,
    /// Test times.
    pub test_t: Vec<f64>,
    /// Test states.
    pub test_u: Array2<f64>,
}

impl SpiralData {
    /// `points` training points on `[0, t_end]` and their midpoints for testing.
    pub fn generate(points: usize, t_end: f64) -> Result<Self> {
        if points < 2 || !(t_end > 0.0 && t_end.is_finite()) {
            return Err(Error::param(
                "spiral",
                format!("{points} points to {t_end}"),
                "need ≥ 2 points and a positive end time",
            ));
        }
        let train_t: Vec<f64> = (0..points)
            .map(|i| t_end * i as f64 / (points - 1) as f64)
            .collect();
        let test_t: Vec<f64> = train_t.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
        let u0 = [2.0, 0.0];
        let x0 = Array2::from_shape_vec((1, 2), u0.to_vec())
            .map_err(|e| Error::param("u0", "", e.to_string()))?;
        let tight = Options::tol(1e-10);
        let states = |ts: &[f64]| -> Result<Array2<f64>> {
            let tr = solve(&TrueSpiral, &[], x0.view(), 0.0, ts, &tight)?;
            let mut out = Array2::zeros((ts.len(), 2));
            for (mut r, s) in out.rows_mut().into_iter().zip(&tr.states) {
                r.assign(&s.row(0));
            }
            Ok(out)
        };
        Ok(Self {
            u0,
            train_u: states(&train_t)?,
            test_u: states(&test_t)?,
            train_t,
            test_t,
        })
    }
}

/// Settings. Defaults: 30 points on `[0, 1.5]`, hidden width 50, 1000 Adam iterations at
/// `lr = 0.01`, Tsit5 at `rtol = 1e-6`, `atol = 1e-6`, no regularization, seed 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpiralConfig {
    /// Hidden width.
    pub hidden: usize,
    /// Training iterations (full-trajectory steps).
    pub iters: u64,
    /// Adam's learning rate.
    pub lr: f64,
    /// Solver tolerances (training and test).
    pub solver: Options,
    /// The regularizer.
    pub reg: Regularizer,
    /// Seed (initialization and the local variant's times).
    pub seed: u64,
}

impl Default for SpiralConfig {
    fn default() -> Self {
        Self {
            hidden: 50,
            iters: 1000,
            lr: 0.01,
            solver: Options {
                rtol: 1e-6,
                atol: 1e-6,
                ..Options::default()
            },
            reg: Regularizer::none(),
            seed: 0,
        }
    }
}

/// One training iteration's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IterRecord {
    /// Iteration (1-based).
    pub iter: u64,
    /// Mean squared error on the training points.
    pub train_loss: f64,
    /// The regularizer's value (before its weight).
    pub reg_value: f64,
    /// Right-hand-side evaluations of the forward solve.
    pub nfe: usize,
}

/// The run's state (the checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpiralState {
    /// Parameters.
    pub params: Vec<f64>,
    /// Adam's state.
    pub opt: OptimState,
    /// Iterations done.
    pub iter: u64,
    /// Per-iteration records.
    pub history: Vec<IterRecord>,
    /// Seconds of training so far.
    pub train_time_s: f64,
    /// The configuration.
    pub config: SpiralConfig,
}

/// An evaluation of a model on the test points.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpiralEval {
    /// Mean squared error on the test points.
    pub test_loss: f64,
    /// NFE of the forward solve through the test times.
    pub nfe: usize,
    /// Accepted steps of that solve.
    pub steps: usize,
}

/// The training objective and its gradient.
#[derive(Clone, Debug)]
pub struct Objective {
    /// MSE plus the weighted regularizer.
    pub loss: f64,
    /// The MSE on the training points.
    pub mse: f64,
    /// The regularizer's value (before its weight).
    pub reg_value: f64,
    /// NFE of the forward solve (and the local step).
    pub nfe: usize,
    /// Gradient of `loss` in the parameters.
    pub grad: Vec<f64>,
}

/// The neural ODE on the spiral data.
pub struct Spiral<'a> {
    data: &'a SpiralData,
    net: Sequential<f64>,
}

pub(crate) fn optimizer(lr: f64, n: usize) -> Result<ParamOptimizer<f64>> {
    ParamOptimizer::new(
        OptimConfig {
            method: Method::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            lr,
            schedule: LrSchedule::Constant,
            clip_norm: None,
            groups: vec![],
        },
        n,
    )
}

impl<'a> Spiral<'a> {
    /// The model with `hidden` units.
    pub fn new(data: &'a SpiralData, hidden: usize) -> Result<Self> {
        if hidden == 0 {
            return Err(Error::param("hidden", 0, "need at least one hidden unit"));
        }
        let layers: Vec<Arc<dyn Layer<f64>>> = vec![
            Arc::new(Cube::new(2)),
            Arc::new(Dense::new(2, hidden)),
            Arc::new(Act::new(hidden, Activation::Tanh)?),
            Arc::new(Dense::new(hidden, 2)),
        ];
        Ok(Self {
            data,
            net: Sequential::new(layers)?,
        })
    }

    /// The right-hand side block.
    pub fn network(&self) -> &Sequential<f64> {
        &self.net
    }

    fn u0(&self) -> Array2<f64> {
        Array2::from_shape_vec((1, 2), self.data.u0.to_vec()).expect("1 × 2")
    }

    /// The initial state.
    pub fn init(&self, cfg: &SpiralConfig) -> Result<SpiralState> {
        cfg.reg.check()?;
        if !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
            return Err(Error::param("lr", cfg.lr, "must be positive"));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        let params = self.net.init_params(&mut rng);
        Ok(SpiralState {
            opt: optimizer(cfg.lr, params.len())?.state(),
            params,
            iter: 0,
            history: vec![],
            train_time_s: 0.0,
            config: cfg.clone(),
        })
    }

    /// Solves the model through `times`.
    pub fn predict(&self, params: &[f64], times: &[f64], opts: &Options) -> Result<Trajectory> {
        solve(&self.net, params, self.u0().view(), 0.0, times, opts)
    }

    /// Test MSE and the NFE of the test solve.
    pub fn evaluate(&self, params: &[f64], opts: &Options) -> Result<SpiralEval> {
        let tr = self.predict(params, &self.data.test_t, opts)?;
        Ok(SpiralEval {
            test_loss: mse(&tr, &self.data.test_u).0,
            nfe: tr.stats.nfe,
            steps: tr.stats.accepted,
        })
    }

    /// The training objective at `params` for iteration `k`: the MSE plus the weighted
    /// regularizer, with its gradient (the discrete adjoint).
    pub fn objective(&self, params: &[f64], cfg: &SpiralConfig, k: u64) -> Result<Objective> {
        let opts = &cfg.solver;
        let tr = self.predict(params, &self.data.train_t, opts)?;
        let (m, cots) = mse(&tr, &self.data.train_u);
        let mut cot: Vec<(f64, ArrayView2<'_, f64>)> = self
            .data
            .train_t
            .iter()
            .copied()
            .zip(cots.iter().map(|c| c.view()))
            .collect();
        let mut gp = vec![0.0; params.len()];
        let mut nfe = tr.stats.nfe;
        let w = cfg.reg.weight.at(k);
        let mut reg_value = 0.0;
        let mut local_cot = None;
        let terms: Vec<_> = cfg.reg.global_term(k).into_iter().collect();
        for t in &terms {
            reg_value = crate::tsit5::aggregate(&tr.steps, t.heuristic, t.aggregate).0;
        }
        if let (true, Some(h)) = (cfg.reg.local, cfg.reg.heuristic()) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(batch_seed(cfg.seed ^ 0x5eed, k));
            let t_end = *self.data.train_t.last().unwrap_or(&0.0);
            let t1 = t_end * rng.random::<f64>();
            let (v, ubar) = local_step(&self.net, params, &tr, t1, h, w, opts, &mut gp, &mut nfe)?;
            reg_value = v;
            local_cot = Some((t1, ubar));
        }
        if let Some((t1, ubar)) = &local_cot {
            cot.push((*t1, ubar.view()));
        }
        backward(&self.net, params, &tr, &cot, &terms, opts, &mut gp)?;
        Ok(Objective {
            loss: m + w * reg_value,
            mse: m,
            reg_value,
            nfe,
            grad: gp,
        })
    }

    /// Advances the run to `until` iterations (or its end).
    pub fn run(
        &self,
        st: &mut SpiralState,
        until: u64,
        progress: &mut dyn FnMut(&SpiralState),
    ) -> Result<()> {
        let cfg = st.config.clone();
        let mut opt = optimizer(cfg.lr, st.params.len())?;
        opt.set_state(st.opt.clone())?;
        while st.iter < until.min(cfg.iters) {
            let t0 = std::time::Instant::now();
            let o = self.objective(&st.params, &cfg, st.iter)?;
            let gp = o.grad;
            if gp.iter().any(|v| !v.is_finite()) {
                return Err(Error::Diverged {
                    method: "spiral training".into(),
                    iteration: st.iter as usize + 1,
                    detail: "non-finite gradient; lower the learning rate".into(),
                });
            }
            opt.step(&mut st.params, &gp)?;
            st.iter += 1;
            st.train_time_s += t0.elapsed().as_secs_f64();
            st.history.push(IterRecord {
                iter: st.iter,
                train_loss: o.mse,
                reg_value: o.reg_value,
                nfe: o.nfe,
            });
            progress(st);
        }
        st.opt = opt.state();
        Ok(())
    }
}

/// Mean squared error of the saved states (one row each) against `target`, and the
/// cotangents of the states.
fn mse(tr: &Trajectory, target: &Array2<f64>) -> (f64, Vec<Array2<f64>>) {
    let n = target.len() as f64;
    let mut total = 0.0;
    let mut cots = vec![];
    for (s, t) in tr.states.iter().zip(target.rows()) {
        let d = &s.row(0) - &t;
        total += d.iter().map(|v| v * v).sum::<f64>();
        cots.push((d * (2.0 / n)).insert_axis(ndarray::Axis(0)));
    }
    (total / n, cots)
}
