//! The unfolded models behind one [`UnfoldedModel`] interface.
//!
//! | model | layer t | learned per layer | classical initialization |
//! |---|---|---|---|
//! | DU-ISTA | `S_{α_t λ}(x + α_t Aᵀ(y − Ax))` | `α_t` | `α_t = 1/L`: ISTA |
//! | DU-IHT | `H_{√(2α_t λ)}(x + α_t Aᵀ(y − Ax))` | `α_t` | `α_t = 1/L`: IHT |
//! | LISTA | `S_{θ_t}(W₂ᵗ x + W₁ᵗ y)` | `W₁ᵗ` (N×M), `W₂ᵗ` (N×N), `θ_t` | `W₁ = Aᵀ/L`, `W₂ = I − AᵀA/L`, `θ = λ/L`: ISTA |
//! | LISTA-CP | `S_{θ_t}(x + Wᵗᵀ(y − Ax))` | `Wᵗ` (M×N), `θ_t` | `W = A/L`, `θ = λ/L`: ISTA |
//! | LISTA-CPSS | as LISTA-CP with support selection `p_t = min(t·p, p_max)` | `Wᵗ`, `θ_t` | as LISTA-CP |
//! | ALISTA | `S^{ss}_{θ_t}(x + γ_t W̃ᵀ(y − Ax))`, `W̃` analytic | `γ_t`, `θ_t` | `γ = 1`, `θ = λ/L` |
//! | TISTA | MMSE shrinkage of `s + γ_t Aᵀ(AAᵀ)⁻¹(y − As)` | `γ_t` | `γ = 1` |
//!
//! Support selection (Chen et al. 2018) uses the ALISTA code's `p = 1.2 %` per layer and
//! `p_max = 13 %`.
//!
//! # References
//! - K. Nagahisa, R. Hayakawa, Y. Iiguni, "Comparison between supervised and unsupervised
//!   learning in deep unfolded sparse signal recovery", arXiv:2509.01331 (2025).
//! - K. Gregor, Y. LeCun, "Learning fast approximations of sparse coding", ICML 2010.
//! - X. Chen, J. Liu, Z. Wang, W. Yin, "Theoretical linear convergence of unfolded ISTA and its
//!   practical weights and thresholds", NeurIPS 2018.
//! - J. Liu, X. Chen, Z. Wang, W. Yin, "ALISTA: analytic weights are as good as learned
//!   weights in LISTA", ICLR 2019.
//! - D. Ito, S. Takabe, T. Wadayama, "Trainable ISTA for sparse signal recovery", IEEE TSP 2019.

use crate::data::{Problem, Signal};
use crate::layers::{Penalty, ProxGradLayer, TistaLayer};
use hyperprox_core::diff::{
    Chain, Differentiable, LearnedLinear, ResidualStep, SoftThreshold, Unrolled,
};
use hyperprox_core::error::{Error, Result};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// The model families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ModelKind {
    /// Deep-unfolded ISTA (learned step sizes).
    DuIsta,
    /// Deep-unfolded IHT (learned step sizes).
    DuIht,
    /// LISTA (Gregor & LeCun 2010).
    Lista,
    /// LISTA with coupled weights (Chen et al. 2018).
    ListaCp,
    /// LISTA-CP with support selection.
    ListaCpss,
    /// Analytic LISTA (Liu et al. 2019).
    Alista,
    /// Trainable ISTA (Ito et al. 2019).
    Tista,
}

impl ModelKind {
    /// All kinds, in the registry's order.
    pub fn all() -> impl Iterator<Item = ModelKind> {
        REGISTRY.iter().map(|i| i.kind)
    }

    /// The registry entry of this kind.
    pub fn info(&self) -> &'static ModelInfo {
        REGISTRY
            .iter()
            .find(|i| i.kind == *self)
            .expect("every kind has a registry entry")
    }

    /// The command-line name (`du-ista`, …).
    pub fn as_str(&self) -> &'static str {
        self.info().name
    }

    /// Parses [`ModelKind::as_str`].
    pub fn parse(s: &str) -> Result<Self> {
        REGISTRY
            .iter()
            .find(|i| i.name == s)
            .map(|i| i.kind)
            .ok_or_else(|| {
                let names: Vec<&str> = REGISTRY.iter().map(|i| i.name).collect();
                Error::param("model", s, format!("one of {}", names.join(", ")))
            })
    }

    /// The penalty of the original problem (ℓ0 for DU-IHT, ℓ1 otherwise).
    pub fn penalty(&self) -> Penalty {
        self.info().penalty
    }
}

/// What a layer builder sees: the specification, the problem and the quantities computed once
/// per model (`1/L`, λ, a model's precomputed matrix).
pub struct LayerContext<'a> {
    /// The specification.
    pub spec: &'a ModelSpec,
    /// The problem.
    pub problem: &'a Problem,
    /// The matrix `A` (M × N).
    pub a: Arc<Array2<f64>>,
    /// Its Lipschitz constant `‖A‖²`.
    pub l: f64,
    /// The model's precomputed matrix ([`ModelInfo::prepare`]), if any.
    pub extra: Option<Arc<Array2<f64>>>,
}

impl LayerContext<'_> {
    /// The support-selection fraction of layer `t`: `min((t + 1)·step, max)`.
    pub fn support(&self, t: usize) -> f64 {
        (self.spec.ss_step * (t + 1) as f64).min(self.spec.ss_max)
    }
}

/// How a parameter of a layer is reported: by its position in the layer's parameters.
#[derive(Clone, Copy, Debug)]
pub enum ParamPick {
    /// The `k`-th parameter.
    At(usize),
    /// The last parameter.
    Last,
}

/// A model family: everything the trainer, the evaluator and the command line need, in one
/// place. A new family is one [`ModelKind`] variant (for the command line and the saved
/// models) and one entry of [`REGISTRY`].
pub struct ModelInfo {
    /// The kind.
    pub kind: ModelKind,
    /// Command-line and report name.
    pub name: &'static str,
    /// Penalty of the unfolded problem.
    pub penalty: Penalty,
    /// Default Adam learning rate.
    pub default_lr: f64,
    /// Parameters per layer for `(n, m)` (checked against the allocation limit first).
    pub per_layer: fn(usize, usize) -> u128,
    /// A matrix computed once per model (ALISTA's analytic weight, TISTA's `Aᵀ(AAᵀ)⁻¹`).
    pub prepare: Option<PrepareFn>,
    /// Layer `t` and its classical initialization.
    pub layer: LayerFn,
    /// The learned parameters reported per layer.
    pub report: &'static [(&'static str, ParamPick)],
}

/// Computes a model's matrix once per model.
pub type PrepareFn = fn(&Problem) -> Result<Array2<f64>>;

/// Builds layer `t` of a model: the block and its initial parameters.
pub type LayerFn = fn(&LayerContext<'_>, usize) -> Result<(Box<dyn Differentiable>, Vec<f64>)>;

fn prox_grad_layer(c: &LayerContext<'_>, _t: usize) -> Result<(Box<dyn Differentiable>, Vec<f64>)> {
    let layer = ProxGradLayer::new(c.a.clone(), c.spec.lambda, c.spec.kind.penalty());
    Ok((Box::new(layer), vec![1.0 / c.l]))
}

fn lista_layer(c: &LayerContext<'_>, _t: usize) -> Result<(Box<dyn Differentiable>, Vec<f64>)> {
    let (m, n, l) = (c.a.nrows(), c.a.ncols(), c.l);
    let block = Chain::new(vec![
        Box::new(LearnedLinear::new(n, n, m)),
        Box::new(SoftThreshold::scalar(n)),
    ])?;
    // W₂ = I − AᵀA/L (N×N), W₁ = Aᵀ/L (N×M), θ = λ/L.
    let mut w2 = hyperprox_core::diff::matmul(c.a.t(), c.a.view());
    w2.mapv_inplace(|v| -v / l);
    for i in 0..n {
        w2[[i, i]] += 1.0;
    }
    let mut p: Vec<f64> = w2.iter().copied().collect();
    p.extend(c.a.t().iter().map(|v| v / l));
    p.push(c.spec.lambda / l);
    Ok((Box::new(block), p))
}

fn lista_cp_layer(c: &LayerContext<'_>, t: usize) -> Result<(Box<dyn Differentiable>, Vec<f64>)> {
    let n = c.a.ncols();
    let th = if c.spec.kind == ModelKind::ListaCpss {
        SoftThreshold::scalar(n).with_support_selection(c.support(t))?
    } else {
        SoftThreshold::scalar(n)
    };
    let block = Chain::new(vec![
        Box::new(ResidualStep::learned(c.a.clone())),
        Box::new(th),
    ])?;
    let mut p: Vec<f64> = c.a.iter().map(|v| v / c.l).collect();
    p.push(c.spec.lambda / c.l);
    Ok((Box::new(block), p))
}

fn alista_layer(c: &LayerContext<'_>, t: usize) -> Result<(Box<dyn Differentiable>, Vec<f64>)> {
    let w = c.extra.clone().expect("prepared");
    let block = Chain::new(vec![
        Box::new(ResidualStep::scaled(c.a.clone(), w)?),
        Box::new(SoftThreshold::scalar(c.a.ncols()).with_support_selection(c.support(t))?),
    ])?;
    Ok((Box::new(block), vec![1.0, c.spec.lambda / c.l]))
}

fn tista_layer(c: &LayerContext<'_>, _t: usize) -> Result<(Box<dyn Differentiable>, Vec<f64>)> {
    let z = c.extra.clone().expect("prepared");
    let sig = &c.spec.signal;
    let layer = TistaLayer::new(c.a.clone(), z, sig.p, sig.noise_var(c.problem));
    Ok((Box::new(layer), vec![1.0]))
}

fn scalars(_n: usize, _m: usize) -> u128 {
    2
}

/// The model families (see the module table).
pub static REGISTRY: [ModelInfo; 7] = [
    ModelInfo {
        kind: ModelKind::DuIsta,
        name: "du-ista",
        penalty: Penalty::L1,
        default_lr: 1e-2,
        per_layer: scalars,
        prepare: None,
        layer: prox_grad_layer,
        report: &[("alpha", ParamPick::At(0))],
    },
    ModelInfo {
        kind: ModelKind::DuIht,
        name: "du-iht",
        penalty: Penalty::L0,
        default_lr: 1e-2,
        per_layer: scalars,
        prepare: None,
        layer: prox_grad_layer,
        report: &[("alpha", ParamPick::At(0))],
    },
    ModelInfo {
        kind: ModelKind::Lista,
        name: "lista",
        penalty: Penalty::L1,
        default_lr: 1e-3,
        per_layer: |n, m| (n as u128) * (n as u128 + m as u128) + 1,
        prepare: None,
        layer: lista_layer,
        report: &[("theta", ParamPick::Last)],
    },
    ModelInfo {
        kind: ModelKind::ListaCp,
        name: "lista-cp",
        penalty: Penalty::L1,
        default_lr: 1e-3,
        per_layer: |n, m| (m as u128) * (n as u128) + 1,
        prepare: None,
        layer: lista_cp_layer,
        report: &[("theta", ParamPick::Last)],
    },
    ModelInfo {
        kind: ModelKind::ListaCpss,
        name: "lista-cpss",
        penalty: Penalty::L1,
        default_lr: 1e-3,
        per_layer: |n, m| (m as u128) * (n as u128) + 1,
        prepare: None,
        layer: lista_cp_layer,
        report: &[("theta", ParamPick::Last)],
    },
    ModelInfo {
        kind: ModelKind::Alista,
        name: "alista",
        penalty: Penalty::L1,
        default_lr: 1e-2,
        per_layer: scalars,
        prepare: Some(Problem::alista_weight),
        layer: alista_layer,
        report: &[("gamma", ParamPick::At(0)), ("theta", ParamPick::At(1))],
    },
    ModelInfo {
        kind: ModelKind::Tista,
        name: "tista",
        penalty: Penalty::L1,
        default_lr: 1e-2,
        per_layer: scalars,
        prepare: Some(Problem::gram_inverse_times_a),
        layer: tista_layer,
        report: &[("gamma", ParamPick::At(0))],
    },
];

/// Everything that defines a model besides its learned parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// The family.
    pub kind: ModelKind,
    /// Number of layers T.
    pub layers: usize,
    /// λ of the original problem `½‖y − Ax‖² + λ‖x‖₁` (or `‖x‖₀`).
    pub lambda: f64,
    /// Support-selection increment per layer (fraction; ALISTA code: 0.012).
    pub ss_step: f64,
    /// Support-selection cap (fraction; ALISTA code: 0.13).
    pub ss_max: f64,
    /// The signal model TISTA's shrinkage assumes (the training distribution).
    pub signal: Signal,
}

impl ModelSpec {
    /// Defaults for a kind: λ = 0.1, support selection 1.2 % per layer up to 13 %.
    pub fn new(kind: ModelKind, layers: usize) -> Self {
        Self {
            kind,
            layers,
            lambda: 0.1,
            ss_step: 0.012,
            ss_max: 0.13,
            signal: Signal::default(),
        }
    }

    /// `Err` on zero or more than 2²⁰ layers, a non-positive λ, or bad support-selection fractions.
    pub fn check(&self) -> Result<()> {
        if self.layers == 0 || self.layers > 1 << 20 {
            return Err(Error::param(
                "layers",
                self.layers,
                "use 1 to 1048576 layers (e.g. 16)",
            ));
        }
        if !(self.lambda > 0.0 && self.lambda.is_finite()) {
            return Err(Error::param(
                "lambda",
                self.lambda,
                "λ must be positive (e.g. 0.1)",
            ));
        }
        for (name, v) in [("ss_step", self.ss_step), ("ss_max", self.ss_max)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::param(name, v, "a fraction in [0, 1]"));
            }
        }
        self.signal.check()
    }
}

/// What trainers, evaluators and reports need from an unfolded network.
///
/// The state of layer t is a batch whose rows are samples; [`UnfoldedModel::readout`] maps a
/// state to the signal estimate (the identity unless the state carries extra variables, e.g.
/// a momentum term).
pub trait UnfoldedModel {
    /// Name for reports.
    fn name(&self) -> String;
    /// The network.
    fn net(&self) -> &Unrolled;
    /// Current parameters.
    fn params(&self) -> &[f64];
    /// Mutable parameters.
    fn params_mut(&mut self) -> &mut [f64];
    /// Number of layers.
    fn depth(&self) -> usize {
        self.net().depth()
    }
    /// λ and the penalty of the original problem.
    fn objective(&self) -> (f64, Penalty);
    /// The initial state for measurements `y` (default zeros of the network's input width).
    fn initial_state(&self, y: ArrayView2<'_, f64>) -> Array2<f64> {
        Array2::zeros((y.nrows(), self.net().in_dim()))
    }
    /// Whether the state is the estimate and starts at zero (default `false`; the seven
    /// models: `true`), so that [`crate::train::loss_and_grad_ws`] needs neither
    /// [`UnfoldedModel::initial_state`] nor [`UnfoldedModel::readout`] and allocates nothing.
    fn plain_state(&self) -> bool {
        false
    }
    /// Signal estimate from a state (default: the state).
    fn readout(&self, state: ArrayView2<'_, f64>) -> Array2<f64> {
        state.to_owned()
    }
    /// Adjoint of [`UnfoldedModel::readout`]: the state gradient from the estimate's gradient.
    fn readout_vjp(&self, _state: ArrayView2<'_, f64>, g: Array2<f64>) -> Array2<f64> {
        g
    }
    /// The learned parameters per layer, by name, for reports.
    fn layer_params(&self) -> Vec<(String, Vec<f64>)>;
    /// The network on GPU batches (the same layers and parameter layout as
    /// [`UnfoldedModel::net`]). Default: `Unsupported` (the model trains on the CPU only).
    #[cfg(feature = "cuda")]
    fn gpu_net(
        &self,
    ) -> Result<hyperprox_core::diff::UnrolledOn<hyperprox_core::cuda::GpuMat<f64>>> {
        Err(Error::Unsupported {
            what: "training on the GPU".into(),
            by: self.name(),
            hint: "; DU-ISTA and DU-IHT train on the GPU; train this model with --device cpu"
                .into(),
        })
    }
}

/// A model of one of the [`ModelKind`]s on a [`Problem`].
pub struct Unfolded {
    spec: ModelSpec,
    problem: Problem,
    net: Unrolled,
    params: Vec<f64>,
}

impl std::fmt::Debug for Unfolded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unfolded")
            .field("spec", &self.spec)
            .field("num_params", &self.params.len())
            .finish()
    }
}

impl Unfolded {
    /// The model with its classical initialization (see the module table).
    pub fn new(spec: ModelSpec, problem: &Problem) -> Result<Self> {
        spec.check()?;
        let (m, n) = (problem.m(), problem.n());
        let info = spec.kind.info();
        // Refuse a model too large to allocate before allocating it.
        let per_layer = (info.per_layer)(n, m);
        if per_layer.saturating_mul(spec.layers as u128) > crate::data::MAX_ENTRIES as u128 {
            return Err(Error::param(
                "layers",
                spec.layers,
                format!(
                    "{} with {} layers of {per_layer} parameters exceeds {} parameters",
                    spec.kind.as_str(),
                    spec.layers,
                    crate::data::MAX_ENTRIES
                ),
            ));
        }
        let ctx = LayerContext {
            spec: &spec,
            problem,
            a: problem.a.clone(),
            l: problem.lipschitz,
            extra: match info.prepare {
                Some(f) => Some(Arc::new(f(problem)?)),
                None => None,
            },
        };
        let mut layers: Vec<Box<dyn Differentiable>> = Vec::with_capacity(spec.layers);
        let mut params = Vec::new();
        for t in 0..spec.layers {
            let (layer, p) = (info.layer)(&ctx, t)?;
            layers.push(layer);
            params.extend(p);
        }
        let net = Unrolled::new(layers)?;
        debug_assert_eq!(net.num_params(), params.len());
        Ok(Self {
            spec,
            problem: problem.clone(),
            net,
            params,
        })
    }

    /// The specification.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The sensing problem.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// Replaces the parameters; `Err` on a length mismatch or non-finite entries.
    pub fn set_params(&mut self, p: Vec<f64>) -> Result<()> {
        hyperprox_core::linalg::check_len(
            "Unfolded::set_params",
            "parameters",
            self.params.len(),
            p.len(),
        )?;
        if let Some(i) = p.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "model parameters".into(),
                index: i,
                value: p[i].to_string(),
            });
        }
        self.params = p;
        Ok(())
    }

    /// The model as JSON (format `hyperprox-unfolded-model-v1`): the spec, how to rebuild `A`
    /// (M, N, seed and a checksum) and the parameters.
    pub fn to_json(&self) -> Value {
        let file = ModelFile {
            model: self.spec.kind,
            layers: self.spec.layers,
            lambda: self.spec.lambda,
            ss_step: self.spec.ss_step,
            ss_max: self.spec.ss_max,
            signal: self.spec.signal,
            problem: ProblemRef {
                m: self.problem.m(),
                n: self.problem.n(),
                seed: self.problem.seed,
                checksum: checksum(&self.problem),
            },
            params: self.params.clone(),
        };
        // A struct of numbers, strings and lists always serializes.
        hyperprox_core::io::to_tagged_json(MODEL_FORMAT, &file).unwrap_or(Value::Null)
    }

    /// Rebuilds a model written by [`Unfolded::to_json`] (regenerating `A` from its seed).
    pub fn from_json(v: &Value) -> Result<Self> {
        let f: ModelFile = hyperprox_core::io::from_tagged_json(
            MODEL_FORMAT,
            "model file",
            "write one with `hyperprox unfold train`",
            v.clone(),
        )?;
        let problem = Problem::gaussian(f.problem.m, f.problem.n, f.problem.seed)?;
        if f.problem.checksum != checksum(&problem) {
            return Err(Error::param(
                "model file",
                "problem.checksum",
                "A regenerated differently on this build",
            ));
        }
        let spec = ModelSpec {
            kind: f.model,
            layers: f.layers,
            lambda: f.lambda,
            ss_step: f.ss_step,
            ss_max: f.ss_max,
            signal: f.signal,
        };
        let mut model = Self::new(spec, &problem)?;
        model.set_params(f.params)?;
        Ok(model)
    }
}

const MODEL_FORMAT: &str = "hyperprox-unfolded-model-v1";

/// How a model file names its sensing matrix.
#[derive(Serialize, Deserialize)]
struct ProblemRef {
    m: usize,
    n: usize,
    seed: u64,
    checksum: f64,
}

/// The model file's payload.
#[derive(Serialize, Deserialize)]
struct ModelFile {
    model: ModelKind,
    layers: usize,
    lambda: f64,
    ss_step: f64,
    ss_max: f64,
    signal: Signal,
    problem: ProblemRef,
    params: Vec<f64>,
}

/// A fingerprint of `A` (sum of entries weighted by position), stored in model files.
pub fn checksum(problem: &Problem) -> f64 {
    let s: f64 = problem
        .a
        .iter()
        .enumerate()
        .map(|(i, v)| v * (1.0 + (i % 7) as f64))
        .sum();
    (s * 1e9).round() / 1e9
}

impl UnfoldedModel for Unfolded {
    fn name(&self) -> String {
        self.spec.kind.as_str().to_string()
    }
    /// DU-ISTA and DU-IHT: their [`ProxGradLayer`]s, which run on device batches.
    #[cfg(feature = "cuda")]
    fn gpu_net(
        &self,
    ) -> Result<hyperprox_core::diff::UnrolledOn<hyperprox_core::cuda::GpuMat<f64>>> {
        use hyperprox_core::cuda::GpuMat;
        use hyperprox_core::diff::DifferentiableOn;
        match self.spec.kind {
            ModelKind::DuIsta | ModelKind::DuIht => {
                let penalty = self.spec.kind.penalty();
                let layers = (0..self.spec.layers)
                    .map(|_| {
                        Box::new(ProxGradLayer::new(
                            self.problem.a.clone(),
                            self.spec.lambda,
                            penalty,
                        )) as Box<dyn DifferentiableOn<GpuMat<f64>>>
                    })
                    .collect();
                hyperprox_core::diff::UnrolledOn::new(layers)
            }
            k => Err(Error::Unsupported {
                what: "training on the GPU".into(),
                by: k.as_str().into(),
                hint: "; DU-ISTA and DU-IHT train on the GPU; train this model with --device cpu"
                    .into(),
            }),
        }
    }
    fn plain_state(&self) -> bool {
        true
    }
    fn net(&self) -> &Unrolled {
        &self.net
    }
    fn params(&self) -> &[f64] {
        &self.params
    }
    fn params_mut(&mut self) -> &mut [f64] {
        &mut self.params
    }
    fn objective(&self) -> (f64, Penalty) {
        (self.spec.lambda, self.spec.kind.penalty())
    }
    fn layer_params(&self) -> Vec<(String, Vec<f64>)> {
        let p = &self.params;
        let per_layer = |pick: &dyn Fn(&[f64]) -> f64| -> Vec<f64> {
            (0..self.net.depth())
                .map(|t| pick(&p[self.net.param_range(t)]))
                .collect()
        };
        self.spec
            .kind
            .info()
            .report
            .iter()
            .map(|&(name, pick)| {
                let v = match pick {
                    ParamPick::At(k) => per_layer(&|q| q[k]),
                    ParamPick::Last => per_layer(&|q| q[q.len() - 1]),
                };
                (name.to_string(), v)
            })
            .collect()
    }
}

/// An unfolded model composed from blocks, with no model-specific code: the network, its
/// parameters, λ and the penalty of the problem it unfolds, and the width `n` of the estimate,
/// which is the first `n` columns of the state (the rest carries auxiliary variables, e.g. the
/// previous iterate of an accelerated method). The state starts at zero, except that the
/// measurements (the context) are copied to each column offset in `start` (their leading
/// columns that fit), e.g. `[0, n]` to start a primal–dual method at `x = x̄ = y`. Every layer
/// must have the same number of parameters, named by `param_names` for reports.
pub struct Composed {
    /// Name for reports.
    pub name: String,
    /// The network.
    pub net: Unrolled,
    /// Its parameters.
    pub params: Vec<f64>,
    /// λ of the unfolded problem.
    pub lambda: f64,
    /// Its penalty.
    pub penalty: Penalty,
    /// Width of the estimate.
    pub n: usize,
    /// Names of each layer's parameters.
    pub param_names: Vec<String>,
    /// Column offsets of the state where the measurements are copied at the start.
    pub start: Vec<usize>,
}

impl UnfoldedModel for Composed {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn net(&self) -> &Unrolled {
        &self.net
    }
    fn params(&self) -> &[f64] {
        &self.params
    }
    fn params_mut(&mut self) -> &mut [f64] {
        &mut self.params
    }
    fn objective(&self) -> (f64, Penalty) {
        (self.lambda, self.penalty)
    }
    fn initial_state(&self, y: ArrayView2<'_, f64>) -> Array2<f64> {
        let width = self.net.in_dim();
        let mut s = Array2::zeros((y.nrows(), width));
        for &o in &self.start {
            let k = y.ncols().min(width.saturating_sub(o));
            if k == 0 {
                continue;
            }
            s.slice_mut(ndarray::s![.., o..o + k])
                .assign(&y.slice(ndarray::s![.., ..k]));
        }
        s
    }
    fn readout(&self, state: ArrayView2<'_, f64>) -> Array2<f64> {
        state.slice(ndarray::s![.., ..self.n]).to_owned()
    }
    fn readout_vjp(&self, state: ArrayView2<'_, f64>, g: Array2<f64>) -> Array2<f64> {
        let mut out = Array2::zeros(state.raw_dim());
        out.slice_mut(ndarray::s![.., ..self.n]).assign(&g);
        out
    }
    fn layer_params(&self) -> Vec<(String, Vec<f64>)> {
        let k = self.param_names.len().max(1);
        self.param_names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let v = self.params.iter().skip(i).step_by(k).copied().collect();
                (name.clone(), v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_files_round_trip_and_check_the_matrix() {
        let problem = Problem::gaussian(10, 20, 4).unwrap();
        let mut m = Unfolded::new(ModelSpec::new(ModelKind::Alista, 3), &problem).unwrap();
        let p: Vec<f64> = (0..m.params().len())
            .map(|i| 0.1 + i as f64 * 0.01)
            .collect();
        m.set_params(p.clone()).unwrap();
        let v = m.to_json();
        assert_eq!(v["model"], "alista");
        let back = Unfolded::from_json(&v).unwrap();
        assert_eq!(back.params(), &p[..]);
        assert_eq!(back.spec().kind, ModelKind::Alista);
        let mut bad = v.clone();
        bad["problem"]["checksum"] = serde_json::json!(1.0);
        assert!(Unfolded::from_json(&bad).is_err());
        let mut bad = v;
        bad["model"] = serde_json::json!("nope");
        assert!(Unfolded::from_json(&bad).is_err());
    }
}
