//! STN on ridge regression: one penalty `λ` of `L_T(w) = ½‖Xw − y‖²/n + ½λ‖w‖²` tuned for the
//! validation loss `L_V(w) = ½‖X_v w − y_v‖²/n_v`, where the exact best response
//! `w*(λ) = (XᵀX/n + λI)⁻¹Xᵀy/n` and so the exact optimum `λ*` are computable: the test bed of
//! the method.
//!
//! The model is one [`StnDense`] without bias (`d → 1`, one hyperparameter `u = ln λ`):
//! `ŵ(u) = w + (v·u) w_h`, a line through weight space fitted around the current `u`.
//!
//! **The alternating loop** (MacKay et al. 2019, Alg. 1; pomonam's defaults): `warmup` training
//! steps, then repeatedly `train_per_hyper` training steps and one hyper step.
//! * Training step: a minibatch of the training set, one perturbation `ũ = u + σε` for the
//!   minibatch (a weight decay acts on the whole batch: pomonam issue #2), Adam on the
//!   network's parameters for `½‖X_b ŵ(ũ) − y_b‖²/B + ½e^{ũ}‖ŵ(ũ)‖²`.
//! * Hyper step: a minibatch of the validation set, the hyperparameter unperturbed (or, with
//!   `tune_scales`, perturbed per example), the optimizer of the hyperparameters on
//!   `L_V(ŵ(u)) − τH`: `∂/∂u = Σᵢ ū_i` (the context VJP of the layer),
//!   `∂/∂s = Σᵢ ū_i εᵢ sigmoid(s) − τ ∂H/∂s`.
//!
//! Every random draw of step `k` comes from the seed `batch_seed(seed, k)`, so a run resumed
//! from a [`StnState`] is bit-identical.

use crate::hyper::{Hyper, HyperSet, Range};
use crate::layer::StnDense;
use hyperprox_core::diff::{batch_seed, Differentiable};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::linalg::{check_len, cholesky_solve_in_place, sigmoid, Real};
use hyperprox_core::nn::{
    optim::{Method, OptimState, ParamOptimizer},
    Layer,
};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Training and validation data of a ridge problem.
#[derive(Clone, Debug)]
pub struct RidgeData {
    /// Training design (n × d).
    pub x_train: Array2<f64>,
    /// Training targets.
    pub y_train: Array1<f64>,
    /// Validation design (n_v × d).
    pub x_val: Array2<f64>,
    /// Validation targets.
    pub y_val: Array1<f64>,
}

/// `Err` naming the first NaN/Inf entry (in row-major order).
fn check_finite<D: ndarray::Dimension>(what: &str, a: &ndarray::Array<f64, D>) -> Result<()> {
    hyperprox_core::linalg::check_finite(what, Array1::from_iter(a.iter().copied()).view())
}

impl RidgeData {
    /// `Err` on empty sets, mismatched shapes or non-finite entries.
    pub fn new(
        x_train: Array2<f64>,
        y_train: Array1<f64>,
        x_val: Array2<f64>,
        y_val: Array1<f64>,
    ) -> Result<Self> {
        if x_train.nrows() == 0 || x_val.nrows() == 0 || x_train.ncols() == 0 {
            return Err(Error::param(
                "data",
                format!("train {:?}, validation {:?}", x_train.dim(), x_val.dim()),
                "training and validation sets need at least one sample and one feature",
            ));
        }
        check_len(
            "ridge data",
            "training targets",
            x_train.nrows(),
            y_train.len(),
        )?;
        check_len(
            "ridge data",
            "validation targets",
            x_val.nrows(),
            y_val.len(),
        )?;
        check_len(
            "ridge data",
            "validation features",
            x_train.ncols(),
            x_val.ncols(),
        )?;
        check_finite("training design", &x_train)?;
        check_finite("training targets", &y_train)?;
        check_finite("validation design", &x_val)?;
        check_finite("validation targets", &y_val)?;
        Ok(Self {
            x_train,
            y_train,
            x_val,
            y_val,
        })
    }

    /// A seeded synthetic problem: standard normal features, `y = X w₀ + noise·ε` with
    /// `w₀ ~ N(0, I/d)`.
    pub fn synthetic(
        n_train: usize,
        n_val: usize,
        d: usize,
        noise: f64,
        seed: u64,
    ) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut randn = |r: usize, c: usize| -> Array2<f64> {
            Array2::from_shape_simple_fn((r, c), || StandardNormal.sample(&mut rng))
        };
        let w0 = randn(d, 1).column(0).mapv(|v| v / (d as f64).sqrt());
        let (xt, xv) = (randn(n_train, d), randn(n_val, d));
        let (et, ev) = (randn(n_train, 1), randn(n_val, 1));
        let yt = xt.dot(&w0) + et.column(0).mapv(|v| v * noise);
        let yv = xv.dot(&w0) + ev.column(0).mapv(|v| v * noise);
        Self::new(xt, yt, xv, yv)
    }

    /// Number of features.
    pub fn dim(&self) -> usize {
        self.x_train.ncols()
    }

    /// The exact best response `w*(λ) = (XᵀX/n + λI)⁻¹Xᵀy/n`.
    pub fn exact_weights(&self, lambda: f64) -> Result<Array1<f64>> {
        let n = self.x_train.nrows() as f64;
        let mut a = self.x_train.t().dot(&self.x_train) / n;
        a.diag_mut().mapv_inplace(|v| v + lambda);
        let l = f64::cholesky_lower(a.view())?;
        let mut b = self.x_train.t().dot(&self.y_train) / n;
        cholesky_solve_in_place(l.view(), b.view_mut());
        Ok(b)
    }

    /// `½‖X_v w − y_v‖²/n_v`.
    pub fn val_loss(&self, w: ArrayView1<'_, f64>) -> f64 {
        let r = self.x_val.dot(&w) - &self.y_val;
        0.5 * r.dot(&r) / self.x_val.nrows() as f64
    }

    /// The exact minimizer of `λ ↦ L_V(w*(λ))` over `[1e-8, 1e4]` (a grid of 241 points in
    /// log scale, then golden-section search in the bracket of the best point) and its value.
    pub fn exact_optimum(&self) -> Result<(f64, f64)> {
        let f = |t: f64| -> Result<f64> { Ok(self.val_loss(self.exact_weights(t.exp())?.view())) };
        let (lo, hi) = (1e-8f64.ln(), 1e4f64.ln());
        let grid: Vec<f64> = (0..241)
            .map(|i| lo + (hi - lo) * i as f64 / 240.0)
            .collect();
        let vals = grid.iter().map(|&t| f(t)).collect::<Result<Vec<_>>>()?;
        let best = (0..grid.len())
            .min_by(|&a, &b| vals[a].total_cmp(&vals[b]))
            .unwrap_or(0);
        let (mut a, mut b) = (grid[best.saturating_sub(1)], grid[(best + 1).min(240)]);
        let r = 0.5 * (5f64.sqrt() - 1.0);
        for _ in 0..80 {
            let (c, d) = (b - r * (b - a), a + r * (b - a));
            if f(c)? < f(d)? {
                b = d;
            } else {
                a = c;
            }
        }
        let t = 0.5 * (a + b);
        Ok((t.exp(), f(t)?))
    }
}

/// Settings of the alternating loop. Defaults: 6000 training steps, 200 of warm-up, 5 training
/// steps per hyper step, batch 32, Adam 1e-2 on the weights, RMSprop 1e-2 on the
/// hyperparameters (pomonam's defaults), τ = 1e-3, scales tuned, initial λ = 1, σ = 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StnConfig {
    /// Training steps in all (hyper steps not counted).
    pub steps: u64,
    /// Training steps before the first hyper step.
    pub warmup: u64,
    /// Training steps per hyper step.
    pub train_per_hyper: u64,
    /// Minibatch size (training and validation).
    pub batch: usize,
    /// Adam learning rate of the network.
    pub lr_weights: f64,
    /// Update rule of the hyperparameters and scales.
    pub hyper_method: Method,
    /// Its learning rate.
    pub lr_hyper: f64,
    /// Entropy weight τ.
    pub tau: f64,
    /// Tune the perturbation scales (validation perturbed per example).
    pub tune_scales: bool,
    /// Initial λ.
    pub initial_lambda: f64,
    /// Initial perturbation scale σ (in `ln λ`).
    pub initial_scale: f64,
    /// Seed of the initialization and every draw.
    pub seed: u64,
    /// Delta-STN's centered parameterization (Bae & Grosse 2020): the hypernetwork reads
    /// `ũ − u` (the current `u` held constant in the hyper step), so the elementary weights are
    /// the best response at the current λ. For this model, linear in its weights, the
    /// network's output is linear in the gates, so Delta-STN's linearization is exact and
    /// this is Delta-STN.
    #[serde(default)]
    pub centered: bool,
}

impl Default for StnConfig {
    fn default() -> Self {
        Self {
            steps: 6000,
            warmup: 200,
            train_per_hyper: 5,
            batch: 32,
            lr_weights: 1e-2,
            hyper_method: Method::RmsProp {
                alpha: 0.99,
                eps: 1e-8,
            },
            lr_hyper: 1e-2,
            tau: 1e-3,
            tune_scales: true,
            initial_lambda: 1.0,
            initial_scale: 1.0,
            seed: 0,
            centered: false,
        }
    }
}

impl StnConfig {
    fn check(&self) -> Result<()> {
        let counts = [
            ("batch", self.batch as u64),
            ("train_per_hyper", self.train_per_hyper),
        ];
        crate::check_loop(&counts, [self.lr_weights, self.lr_hyper], self.tau)
    }
}

/// One hyper step of the trajectory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryPoint {
    /// Training steps done.
    pub step: u64,
    /// λ after the step.
    pub lambda: f64,
    /// Perturbation scale after the step.
    pub sigma: f64,
    /// `L_V(ŵ(u))` on the whole validation set after the step.
    pub val_loss: f64,
}

/// The run's state: the checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StnState {
    /// The layer's parameters.
    pub params: Vec<f64>,
    /// The hyperparameter.
    pub hypers: HyperSet,
    /// Optimizer state of the network.
    pub opt_weights: OptimState,
    /// Optimizer state of `[u, s]`.
    pub opt_hyper: OptimState,
    /// Training steps done.
    pub step: u64,
    /// Hyper steps so far.
    pub trajectory: Vec<TrajectoryPoint>,
    /// The configuration.
    pub config: StnConfig,
}

use crate::flat_optimizer as optim;

/// A minibatch of `b` rows of `(x, y)` drawn with replacement.
fn minibatch(
    x: &Array2<f64>,
    y: &Array1<f64>,
    b: usize,
    rng: &mut impl Rng,
) -> (Array2<f64>, Array1<f64>) {
    let idx: Vec<usize> = (0..b).map(|_| rng.random_range(0..x.nrows())).collect();
    (x.select(Axis(0), &idx), y.select(Axis(0), &idx))
}

/// The STN ridge tuner.
#[derive(Debug)]
pub struct RidgeStn<'a> {
    data: &'a RidgeData,
    layer: StnDense,
}

impl<'a> RidgeStn<'a> {
    /// The tuner on `data`.
    pub fn new(data: &'a RidgeData) -> Self {
        Self {
            data,
            layer: StnDense::new(data.dim(), 1, 1).without_bias(),
        }
    }

    /// The layer (its parameters are [`StnState::params`]).
    pub fn layer(&self) -> &StnDense {
        &self.layer
    }

    /// The initial state: the layer as PyTorch's `nn.Linear` with zero gates, λ and σ from the
    /// configuration.
    pub fn init(&self, cfg: &StnConfig) -> Result<StnState> {
        cfg.check()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        let params: Vec<f64> = Layer::<f64>::init_params(&self.layer, &mut rng);
        let hyper = Hyper::new("lambda", Range::Exp, cfg.initial_lambda, cfg.initial_scale)?;
        Ok(StnState {
            opt_weights: optim(
                Method::Adam {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                },
                cfg.lr_weights,
                params.len(),
            )?
            .state(),
            opt_hyper: optim(cfg.hyper_method, cfg.lr_hyper, 2)?.state(),
            params,
            hypers: HyperSet::new(vec![hyper])?,
            step: 0,
            trajectory: vec![],
            config: cfg.clone(),
        })
    }

    /// The model's weights `ŵ(u)` at the unconstrained value `u`.
    pub fn weights(&self, params: &[f64], u: f64) -> Result<Array1<f64>> {
        Ok(self.layer.effective_weight(params, &[u])?.row(0).to_owned())
    }

    /// The model's weights at the current λ: `ŵ(u)`, or the elementary weights when centered.
    pub fn model_weights(&self, st: &StnState) -> Result<Array1<f64>> {
        let u = st.hypers.hypers[0].u;
        self.weights(&st.params, if st.config.centered { 0.0 } else { u })
    }

    /// `(L_T, ∂L_T/∂params)` on a minibatch with the hypernetwork reading `input` (`ũ`, or
    /// `ũ − u` when centered) and the penalty `lambda = e^{ũ}`.
    pub fn train_loss_grad(
        &self,
        params: &[f64],
        x: ArrayView2<'_, f64>,
        y: ArrayView1<'_, f64>,
        input: f64,
        lambda: f64,
    ) -> Result<(f64, Vec<f64>)> {
        let b = x.nrows() as f64;
        let u = input;
        let c = Array2::from_elem((x.nrows(), 1), u);
        let pred = self.layer.forward(params, x, c.view())?;
        let r = &pred.column(0) - &y;
        let w = self.layer.effective_weight(params, &[u])?;
        let loss = 0.5 * r.dot(&r) / b + 0.5 * lambda * w.iter().map(|v| v * v).sum::<f64>();
        let g = (r / b).insert_axis(Axis(1));
        let mut gp = vec![0.0; params.len()];
        self.layer.vjp(params, x, c.view(), g.view(), &mut gp)?;
        self.layer
            .effective_weight_vjp(params, &[u], (&w * lambda).view(), &mut gp)?;
        Ok((loss, gp))
    }

    /// `(L_V, ∂L_V/∂ũ row by row)` on a validation minibatch at the contexts `c` (B × 1).
    pub fn val_loss_grad(
        &self,
        params: &[f64],
        x: ArrayView2<'_, f64>,
        y: ArrayView1<'_, f64>,
        c: ArrayView2<'_, f64>,
    ) -> Result<(f64, Array2<f64>)> {
        let b = x.nrows() as f64;
        let pred = self.layer.forward(params, x, c)?;
        let r = &pred.column(0) - &y;
        let g = (&r / b).insert_axis(Axis(1));
        let cbar = self.layer.vjp_ctx(params, x, c, g.view())?;
        Ok((0.5 * r.dot(&r) / b, cbar))
    }

    /// Advances `st` by training steps up to `until` (or the configured total), with the hyper
    /// steps that fall due; `progress` sees the training steps done.
    pub fn run(&self, st: &mut StnState, until: u64, progress: &mut dyn FnMut(u64)) -> Result<()> {
        let cfg = st.config.clone();
        cfg.check()?;
        let mut ow = optim(
            Method::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            cfg.lr_weights,
            st.params.len(),
        )?;
        ow.set_state(st.opt_weights.clone())?;
        let mut oh = optim(cfg.hyper_method, cfg.lr_hyper, 2)?;
        oh.set_state(st.opt_hyper.clone())?;
        let d = self.data;
        let end = until.min(cfg.steps);
        while st.step < end {
            let mut rng = rand::rngs::StdRng::seed_from_u64(batch_seed(cfg.seed, st.step));
            let h = &st.hypers.hypers[0];
            let eps: f64 = StandardNormal.sample(&mut rng);
            let ut = h.u + h.sigma() * eps;
            let center = if cfg.centered { h.u } else { 0.0 };
            let (xb, yb) = minibatch(&d.x_train, &d.y_train, cfg.batch, &mut rng);
            let (loss, g) =
                self.train_loss_grad(&st.params, xb.view(), yb.view(), ut - center, ut.exp())?;
            if !loss.is_finite() || g.iter().any(|v| !v.is_finite()) {
                return Err(Error::Diverged {
                    method: "STN training step".into(),
                    iteration: st.step as usize + 1,
                    detail: format!("loss {loss}; lower the learning rate"),
                });
            }
            ow.step(&mut st.params, &g)?;
            st.step += 1;
            if st.step > cfg.warmup && (st.step - cfg.warmup) % cfg.train_per_hyper == 0 {
                self.hyper_step(st, &mut oh, &mut rng)?;
            }
            progress(st.step);
        }
        st.opt_weights = ow.state();
        st.opt_hyper = oh.state();
        Ok(())
    }

    fn hyper_step(
        &self,
        st: &mut StnState,
        oh: &mut ParamOptimizer<f64>,
        rng: &mut rand::rngs::StdRng,
    ) -> Result<()> {
        let cfg = &st.config;
        let d = self.data;
        let (xv, yv) = minibatch(&d.x_val, &d.y_val, cfg.batch, rng);
        let (c, eps) = if cfg.tune_scales {
            st.hypers.perturbed(cfg.batch, rng)
        } else {
            (st.hypers.repeated(cfg.batch), Array2::zeros((cfg.batch, 1)))
        };
        let center = if cfg.centered {
            st.hypers.hypers[0].u
        } else {
            0.0
        };
        let c = c - center;
        let (_, cbar) = self.val_loss_grad(&st.params, xv.view(), yv.view(), c.view())?;
        let h = &st.hypers.hypers[0];
        let gu = cbar.sum();
        let gs = if cfg.tune_scales {
            (&cbar * &eps).sum() * sigmoid(h.s) - cfg.tau * st.hypers.entropy_grad()[0]
        } else {
            0.0
        };
        let mut us = [h.u, h.s];
        oh.step(&mut us, &[gu, gs])?;
        let h = &mut st.hypers.hypers[0];
        h.u = us[0];
        h.s = us[1];
        let (lambda, sigma) = (h.value(), h.sigma());
        let val_loss = d.val_loss(self.model_weights(st)?.view());
        st.trajectory.push(TrajectoryPoint {
            step: st.step,
            lambda,
            sigma,
            val_loss,
        });
        Ok(())
    }
}
