//! Dense, activation, dropout, layer-norm, reshape and residual blocks.

use super::gemm;
use super::{check_width, Init, Layer, ParamGroupSpec};
use crate::diff::Differentiable;
use crate::error::{Error, Result};
use crate::linalg::Real;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Zip};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Dense layer `y = W x + b` row by row: `Y = X Wᵀ + 1 bᵀ`. Parameters: `W` (n_out × n_in,
/// row-major) then `b` (n_out). VJP: `X̄ = Ḡ W`, `W̄ = Ḡᵀ X`, `b̄ = Σ_rows Ḡ`; JVP `V Wᵀ`.
#[derive(Clone, Debug)]
pub struct Dense {
    n_in: usize,
    n_out: usize,
    bias: bool,
    init: Init,
}

impl Dense {
    /// `n_in → n_out` with a bias, initialized as PyTorch's `nn.Linear` (Kaiming-uniform with
    /// `a = √5`, i.e. `U(−1/√n_in, 1/√n_in)` for the weights and the bias).
    pub fn new(n_in: usize, n_out: usize) -> Self {
        Self {
            n_in,
            n_out,
            bias: true,
            init: Init::TorchDefault,
        }
    }
    /// Without the bias.
    pub fn without_bias(mut self) -> Self {
        self.bias = false;
        self
    }
    /// With another weight initialization (the bias starts at zero except for
    /// [`Init::TorchDefault`]).
    pub fn with_init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }
    fn w<'a, T: Real>(&self, p: &'a [T]) -> ArrayView2<'a, T> {
        ArrayView2::from_shape((self.n_out, self.n_in), &p[..self.n_out * self.n_in])
            .expect("sized")
    }
    /// The linear part `X Wᵀ` (`w` holds at least the weights, row-major).
    pub fn apply<T: Real>(&self, w: &[T], x: ArrayView2<'_, T>) -> Array2<T> {
        let mut out = Array2::zeros((x.nrows(), self.n_out));
        gemm(out.view_mut(), x, self.w(w).t(), T::one(), false);
        out
    }
    /// Its transpose `G W`.
    pub fn apply_t<T: Real>(&self, w: &[T], g: ArrayView2<'_, T>) -> Array2<T> {
        let mut out = Array2::zeros((g.nrows(), self.n_in));
        gemm(out.view_mut(), g, self.w(w), T::one(), false);
        out
    }
    /// `gw += Gᵀ X` (the weight gradient, row-major).
    pub fn add_weight_grad<T: Real>(
        &self,
        gw: &mut [T],
        g: ArrayView2<'_, T>,
        x: ArrayView2<'_, T>,
    ) {
        let gw =
            ArrayViewMut2::from_shape((self.n_out, self.n_in), &mut gw[..self.n_out * self.n_in])
                .expect("sized");
        gemm(gw, g.t(), x, T::one(), true);
    }
}

impl<T: Real> Differentiable<T> for Dense {
    fn name(&self) -> String {
        format!("dense {}→{}", self.n_in, self.n_out)
    }
    fn in_dim(&self) -> usize {
        self.n_in
    }
    fn out_dim(&self) -> usize {
        self.n_out
    }
    fn num_params(&self) -> usize {
        self.n_out * self.n_in + if self.bias { self.n_out } else { 0 }
    }
    fn forward(&self, p: &[T], x: ArrayView2<'_, T>, _c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        super::check_params("Dense", Differentiable::<T>::num_params(self), p)?;
        check_width("Dense", x, self.n_in)?;
        let mut out = Array2::zeros((x.nrows(), self.n_out));
        if self.bias {
            let b = &p[self.n_out * self.n_in..];
            for mut r in out.rows_mut() {
                r.as_slice_mut()
                    .expect("standard layout")
                    .copy_from_slice(b);
            }
        }
        gemm(out.view_mut(), x, self.w(p).t(), T::one(), self.bias);
        Ok(out)
    }
    fn vjp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        super::check_params("Dense", Differentiable::<T>::num_params(self), p)?;
        super::check_params("Dense", Differentiable::<T>::num_params(self), gp)?;
        let k = self.n_out * self.n_in;
        let (gw, gb) = gp.split_at_mut(k);
        self.add_weight_grad(gw, g, x);
        if self.bias {
            add_row_sums(gb, g);
        }
        Ok(self.apply_t(p, g))
    }
    fn jvp(
        &self,
        p: &[T],
        _x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        super::check_params("Dense", Differentiable::<T>::num_params(self), p)?;
        Ok(self.apply(p, v))
    }
}

impl<T: Real> Layer<T> for Dense {
    fn init_params(&self, rng: &mut StdRng) -> Vec<T> {
        let mut p = self
            .init
            .sample(self.n_out * self.n_in, self.n_in, self.n_out, rng);
        if self.bias {
            p.extend(match self.init {
                Init::TorchDefault => Init::TorchDefault.sample(self.n_out, self.n_in, 0, rng),
                _ => vec![T::zero(); self.n_out],
            });
        }
        p
    }
    fn param_groups(&self) -> Vec<ParamGroupSpec> {
        let k = self.n_out * self.n_in;
        let mut v = vec![ParamGroupSpec::new("weight", 0..k, true)];
        if self.bias {
            v.push(ParamGroupSpec::new("bias", k..k + self.n_out, false));
        }
        v
    }
}

/// Elementwise activation functions.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x` if `x > 0`, else `α x`.
    LeakyRelu(f64),
    /// `tanh x`.
    Tanh,
    /// `1/(1 + e^{−x})`.
    Sigmoid,
    /// `log(1 + e^{βx})/β` (sharpness `β > 0`; `β → ∞` gives ReLU).
    Softplus(f64),
    /// `x Φ(x)` with the exact normal distribution function (PyTorch's default GELU).
    Gelu,
}

pub use crate::linalg::sigmoid;

/// `log(1 + e^{βx})/β` without overflow (see [`crate::linalg::softplus_derivs`]).
pub fn softplus<T: Real>(x: T, beta: T) -> T {
    crate::linalg::softplus_derivs(x, beta).0
}

impl Activation {
    /// `(σ(x), σ'(x))`.
    #[inline]
    pub fn eval<T: Real>(self, x: T) -> (T, T) {
        match self {
            Activation::Relu => {
                if x > T::zero() {
                    (x, T::one())
                } else {
                    (T::zero(), T::zero())
                }
            }
            Activation::LeakyRelu(a) => {
                if x > T::zero() {
                    (x, T::one())
                } else {
                    (T::c(a) * x, T::c(a))
                }
            }
            Activation::Tanh => {
                let t = x.tanh();
                (t, T::one() - t * t)
            }
            Activation::Sigmoid => {
                let s = sigmoid(x);
                (s, s * (T::one() - s))
            }
            Activation::Softplus(b) => {
                let (s, d, _) = crate::linalg::softplus_derivs(x, T::c(b));
                (s, d)
            }
            Activation::Gelu => {
                let xf = x.as_f64();
                let cdf = 0.5 * libm::erfc(-xf / std::f64::consts::SQRT_2);
                let pdf = (-0.5 * xf * xf).exp() / (2.0 * std::f64::consts::PI).sqrt();
                (T::c(xf * cdf), T::c(cdf + xf * pdf))
            }
        }
    }

    fn name(self) -> String {
        match self {
            Activation::Relu => "ReLU".into(),
            Activation::LeakyRelu(a) => format!("leaky ReLU ({a})"),
            Activation::Tanh => "tanh".into(),
            Activation::Sigmoid => "sigmoid".into(),
            Activation::Softplus(b) => format!("softplus (β = {b})"),
            Activation::Gelu => "GELU".into(),
        }
    }

    fn check(self) -> Result<Self> {
        match self {
            Activation::Softplus(b) if !(b > 0.0 && b.is_finite()) => Err(Error::param(
                "softplus sharpness β",
                b,
                "must be positive and finite (1 is the usual softplus)",
            )),
            Activation::LeakyRelu(a) if !a.is_finite() => Err(Error::param(
                "leaky ReLU slope",
                a,
                "must be finite (e.g. 0.01)",
            )),
            a => Ok(a),
        }
    }
}

/// An [`Activation`] applied to every entry of a state of width `n` (no parameters).
/// VJP `ḡ ⊙ σ'(x)`, JVP `v ⊙ σ'(x)`.
#[derive(Clone, Debug)]
pub struct Act {
    n: usize,
    f: Activation,
}

impl Act {
    /// `Err` on a non-positive softplus sharpness.
    pub fn new(n: usize, f: Activation) -> Result<Self> {
        Ok(Self { n, f: f.check()? })
    }
    /// The function.
    pub fn function(&self) -> Activation {
        self.f
    }
    /// `ḡ ⊙ σ'(x)`, with the function's case chosen once per call (tight loops that the
    /// compiler vectorizes for ReLU and leaky ReLU).
    fn scale<T: Real>(&self, x: ArrayView2<'_, T>, g: ArrayView2<'_, T>) -> Array2<T> {
        let mut out = g.to_owned();
        if let (Activation::Relu, Some(os), Some(xs)) = (self.f, out.as_slice_mut(), x.as_slice()) {
            // Branch-free (a data-dependent branch mispredicts on half the entries).
            os.iter_mut()
                .zip(xs)
                .for_each(|(o, &xv)| *o = if xv > T::zero() { *o } else { T::zero() });
            return out;
        }
        let z = Zip::from(&mut out).and(&x);
        match self.f {
            Activation::Relu => z.for_each(|o, &xv| {
                if xv <= T::zero() {
                    *o = T::zero()
                }
            }),
            Activation::LeakyRelu(a) => {
                let a = T::c(a);
                z.for_each(|o, &xv| {
                    if xv <= T::zero() {
                        *o *= a
                    }
                })
            }
            f => z.for_each(|o, &xv| *o *= f.eval(xv).1),
        }
        out
    }
    /// `σ(x)`, likewise.
    fn apply<T: Real>(&self, x: ArrayView2<'_, T>) -> Array2<T> {
        match self.f {
            Activation::Relu => x.mapv(|v| v.max(T::zero())),
            Activation::LeakyRelu(a) => {
                let a = T::c(a);
                x.mapv(|v| if v > T::zero() { v } else { a * v })
            }
            Activation::Tanh => x.mapv(|v| v.tanh()),
            f => x.mapv(|v| f.eval(v).0),
        }
    }
}

impl<T: Real> Differentiable<T> for Act {
    fn name(&self) -> String {
        self.f.name()
    }
    fn in_dim(&self) -> usize {
        self.n
    }
    fn out_dim(&self) -> usize {
        self.n
    }
    fn num_params(&self) -> usize {
        0
    }
    fn forward(&self, _p: &[T], x: ArrayView2<'_, T>, _c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        check_width("activation", x, self.n)?;
        Ok(self.apply(x))
    }
    fn vjp(
        &self,
        _p: &[T],
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        _gp: &mut [T],
    ) -> Result<Array2<T>> {
        Ok(self.scale(x, g))
    }
    fn jvp(
        &self,
        _p: &[T],
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        Ok(self.scale(x, v))
    }
}

impl<T: Real> Layer<T> for Act {}

/// Train/evaluation mode and the mask seed of [`Dropout`] blocks, shared between the blocks
/// and the trainer that owns them (`Arc`): the trainer sets the step before each minibatch, so
/// a mask is a pure function of `(seed, step, layer, row, column)` and a resumed run draws the
/// same masks.
#[derive(Debug, Default)]
pub struct DropoutControl {
    seed: AtomicU64,
    step: AtomicU64,
    eval: AtomicBool,
}

impl DropoutControl {
    /// A control in training mode at step 0.
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self {
            seed: AtomicU64::new(seed),
            step: AtomicU64::new(0),
            eval: AtomicBool::new(false),
        })
    }
    /// Sets the step (the masks change with it).
    pub fn set_step(&self, step: u64) {
        self.step.store(step, Ordering::Relaxed);
    }
    /// Training mode (`true`: masks drawn) or evaluation mode (`false`: dropout is the identity).
    pub fn set_training(&self, training: bool) {
        self.eval.store(!training, Ordering::Relaxed);
    }
    /// Whether masks are drawn.
    pub fn training(&self) -> bool {
        !self.eval.load(Ordering::Relaxed)
    }
    /// The uniform draw in `(0, 1)` for entry `(row, col)` of layer `salt` at the current step.
    fn uniform(&self, salt: u64, row: usize, col: usize) -> f64 {
        let s = crate::diff::batch_seed(
            self.seed.load(Ordering::Relaxed) ^ salt.wrapping_mul(0xD6E8_FEB8_6659_FD93),
            self.step.load(Ordering::Relaxed),
        );
        let z = crate::diff::batch_seed(s, ((row as u64) << 32) | col as u64);
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

/// Where a [`Dropout`] block reads its rate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum DropRate {
    /// The same rate for every example.
    Fixed(f64),
    /// Column `k` of the context: one rate per example, so the rate is an input that gets a
    /// gradient (a hyperparameter, as in self-tuning networks).
    Context(usize),
}

/// Dropout on a state of width `n`, with inverted scaling so that the expected output is the
/// input. With drop rate `p` and a uniform draw `u` per entry:
///
/// * **Bernoulli** (the usual dropout): `y = x·1[u ≥ p]/(1 − p)`; `∂y/∂p = x·1[u ≥ p]/(1 − p)²`
///   (almost everywhere: the mask itself is piecewise constant in `p`).
/// * **Concrete** (relaxed Bernoulli with temperature `t`; Gal, Hron, Kendall, "Concrete
///   dropout", NeurIPS 2017): `z = σ((logit p + logit u)/t)` is a soft drop indicator and
///   `y = x·(1 − z)/(1 − p)`, smooth in `p`.
///
/// In evaluation mode ([`DropoutControl::set_training`]`(false)`) the block is the identity.
#[derive(Clone, Debug)]
pub struct Dropout {
    n: usize,
    rate: DropRate,
    temperature: Option<f64>,
    control: Arc<DropoutControl>,
    salt: u64,
}

impl Dropout {
    /// Bernoulli dropout; `salt` tells apart the dropout layers of one network. `Err` on a fixed
    /// rate outside `[0, 1)`.
    pub fn new(n: usize, rate: DropRate, control: Arc<DropoutControl>, salt: u64) -> Result<Self> {
        if let DropRate::Fixed(p) = rate {
            check_rate(p)?;
        }
        Ok(Self {
            n,
            rate,
            temperature: None,
            control,
            salt,
        })
    }
    /// The concrete relaxation with temperature `t > 0` (e.g. 0.1).
    pub fn concrete(mut self, t: f64) -> Result<Self> {
        if !(t > 0.0 && t.is_finite()) {
            return Err(Error::param(
                "concrete dropout temperature",
                t,
                "must be positive (e.g. 0.1)",
            ));
        }
        self.temperature = Some(t);
        Ok(self)
    }
    fn ctx_col(&self) -> Option<usize> {
        match self.rate {
            DropRate::Context(k) => Some(k),
            DropRate::Fixed(_) => None,
        }
    }
    fn rates<T: Real>(&self, c: ArrayView2<'_, T>, b: usize) -> Result<Vec<f64>> {
        match self.rate {
            DropRate::Fixed(p) => Ok(vec![p; b]),
            DropRate::Context(k) => {
                if k >= c.ncols() || c.nrows() != b {
                    return Err(Error::shape(
                        "Dropout",
                        "context (the rate column)",
                        format!("{b} rows and more than {k} columns"),
                        format!("{:?}", c.dim()),
                    ));
                }
                c.column(k)
                    .iter()
                    .map(|&p| check_rate(p.as_f64()))
                    .collect()
            }
        }
    }
    /// Per entry: `(m, ∂m/∂p)` with `y = x·m`.
    fn factor(&self, p: f64, u: f64) -> (f64, f64) {
        match self.temperature {
            None => {
                if u >= p {
                    (1.0 / (1.0 - p), 1.0 / ((1.0 - p) * (1.0 - p)))
                } else {
                    (0.0, 0.0)
                }
            }
            Some(t) => {
                let p_c = p.clamp(1e-7, 1.0 - 1e-7);
                let a = ((p_c / (1.0 - p_c)).ln() + (u / (1.0 - u)).ln()) / t;
                let z = sigmoid(a);
                let dz = z * (1.0 - z) / (t * p_c * (1.0 - p_c));
                let m = (1.0 - z) / (1.0 - p);
                (m, -dz / (1.0 - p) + (1.0 - z) / ((1.0 - p) * (1.0 - p)))
            }
        }
    }
    /// Visits each entry with its factors.
    fn visit<T: Real>(
        &self,
        c: ArrayView2<'_, T>,
        b: usize,
        mut f: impl FnMut(usize, usize, f64, f64),
    ) -> Result<()> {
        let rates = self.rates(c, b)?;
        for (i, &p) in rates.iter().enumerate() {
            for j in 0..self.n {
                let (m, dm) = self.factor(p, self.control.uniform(self.salt, i, j));
                f(i, j, m, dm);
            }
        }
        Ok(())
    }
    fn masked<T: Real>(&self, x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        let mut out = x.to_owned();
        if self.control.training() {
            self.visit(c, x.nrows(), |i, j, m, _| out[(i, j)] *= T::c(m))?;
        }
        Ok(out)
    }
}

fn check_rate(p: f64) -> Result<f64> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::param(
            "dropout rate",
            p,
            "must lie in [0, 1) (e.g. 0.1)",
        ));
    }
    Ok(p)
}

impl<T: Real> Differentiable<T> for Dropout {
    fn name(&self) -> String {
        match (self.rate, self.temperature) {
            (DropRate::Fixed(p), None) => format!("dropout ({p})"),
            (DropRate::Context(k), None) => format!("dropout (rate = context {k})"),
            (_, Some(t)) => format!("concrete dropout (t = {t})"),
        }
    }
    fn in_dim(&self) -> usize {
        self.n
    }
    fn out_dim(&self) -> usize {
        self.n
    }
    fn ctx_dim(&self) -> usize {
        self.ctx_col().map_or(0, |k| k + 1)
    }
    fn num_params(&self) -> usize {
        0
    }
    fn forward(&self, _p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        check_width("Dropout", x, self.n)?;
        self.masked(x, c)
    }
    fn vjp(
        &self,
        _p: &[T],
        _x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        _gp: &mut [T],
    ) -> Result<Array2<T>> {
        self.masked(g, c)
    }
    /// `p̄_b = Σ_j ḡ_bj x_bj ∂m_bj/∂p` into the rate's context column.
    fn vjp_ctx(
        &self,
        _p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        let mut out = Array2::zeros((x.nrows(), c.ncols()));
        if let (Some(k), true) = (self.ctx_col(), self.control.training()) {
            self.visit(c, x.nrows(), |i, j, _, dm| {
                out[(i, k)] += g[(i, j)] * x[(i, j)] * T::c(dm)
            })?;
        }
        Ok(out)
    }
    fn jvp(
        &self,
        _p: &[T],
        _x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        self.masked(v, c)
    }
}

impl<T: Real> Layer<T> for Dropout {}

/// Layer normalization (Ba, Kiros, Hinton, 2016) of each row of width `n`:
/// `x̂ = (x − μ)/√(σ² + ε)`, `y = γ ⊙ x̂ + β` (μ, σ² the row's mean and biased variance;
/// `ε = 1e-5` as in PyTorch). Parameters `γ` (init 1) then `β` (init 0). With `s = √(σ² + ε)`
/// the Jacobian of `x̂` is the symmetric `(I − 11ᵀ/n − x̂x̂ᵀ/n)/s`, so
/// `x̄ = (ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂))/s` with `ĝ = γ ⊙ ḡ`.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    n: usize,
    eps: f64,
}

impl LayerNorm {
    /// On rows of width `n`.
    pub fn new(n: usize) -> Self {
        Self { n, eps: 1e-5 }
    }
    /// Per row: `(x̂, 1/s)`.
    fn normalize<T: Real>(&self, x: ArrayView2<'_, T>) -> (Array2<T>, Vec<T>) {
        let n = T::c(self.n as f64);
        let mut xh = x.to_owned();
        let mut inv = Vec::with_capacity(x.nrows());
        for mut r in xh.rows_mut() {
            let mu = r.sum() / n;
            r.mapv_inplace(|v| v - mu);
            let var = r.iter().map(|&v| v * v).sum::<T>() / n;
            let is = T::one() / (var + T::c(self.eps)).sqrt();
            r.mapv_inplace(|v| v * is);
            inv.push(is);
        }
        (xh, inv)
    }
    /// `(I − 11ᵀ/n − x̂x̂ᵀ/n) u / s` for each row (the symmetric Jacobian of `x̂`).
    fn project<T: Real>(&self, xh: &Array2<T>, inv: &[T], mut u: Array2<T>) -> Array2<T> {
        let n = T::c(self.n as f64);
        for ((mut r, xr), &is) in u.rows_mut().into_iter().zip(xh.rows()).zip(inv) {
            let m = r.sum() / n;
            let d = r.dot(&xr) / n;
            Zip::from(&mut r)
                .and(&xr)
                .for_each(|a, &xv| *a = (*a - m - xv * d) * is);
        }
        u
    }
}

impl<T: Real> Differentiable<T> for LayerNorm {
    fn name(&self) -> String {
        format!("layer norm ({})", self.n)
    }
    fn in_dim(&self) -> usize {
        self.n
    }
    fn out_dim(&self) -> usize {
        self.n
    }
    fn num_params(&self) -> usize {
        2 * self.n
    }
    fn forward(&self, p: &[T], x: ArrayView2<'_, T>, _c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        super::check_params("LayerNorm", Differentiable::<T>::num_params(self), p)?;
        check_width("LayerNorm", x, self.n)?;
        let (mut xh, _) = self.normalize(x);
        let (gamma, beta) = p.split_at(self.n);
        for mut r in xh.rows_mut() {
            for ((a, &gm), &bt) in r.iter_mut().zip(gamma).zip(beta) {
                *a = *a * gm + bt;
            }
        }
        Ok(xh)
    }
    fn vjp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        super::check_params("LayerNorm", Differentiable::<T>::num_params(self), p)?;
        super::check_params("LayerNorm", Differentiable::<T>::num_params(self), gp)?;
        let (xh, inv) = self.normalize(x);
        let (ggam, gbeta) = gp.split_at_mut(self.n);
        for (gr, xr) in g.rows().into_iter().zip(xh.rows()) {
            for j in 0..self.n {
                ggam[j] += gr[j] * xr[j];
                gbeta[j] += gr[j];
            }
        }
        let gamma = ndarray::ArrayView1::from(&p[..self.n]);
        let gh = &g * &gamma;
        Ok(self.project(&xh, &inv, gh))
    }
    fn jvp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        super::check_params("LayerNorm", Differentiable::<T>::num_params(self), p)?;
        let (xh, inv) = self.normalize(x);
        let gamma = ndarray::ArrayView1::from(&p[..self.n]);
        Ok(&self.project(&xh, &inv, v.to_owned()) * &gamma)
    }
}

impl<T: Real> Layer<T> for LayerNorm {
    fn init_params(&self, _rng: &mut StdRng) -> Vec<T> {
        let mut p = vec![T::one(); self.n];
        p.extend(vec![T::zero(); self.n]);
        p
    }
    fn param_groups(&self) -> Vec<ParamGroupSpec> {
        vec![
            ParamGroupSpec::new("gain", 0..self.n, false),
            ParamGroupSpec::new("shift", self.n..2 * self.n, false),
        ]
    }
}

/// Reshape between layouts of the same size: a row holds a sample's entries in row-major
/// order of its shape (channels, height, width for images), so flattening or reshaping is the
/// identity on the data and this block only checks and documents the shapes.
#[derive(Clone, Debug)]
pub struct Reshape {
    from: Vec<usize>,
    to: Vec<usize>,
}

impl Reshape {
    /// `Err` if the sizes differ.
    pub fn new(from: &[usize], to: &[usize]) -> Result<Self> {
        let (a, b) = (from.iter().product::<usize>(), to.iter().product::<usize>());
        if a != b {
            return Err(Error::shape(
                "Reshape",
                "target shape",
                format!("{a} entries (from {from:?})"),
                format!("{b} entries ({to:?})"),
            ));
        }
        Ok(Self {
            from: from.to_vec(),
            to: to.to_vec(),
        })
    }
    /// Flattens `shape` into one axis.
    pub fn flatten(shape: &[usize]) -> Self {
        Self {
            from: shape.to_vec(),
            to: vec![shape.iter().product()],
        }
    }
}

impl<T: Real> Differentiable<T> for Reshape {
    fn name(&self) -> String {
        format!("reshape {:?} → {:?}", self.from, self.to)
    }
    fn in_dim(&self) -> usize {
        self.from.iter().product()
    }
    fn out_dim(&self) -> usize {
        self.to.iter().product()
    }
    fn num_params(&self) -> usize {
        0
    }
    fn forward(&self, _p: &[T], x: ArrayView2<'_, T>, _c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        check_width("Reshape", x, Differentiable::<T>::in_dim(self))?;
        Ok(x.to_owned())
    }
    fn vjp(
        &self,
        _p: &[T],
        _x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        _gp: &mut [T],
    ) -> Result<Array2<T>> {
        Ok(g.to_owned())
    }
    fn jvp(
        &self,
        _p: &[T],
        _x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        Ok(v.to_owned())
    }
}

impl<T: Real> Layer<T> for Reshape {}

/// Skip connection `y = x + f(x; c)` around a block of equal input and output width.
pub struct Residual<T: Real> {
    inner: Box<dyn Layer<T>>,
}

impl<T: Real> Residual<T> {
    /// `Err` if `f` changes the width.
    pub fn new(inner: Box<dyn Layer<T>>) -> Result<Self> {
        if inner.in_dim() != inner.out_dim() {
            return Err(Error::shape(
                "Residual",
                "inner block output width",
                inner.in_dim().to_string(),
                inner.out_dim().to_string(),
            ));
        }
        Ok(Self { inner })
    }
}

impl<T: Real> Differentiable<T> for Residual<T> {
    fn name(&self) -> String {
        format!("x + {}", self.inner.name())
    }
    fn in_dim(&self) -> usize {
        self.inner.in_dim()
    }
    fn out_dim(&self) -> usize {
        self.inner.in_dim()
    }
    fn ctx_dim(&self) -> usize {
        self.inner.ctx_dim()
    }
    fn num_params(&self) -> usize {
        self.inner.num_params()
    }
    fn forward(&self, p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        Ok(&self.inner.forward(p, x, c)? + &x)
    }
    fn vjp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        Ok(&self.inner.vjp(p, x, c, g, gp)? + &g)
    }
    fn vjp_ctx(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        self.inner.vjp_ctx(p, x, c, g)
    }
    fn jvp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        Ok(&self.inner.jvp(p, x, c, v)? + &v)
    }
}

impl<T: Real> Layer<T> for Residual<T> {
    fn init_params(&self, rng: &mut StdRng) -> Vec<T> {
        self.inner.init_params(rng)
    }
    fn param_groups(&self) -> Vec<ParamGroupSpec> {
        self.inner.param_groups()
    }
}

/// Row sums `Σ_rows g` (a helper for bias gradients).
pub(crate) fn add_row_sums<T: Real>(acc: &mut [T], g: ArrayView2<'_, T>) {
    for r in g.rows() {
        match r.as_slice() {
            Some(rs) => acc.iter_mut().zip(rs).for_each(|(a, &v)| *a += v),
            None => acc.iter_mut().zip(r.iter()).for_each(|(a, &v)| *a += v),
        }
    }
}

/// Momentum extrapolation on a two-part state `[a, b]` (each of width `n`):
/// `[a, b] ↦ [a + β(a − b), a]` with a learned `β`. With `a = x_t`, `b = x_{t−1}` it is the
/// extrapolation of FISTA and heavy-ball methods (and, with `β = θ`, the over-relaxation of
/// Chambolle–Pock), so an accelerated method is `Extrapolate` followed by a step on the first
/// part ([`OnFirst`]). VJP: `ā = (1 + β)ḡ₁ + ḡ₂`, `b̄ = −βḡ₁`, `β̄ = Σ⟨ḡ₁, a − b⟩`.
#[derive(Clone, Debug)]
pub struct Extrapolate {
    n: usize,
}

impl Extrapolate {
    /// On two parts of width `n`.
    pub fn new(n: usize) -> Self {
        Self { n }
    }
    fn parts<'a, T: Real>(&self, s: ArrayView2<'a, T>) -> (ArrayView2<'a, T>, ArrayView2<'a, T>) {
        s.split_at(ndarray::Axis(1), self.n)
    }
    fn map<T: Real>(&self, beta: T, s: ArrayView2<'_, T>) -> Array2<T> {
        let (a, b) = self.parts(s);
        let mut out = Array2::zeros(s.raw_dim());
        {
            let (mut o1, mut o2) = out.view_mut().split_at(ndarray::Axis(1), self.n);
            Zip::from(&mut o1)
                .and(&a)
                .and(&b)
                .for_each(|o, &av, &bv| *o = av + beta * (av - bv));
            o2.assign(&a);
        }
        out
    }
}

impl<T: Real> Differentiable<T> for Extrapolate {
    fn name(&self) -> String {
        "[a, b] ↦ [a + β(a − b), a]".into()
    }
    fn in_dim(&self) -> usize {
        2 * self.n
    }
    fn out_dim(&self) -> usize {
        2 * self.n
    }
    fn num_params(&self) -> usize {
        1
    }
    fn forward(&self, p: &[T], s: ArrayView2<'_, T>, _c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        super::check_params("Extrapolate", Differentiable::<T>::num_params(self), p)?;
        check_width("Extrapolate", s, 2 * self.n)?;
        Ok(self.map(p[0], s))
    }
    fn vjp(
        &self,
        p: &[T],
        s: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        super::check_params("Extrapolate", Differentiable::<T>::num_params(self), p)?;
        super::check_params("Extrapolate", Differentiable::<T>::num_params(self), gp)?;
        let beta = p[0];
        let (a, b) = self.parts(s);
        let (g1, g2) = g.split_at(ndarray::Axis(1), self.n);
        let mut gb = T::zero();
        Zip::from(&g1)
            .and(&a)
            .and(&b)
            .for_each(|&gv, &av, &bv| gb += gv * (av - bv));
        gp[0] += gb;
        let mut out = Array2::zeros(s.raw_dim());
        {
            let (mut oa, mut ob) = out.view_mut().split_at(ndarray::Axis(1), self.n);
            Zip::from(&mut oa)
                .and(&g1)
                .and(&g2)
                .for_each(|o, &x1, &x2| *o = (T::one() + beta) * x1 + x2);
            Zip::from(&mut ob)
                .and(&g1)
                .for_each(|o, &x1| *o = -beta * x1);
        }
        Ok(out)
    }
    fn jvp(
        &self,
        p: &[T],
        _s: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        super::check_params("Extrapolate", Differentiable::<T>::num_params(self), p)?;
        Ok(self.map(p[0], v))
    }
}

impl<T: Real> Layer<T> for Extrapolate {}

/// Applies a block to the first part of a two-part state and passes the rest through:
/// `[a, b] ↦ [f(a; c), b]` (the block reads the context; its parameters are this block's).
pub struct OnFirst<T: Real> {
    inner: Box<dyn Differentiable<T>>,
    rest: usize,
}

impl<T: Real> OnFirst<T> {
    /// `f` on the first `f.in_dim()` entries, `rest` entries passed through.
    pub fn new(inner: Box<dyn Differentiable<T>>, rest: usize) -> Self {
        Self { inner, rest }
    }
    fn split<'a>(&self, s: ArrayView2<'a, T>) -> (ArrayView2<'a, T>, ArrayView2<'a, T>) {
        s.split_at(ndarray::Axis(1), self.inner.in_dim())
    }
    fn join(&self, first: Array2<T>, rest: ArrayView2<'_, T>) -> Array2<T> {
        ndarray::concatenate![ndarray::Axis(1), first, rest]
    }
}

impl<T: Real> Differentiable<T> for OnFirst<T> {
    fn name(&self) -> String {
        format!("[{}, ·]", self.inner.name())
    }
    fn in_dim(&self) -> usize {
        self.inner.in_dim() + self.rest
    }
    fn out_dim(&self) -> usize {
        self.inner.out_dim() + self.rest
    }
    fn ctx_dim(&self) -> usize {
        self.inner.ctx_dim()
    }
    fn num_params(&self) -> usize {
        self.inner.num_params()
    }
    fn forward(&self, p: &[T], s: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        check_width("OnFirst", s, Differentiable::<T>::in_dim(self))?;
        let (a, b) = self.split(s);
        Ok(self.join(self.inner.forward(p, a, c)?, b))
    }
    fn vjp(
        &self,
        p: &[T],
        s: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        let (a, _) = self.split(s);
        let (g1, g2) = g.split_at(ndarray::Axis(1), self.inner.out_dim());
        Ok(self.join(self.inner.vjp(p, a, c, g1, gp)?, g2))
    }
    fn vjp_ctx(
        &self,
        p: &[T],
        s: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        let (a, _) = self.split(s);
        let (g1, _) = g.split_at(ndarray::Axis(1), self.inner.out_dim());
        self.inner.vjp_ctx(p, a, c, g1)
    }
    fn jvp(
        &self,
        p: &[T],
        s: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        let (a, _) = self.split(s);
        let (v1, v2) = self.split(v);
        Ok(self.join(self.inner.jvp(p, a, c, v1)?, v2))
    }
}

impl<T: Real> Layer<T> for OnFirst<T> {}
