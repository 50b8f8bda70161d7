//! Neural components as [`Differentiable`] blocks: layers, losses, optimizers with parameter
//! groups, and a small trainer for classifiers.
//!
//! Every layer works on batches whose **rows are samples** (an image is stored in a row in
//! channel-major order `(channel, row, column)`), in `f32` or `f64`, and states its VJP for the
//! state, the parameters and the context, and its JVP for the state; the test kit
//! [`check_block`](crate::diff::check_block) compares each with finite differences. A network is
//! a [`Sequential`] of [`Layer`]s: a layer is a block that also knows how to initialize its
//! parameters and how they split into named groups (`"0.weight"`, `"0.bias"`, …) for the
//! optimizers of [`optim`].
//!
//! | block | map (one row) | parameters |
//! |---|---|---|
//! | [`Dense`] | `W x + b` | `W`, `b` |
//! | [`Conv2d`] | 2-D cross-correlation, stride, zero padding (im2col + GEMM) | filters, bias |
//! | [`Pool2d`] | average or max over windows | — |
//! | [`Act`] | ReLU, leaky ReLU, tanh, sigmoid, softplus (β), GELU | — |
//! | [`Dropout`] | inverted dropout, rate fixed or read from the context, Bernoulli or concrete | — |
//! | [`LayerNorm`] | `γ ⊙ (x − μ)/√(σ² + ε) + β` | `γ`, `β` |
//! | [`Reshape`] | identity on the data (shapes only) | — |
//! | [`Residual`] | `x + f(x)` | those of `f` |
//! | [`Extrapolate`] | `[a, b] ↦ [a + β(a − b), a]` (momentum) | `β` |
//! | [`OnFirst`] | `[a, b] ↦ [f(a), b]` | those of `f` |
//!
//! # References
//! K. He, X. Zhang, S. Ren, J. Sun, "Delving deep into rectifiers", ICCV 2015 (Kaiming init);
//! X. Glorot, Y. Bengio, "Understanding the difficulty of training deep feedforward neural
//! networks", AISTATS 2010 (Xavier init); J. L. Ba, J. R. Kiros, G. E. Hinton, "Layer
//! normalization", 2016; N. Srivastava et al., "Dropout", JMLR 2014.

use crate::diff::{Chain, Differentiable, Saved};
use crate::error::{Error, Result};
use crate::linalg::Real;
use ndarray::{Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal, Uniform};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

pub mod conv;
pub mod layers;
pub mod loss;
pub mod optim;
pub mod train;

pub use conv::{Conv2d, ImageShape, Pool2d, PoolKind};
pub use layers::{
    sigmoid, softplus, Act, Activation, Dense, DropRate, Dropout, DropoutControl, Extrapolate,
    LayerNorm, OnFirst, Reshape, Residual,
};

/// Weight initializations (the bias of a dense or convolutional layer starts at zero, except
/// with [`Init::TorchDefault`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Init {
    /// PyTorch's default for `nn.Linear`/`nn.Conv2d`: `U(−1/√fan_in, 1/√fan_in)` for the
    /// weights and the bias (Kaiming-uniform with `a = √5`).
    TorchDefault,
    /// Kaiming (He) uniform for ReLU: `U(−√(6/fan_in), √(6/fan_in))`.
    KaimingUniform,
    /// Kaiming (He) normal for ReLU: `N(0, 2/fan_in)`.
    KaimingNormal,
    /// Xavier (Glorot) uniform: `U(−√(6/(fan_in + fan_out)), …)`.
    XavierUniform,
    /// Xavier (Glorot) normal: `N(0, 2/(fan_in + fan_out))`.
    XavierNormal,
    /// `U(−a, a)`.
    Uniform(f64),
    /// All zero.
    Zeros,
}

impl Init {
    /// `len` draws for a layer with the given fan-in and fan-out.
    pub fn sample<T: Real>(
        self,
        len: usize,
        fan_in: usize,
        fan_out: usize,
        rng: &mut StdRng,
    ) -> Vec<T> {
        let fi = fan_in.max(1) as f64;
        let fo = fan_out as f64;
        let uni = |a: f64, rng: &mut StdRng| -> Vec<T> {
            let d = Uniform::new_inclusive(-a, a).expect("finite bound");
            (0..len).map(|_| T::c(d.sample(rng))).collect()
        };
        let normal = |sd: f64, rng: &mut StdRng| -> Vec<T> {
            (0..len)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(rng);
                    T::c(sd * z)
                })
                .collect()
        };
        match self {
            Init::TorchDefault => uni(1.0 / fi.sqrt(), rng),
            Init::KaimingUniform => uni((6.0 / fi).sqrt(), rng),
            Init::KaimingNormal => normal((2.0 / fi).sqrt(), rng),
            Init::XavierUniform => uni((6.0 / (fi + fo)).sqrt(), rng),
            Init::XavierNormal => normal((2.0 / (fi + fo)).sqrt(), rng),
            Init::Uniform(a) => uni(a.abs(), rng),
            Init::Zeros => vec![T::zero(); len],
        }
    }
}

/// A named range of a layer's (or a network's) flat parameter vector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamGroupSpec {
    /// Name (`"weight"`, `"bias"`; in a [`Sequential`], prefixed by the layer's index).
    pub name: String,
    /// Where the group lies in the parameter vector.
    pub range: Range<usize>,
    /// Whether it is a weight matrix or filter bank (weight decay applies to these by default),
    /// as opposed to a bias, gain or shift.
    pub is_weight: bool,
}

impl ParamGroupSpec {
    /// A group.
    pub fn new(name: &str, range: Range<usize>, is_weight: bool) -> Self {
        Self {
            name: name.into(),
            range,
            is_weight,
        }
    }
}

/// A [`Differentiable`] block that can initialize its parameters and names their groups.
pub trait Layer<T: Real = f64>: Differentiable<T> {
    /// Initial parameters (default: zeros).
    fn init_params(&self, rng: &mut StdRng) -> Vec<T> {
        let _ = rng;
        vec![T::zero(); self.num_params()]
    }
    /// Named parameter groups (default: one group `"params"` if there are any, not a weight).
    fn param_groups(&self) -> Vec<ParamGroupSpec> {
        match self.num_params() {
            0 => vec![],
            n => vec![ParamGroupSpec::new("params", 0..n, false)],
        }
    }
}

/// Products of at least this many multiply-adds are split over the threads (by rows, see
/// [`crate::linalg::gemm_rows`]). Measured on the MLP and CNN of `benches/peers_nn.py` with 2
/// threads: at the general threshold (2²² multiply-adds) a training step was slower than with 1
/// thread (fork and join cost more than the halves save at batch 128).
const NN_PARALLEL_FLOPS: usize = 1 << 25;

/// `C ← αAB (+ C)` for the layers: sequential below [`NN_PARALLEL_FLOPS`], row-split above.
pub(crate) fn gemm<T: Real>(
    c: ndarray::ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    alpha: T,
    beta_one: bool,
) {
    if a.nrows() * a.ncols() * b.ncols() < NN_PARALLEL_FLOPS {
        T::gemm_seq(c, a, b, alpha, beta_one)
    } else {
        crate::linalg::gemm_rows(c, a, b, alpha, beta_one)
    }
}

/// `Err` unless the parameter slice has the block's length.
pub(crate) fn check_params<T>(who: &str, n: usize, p: &[T]) -> Result<()> {
    crate::linalg::check_len(who, "parameters", n, p.len())
}

/// `Err` unless `x` has `n` columns.
pub(crate) fn check_width<T>(who: &str, x: ArrayView2<'_, T>, n: usize) -> Result<()> {
    if x.ncols() != n {
        return Err(Error::shape(
            who,
            "input width",
            n.to_string(),
            x.ncols().to_string(),
        ));
    }
    Ok(())
}

/// Layers applied in turn; a [`Layer`] itself (a sequential can sit in a [`Residual`]).
pub struct Sequential<T: Real = f64> {
    layers: Vec<Arc<dyn Layer<T>>>,
    chain: Chain<T>,
}

impl<T: Real> Sequential<T> {
    /// `Err` on an empty list or mismatched widths.
    pub fn new(layers: Vec<Arc<dyn Layer<T>>>) -> Result<Self> {
        let blocks: Vec<Box<dyn Differentiable<T>>> = layers
            .iter()
            .map(|l| Box::new(l.clone()) as Box<dyn Differentiable<T>>)
            .collect();
        Ok(Self {
            chain: Chain::new(blocks)?,
            layers,
        })
    }
    /// The layers.
    pub fn layers(&self) -> &[Arc<dyn Layer<T>>] {
        &self.layers
    }
    /// Initial parameters drawn from a generator seeded with `seed`.
    pub fn init(&self, seed: u64) -> Vec<T> {
        let mut rng = StdRng::seed_from_u64(seed);
        self.init_params(&mut rng)
    }
}

impl<T: Real> Differentiable<T> for Sequential<T> {
    fn name(&self) -> String {
        self.chain.name()
    }
    fn in_dim(&self) -> usize {
        self.chain.in_dim()
    }
    fn out_dim(&self) -> usize {
        self.chain.out_dim()
    }
    fn ctx_dim(&self) -> usize {
        self.chain.ctx_dim()
    }
    fn num_params(&self) -> usize {
        self.chain.num_params()
    }
    fn forward(&self, p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        self.check_params(p)?;
        self.chain.forward(p, x, c)
    }
    fn vjp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        self.check_params(p)?;
        self.chain.vjp(p, x, c, g, gp)
    }
    fn forward_save(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
    ) -> Result<(Array2<T>, Saved)> {
        self.check_params(p)?;
        self.chain.forward_save(p, x, c)
    }
    fn vjp_saved(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        saved: &Saved,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        self.chain.vjp_saved(p, x, c, saved, g, gp)
    }
    fn vjp_ctx(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        self.chain.vjp_ctx(p, x, c, g)
    }
    fn jvp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        self.chain.jvp(p, x, c, v)
    }
}

impl<T: Real> Sequential<T> {
    fn check_params(&self, p: &[T]) -> Result<()> {
        crate::linalg::check_len("Sequential", "parameters", self.num_params(), p.len())
    }
}

impl<T: Real> Layer<T> for Sequential<T> {
    fn init_params(&self, rng: &mut StdRng) -> Vec<T> {
        self.layers
            .iter()
            .flat_map(|l| l.init_params(rng))
            .collect()
    }
    fn param_groups(&self) -> Vec<ParamGroupSpec> {
        let mut off = 0;
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for g in l.param_groups() {
                out.push(ParamGroupSpec {
                    name: format!("{i}.{}", g.name),
                    range: g.range.start + off..g.range.end + off,
                    is_weight: g.is_weight,
                });
            }
            off += l.num_params();
        }
        out
    }
}

/// A solver run is a layer too: its one parameter `log λ` starts at 0 (`λ = 1`; set it in the
/// parameter vector to start elsewhere).
impl<T: Real> Layer<T> for crate::diff::SolveLayer<T> {
    fn param_groups(&self) -> Vec<ParamGroupSpec> {
        vec![ParamGroupSpec::new("log_lambda", 0..1, false)]
    }
}
