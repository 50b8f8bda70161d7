//! Data fits (the lower level's `f`, or a validation fit as the upper level) and upper losses.

use super::operators::{Identity, Linear, PartOperator};
use super::parts::Bound;
use hyperprox_core::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayView1, ArrayViewMut1};
use std::sync::Arc;

/// `max |d³/dt³ log(1 + e^t)| = max σ(1−σ)(1−2σ) = 1/(6√3)`.
fn logistic_c3() -> f64 {
    1.0 / (6.0 * 3f64.sqrt())
}

#[derive(Clone, Debug)]
enum FitKind {
    LeastSquares { weights: Option<Vec<f64>> },
    Logistic,
}

/// A data fit of `N` samples through one fixed operator `A: ℝⁿ → ℝᵐ`:
/// * least squares `fᵢ(x) = ½ Σ_k w_k ((Ax)_k − yᵢ,k)²` (`w = 1` unless weighted): `μ ≥
///   σ_min(A)²·min w` (the identity's `σ_min` is 1; otherwise 0 is assumed), `L ≤ ‖A‖²·max w`,
///   and its Hessian is constant;
/// * logistic `f(x) = Σ_k log(1 + exp(−y_k (Ax)_k))` with labels `±1` (one sample: `x` is the
///   weight vector): `L ≤ ‖A‖²/4`, `μ = 0`, Hessian-Lipschitz `≤ ‖A‖²·κ/(6√3)` with `κ` the
///   largest row norm bound of `A`.
#[derive(Clone)]
pub struct DataFit {
    kind: FitKind,
    op: Arc<dyn PartOperator>,
    obs: Vec<f64>,
    n_samples: usize,
}

impl DataFit {
    /// `fᵢ(x) = ½‖Ax − yᵢ‖²` for every observation `yᵢ` (length `m`, finite).
    pub fn least_squares(
        op: impl PartOperator + 'static,
        observations: &[Array1<f64>],
    ) -> Result<Self> {
        Self::build(
            FitKind::LeastSquares { weights: None },
            Arc::new(op),
            observations,
        )
    }

    /// `fᵢ(x) = ½ Σ_k w_k ((Ax)_k − yᵢ,k)²` with weights `w_k ≥ 0` (finite, length `m`).
    pub fn weighted_least_squares(
        op: impl PartOperator + 'static,
        observations: &[Array1<f64>],
        weights: Array1<f64>,
    ) -> Result<Self> {
        let m = op.shape().0;
        hyperprox_core::linalg::check_len("weighted least squares", "weights", m, weights.len())?;
        if let Some(v) = weights.iter().find(|v| !(**v >= 0.0 && v.is_finite())) {
            return Err(Error::param("weights", v, "must be finite and ≥ 0"));
        }
        let kind = FitKind::LeastSquares {
            weights: Some(weights.to_vec()),
        };
        Self::build(kind, Arc::new(op), observations)
    }

    /// Denoising: `fᵢ(x) = ½‖x − yᵢ‖²` for the noisy images `yᵢ` (row-major, one size).
    pub fn denoising(noisy: &[Array2<f64>]) -> Result<Self> {
        let n = noisy.first().map_or(0, |y| y.len());
        let obs: Vec<Array1<f64>> = noisy.iter().map(|y| y.iter().copied().collect()).collect();
        Self::least_squares(Identity(n), &obs)
    }

    /// Logistic regression on `features` (`m × n`) with labels `±1`: one sample, the weights.
    pub fn logistic(features: Array2<f64>, labels: &[f64]) -> Result<Self> {
        if let Some(v) = labels.iter().find(|v| **v != 1.0 && **v != -1.0) {
            return Err(Error::param(
                "labels",
                v,
                "logistic labels must be +1 or −1",
            ));
        }
        let y = Array1::from(labels.to_vec());
        Self::build(FitKind::Logistic, Arc::new(Linear::dense(features)?), &[y])
    }

    fn build(
        kind: FitKind,
        op: Arc<dyn PartOperator>,
        observations: &[Array1<f64>],
    ) -> Result<Self> {
        if op.n_params() != 0 {
            return Err(Error::param(
                "data operator",
                op.name(),
                "the data term's operator has no learnable parameters; put learned operators in a regularizer",
            ));
        }
        if observations.is_empty() {
            return Err(Error::param(
                "observations",
                0,
                "pass at least one observation (one per sample)",
            ));
        }
        let m = op.shape().0;
        let mut obs = Vec::with_capacity(m * observations.len());
        for (i, y) in observations.iter().enumerate() {
            hyperprox_core::linalg::check_len(
                &format!("data fit through {}", op.name()),
                &format!("observation {i}"),
                m,
                y.len(),
            )?;
            hyperprox_core::linalg::check_finite(&format!("observation {i}"), y.view())?;
            obs.extend(y.iter());
        }
        Ok(Self {
            kind,
            op,
            obs,
            n_samples: observations.len(),
        })
    }

    /// The number of samples `N`.
    pub fn samples(&self) -> usize {
        self.n_samples
    }

    /// The dimension `n` of one sample.
    pub fn dim(&self) -> usize {
        self.op.shape().1
    }

    /// The observations of sample `i`.
    pub fn observation(&self, i: usize) -> &[f64] {
        let m = self.op.shape().0;
        &self.obs[i * m..(i + 1) * m]
    }

    fn weight(&self, k: usize) -> f64 {
        match &self.kind {
            FitKind::LeastSquares { weights: Some(w) } => w[k],
            _ => 1.0,
        }
    }

    /// `fᵢ(x)`.
    pub fn value(&self, i: usize, x: &[f64]) -> f64 {
        let y = self.observation(i);
        let mut ax = vec![0.0; y.len()];
        self.op.apply(&[], x, &mut ax);
        match self.kind {
            FitKind::LeastSquares { .. } => {
                let mut s = 0.0;
                for (k, (a, b)) in ax.iter().zip(y).enumerate() {
                    s += self.weight(k) * (a - b) * (a - b);
                }
                0.5 * s
            }
            FitKind::Logistic => ax.iter().zip(y).map(|(a, l)| softplus(-l * a)).sum(),
        }
    }

    /// `out += s·∇fᵢ(x)`.
    pub fn grad_add(&self, i: usize, x: &[f64], s: f64, out: &mut [f64]) {
        let y = self.observation(i);
        let mut r = vec![0.0; y.len()];
        self.op.apply(&[], x, &mut r);
        for (k, (a, b)) in r.iter_mut().zip(y).enumerate() {
            *a = match self.kind {
                FitKind::LeastSquares { .. } => self.weight(k) * (*a - b),
                FitKind::Logistic => -b * sigmoid(-b * *a),
            };
        }
        self.op.adjoint_add(&[], &r, s, out);
    }

    /// `out += s·∇²fᵢ(x) v`.
    pub fn hvp_add(&self, i: usize, x: &[f64], v: &[f64], s: f64, out: &mut [f64]) {
        let m = self.op.shape().0;
        let mut av = vec![0.0; m];
        self.op.apply(&[], v, &mut av);
        match self.kind {
            FitKind::LeastSquares { .. } => {
                for (k, a) in av.iter_mut().enumerate() {
                    *a *= self.weight(k);
                }
            }
            FitKind::Logistic => {
                let y = self.observation(i);
                let mut ax = vec![0.0; m];
                self.op.apply(&[], x, &mut ax);
                for ((a, z), l) in av.iter_mut().zip(&ax).zip(y) {
                    let sg = sigmoid(-l * z);
                    *a *= sg * (1.0 - sg);
                }
            }
        }
        self.op.adjoint_add(&[], &av, s, out);
    }

    /// A strong-convexity modulus of every `fᵢ`.
    pub fn mu(&self) -> f64 {
        match &self.kind {
            FitKind::LeastSquares { weights } => {
                let wmin = weights
                    .as_ref()
                    .map_or(1.0, |w| w.iter().copied().fold(f64::INFINITY, f64::min));
                self.op.min_singular().powi(2) * wmin
            }
            FitKind::Logistic => 0.0,
        }
    }

    /// `L_f ≥ ‖∇²fᵢ‖`.
    pub fn lipschitz(&self) -> Bound {
        let n2 = self.op.norm(&[]).times(self.op.norm(&[]));
        match &self.kind {
            FitKind::LeastSquares { weights } => n2.scaled(
                weights
                    .as_ref()
                    .map_or(1.0, |w| w.iter().copied().fold(0.0, f64::max)),
            ),
            FitKind::Logistic => n2.scaled(0.25),
        }
    }

    /// The Lipschitz constant of `x ↦ ∇²fᵢ(x)`.
    pub fn hessian_lipschitz(&self) -> Bound {
        match self.kind {
            FitKind::LeastSquares { .. } => Bound::proven(0.0),
            FitKind::Logistic => {
                let k = self.op.norm(&[]);
                let kappa = self.op.group_norm(&[], super::parts::Grouping::Scalar);
                k.times(k).times(kappa).scaled(logistic_c3())
            }
        }
    }
}

fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

fn softplus(t: f64) -> f64 {
    t.max(0.0) + (-t.abs()).exp().ln_1p()
}

/// A user's upper level: `x ↦ (g(x), ∇g(x))` written into the second argument.
pub type UpperClosure =
    dyn Fn(ArrayView1<'_, f64>, ArrayViewMut1<'_, f64>) -> Result<f64> + Send + Sync;

#[derive(Clone)]
enum UpperKind {
    SquaredError {
        target: Vec<f64>,
    },
    Fit(DataFit),
    Closure {
        f: Arc<UpperClosure>,
        l_g: Bound,
        convex: bool,
    },
}

/// The upper level `g(x)` of a composed problem, over the `N` stacked samples:
/// * [`UpperLoss::squared_error`]: `(1/N) Σᵢ ½‖xᵢ − cᵢ‖²` (the MAID paper's, `L_g = 1/N`);
/// * [`UpperLoss::mean_squared_error`]: `½·MSE = (1/(N·n)) Σᵢ ½‖xᵢ − cᵢ‖²`, PSNR-equivalent:
///   `PSNR = 10 log₁₀(peak²/(2g))` is a decreasing function of `g`;
/// * [`UpperLoss::validation`]: `(1/N) Σᵢ fᵢ(xᵢ)` for a held-out [`DataFit`] (validation
///   measurements, or a logistic loss on validation samples), `L_g = L_f/N`;
/// * [`UpperLoss::closure`]: a user's `g` with its gradient, `L_g` and convexity.
#[derive(Clone)]
pub struct UpperLoss {
    kind: UpperKind,
    scale: f64,
}

impl UpperLoss {
    /// `(1/N) Σᵢ ½‖xᵢ − cᵢ‖²` against clean images (or vectors, row-major).
    pub fn squared_error(clean: &[Array2<f64>]) -> Self {
        let target: Vec<f64> = clean.iter().flat_map(|c| c.iter().copied()).collect();
        Self {
            kind: UpperKind::SquaredError { target },
            scale: 1.0 / clean.len().max(1) as f64,
        }
    }

    /// `½·MSE` against clean images: `(1/(N·n)) Σᵢ ½‖xᵢ − cᵢ‖²`.
    pub fn mean_squared_error(clean: &[Array2<f64>]) -> Self {
        let total: usize = clean.iter().map(|c| c.len()).sum();
        let mut u = Self::squared_error(clean);
        u.scale = 1.0 / total.max(1) as f64;
        u
    }

    /// `(1/N) Σᵢ fᵢ(xᵢ)` for a validation data fit.
    pub fn validation(fit: DataFit) -> Self {
        let scale = 1.0 / fit.samples() as f64;
        Self {
            kind: UpperKind::Fit(fit),
            scale,
        }
    }

    /// A user's `g`: `f(x, out)` returns `g(x)` and writes `∇g(x)` into `out`; `l_g` bounds the
    /// Lipschitz constant of `∇g`, `convex` states convexity (answer `false` when unsure).
    pub fn closure(
        f: impl Fn(ArrayView1<'_, f64>, ArrayViewMut1<'_, f64>) -> Result<f64> + Send + Sync + 'static,
        l_g: Bound,
        convex: bool,
    ) -> Self {
        Self {
            kind: UpperKind::Closure {
                f: Arc::new(f),
                l_g,
                convex,
            },
            scale: 1.0,
        }
    }

    /// `Err` unless the loss fits `n_samples` samples of dimension `n`.
    pub(crate) fn check(&self, n_samples: usize, n: usize) -> Result<()> {
        match &self.kind {
            UpperKind::SquaredError { target } => {
                hyperprox_core::linalg::check_len(
                    "squared-error upper level",
                    "clean data",
                    n_samples * n,
                    target.len(),
                )?;
                hyperprox_core::linalg::check_finite("clean data", ArrayView1::from(&target[..]))
            }
            UpperKind::Fit(fit) => {
                if fit.samples() != n_samples || fit.dim() != n {
                    return Err(Error::shape(
                        "validation upper level",
                        "samples × dimension",
                        format!("{n_samples} × {n}"),
                        format!("{} × {}", fit.samples(), fit.dim()),
                    ));
                }
                Ok(())
            }
            UpperKind::Closure { l_g, .. } => {
                if l_g.value >= 0.0 && l_g.value.is_finite() {
                    Ok(())
                } else {
                    Err(Error::param("L_g", l_g.value, "must be finite and ≥ 0"))
                }
            }
        }
    }

    /// Multiplies the loss by `factor` (a shard's `N_here/N_total`, see
    /// [`super::ComposedProblem::with_normalization`]). `Err` for a user's closure, which
    /// defines `g` on all samples at once and cannot be split.
    pub fn rescale(&mut self, factor: f64) -> Result<()> {
        if let UpperKind::Closure { .. } = self.kind {
            return Err(Error::unsupported(
                "splitting over ranks",
                "a closure upper loss (it sees all samples at once)",
            ));
        }
        self.scale *= factor;
        Ok(())
    }

    /// `g(x)`.
    pub fn value(&self, x: ArrayView1<'_, f64>, n: usize) -> Result<f64> {
        match &self.kind {
            UpperKind::SquaredError { target } => Ok(0.5
                * self.scale
                * x.iter()
                    .zip(target)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()),
            UpperKind::Fit(fit) => {
                let xc = x.as_standard_layout();
                let xs = crate::data::slice(&xc)?;
                let total: f64 = xs
                    .chunks(n)
                    .enumerate()
                    .map(|(i, xi)| fit.value(i, xi))
                    .sum();
                Ok(self.scale * total)
            }
            UpperKind::Closure { f, .. } => {
                let mut g = Array1::zeros(x.len());
                f(x, g.view_mut())
            }
        }
    }

    /// `out ← ∇g(x)`.
    pub fn grad_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        n: usize,
    ) -> Result<()> {
        match &self.kind {
            UpperKind::SquaredError { target } => {
                for ((o, a), b) in out.iter_mut().zip(x).zip(target) {
                    *o = (a - b) * self.scale;
                }
                Ok(())
            }
            UpperKind::Fit(fit) => {
                let xc = x.as_standard_layout();
                let xs = crate::data::slice(&xc)?;
                crate::data::fill(out, |os| {
                    os.fill(0.0);
                    for (i, (o, xi)) in os.chunks_mut(n).zip(xs.chunks(n)).enumerate() {
                        fit.grad_add(i, xi, self.scale, o);
                    }
                });
                Ok(())
            }
            UpperKind::Closure { f, .. } => f(x, out).map(|_| ()),
        }
    }

    /// `L_g`.
    pub fn l_g(&self) -> Bound {
        match &self.kind {
            UpperKind::SquaredError { .. } => Bound::proven(self.scale),
            UpperKind::Fit(fit) => fit.lipschitz().scaled(self.scale),
            UpperKind::Closure { l_g, .. } => *l_g,
        }
    }

    /// Whether `g` is convex.
    pub fn convex(&self) -> bool {
        match &self.kind {
            UpperKind::Closure { convex, .. } => *convex,
            _ => true,
        }
    }
}
