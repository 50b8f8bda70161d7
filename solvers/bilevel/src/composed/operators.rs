//! The linear operators `K(p)` of a composed lower level (one sample at a time), possibly with
//! learnable parameters `p` (filter taps), with the bounds the constants need.

use super::parts::{Bound, Grouping};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::ops::{LinearOperator, ValidCorrelation2d};
use ndarray::{Array2, ArrayView1, ArrayViewMut1};

/// A linear map `K(p): ℝⁿ → ℝᵐ` on one sample, with its adjoint, the gradient of `⟨K(p)x, y⟩`
/// in `p`, and bounds on its norm.
pub trait PartOperator: Send + Sync {
    /// A short name for reports.
    fn name(&self) -> String;
    /// `(m, n)`.
    fn shape(&self) -> (usize, usize);
    /// The number of learnable parameters.
    fn n_params(&self) -> usize {
        0
    }
    /// Their starting values.
    fn initial_params(&self) -> Vec<f64> {
        Vec::new()
    }
    /// `out ← K(p)x`.
    fn apply(&self, p: &[f64], x: &[f64], out: &mut [f64]);
    /// `out += s·K(p)ᵀy`.
    fn adjoint_add(&self, p: &[f64], y: &[f64], s: f64, out: &mut [f64]);
    /// `out += s·∇_p⟨K(p)x, y⟩` (length `n_params`).
    fn param_vjp_add(&self, _p: &[f64], _x: &[f64], _y: &[f64], _s: f64, _out: &mut [f64]) {}
    /// `‖K(p)‖ ≤` this.
    fn norm(&self, p: &[f64]) -> Bound;
    /// `max_g ‖K_g‖` over the row groups `g` of `grouping` (the rows that one entry, or one
    /// pair, of `Kx` reads): at most `‖K‖`, which is the default.
    fn group_norm(&self, p: &[f64], _grouping: Grouping) -> Bound {
        self.norm(p)
    }
    /// A lower bound on the smallest singular value (0 unless known: the identity's is 1).
    fn min_singular(&self) -> f64 {
        0.0
    }
}

/// The identity on ℝⁿ.
#[derive(Clone, Copy, Debug)]
pub struct Identity(pub usize);

impl PartOperator for Identity {
    fn name(&self) -> String {
        "identity".into()
    }
    fn shape(&self) -> (usize, usize) {
        (self.0, self.0)
    }
    fn apply(&self, _p: &[f64], x: &[f64], out: &mut [f64]) {
        out.copy_from_slice(x);
    }
    fn adjoint_add(&self, _p: &[f64], y: &[f64], s: f64, out: &mut [f64]) {
        out.iter_mut().zip(y).for_each(|(o, v)| *o += s * v);
    }
    fn norm(&self, _p: &[f64]) -> Bound {
        Bound::proven(1.0)
    }
    fn min_singular(&self) -> f64 {
        1.0
    }
}

/// Which image differences [`Differences2d`] takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffBoundary {
    /// Only differences between two pixels of the image: `h(w−1)` horizontal then `(h−1)w`
    /// vertical ones (the MAID paper's anisotropic TV).
    Interior,
    /// Forward differences with the Neumann boundary (`h·w` each, 0 on the last column/row):
    /// the layout of the core `Gradient2d`, for isotropic TV.
    Neumann,
}

/// Forward differences of a row-major `h × w` image. `‖D‖² ≤ 8` (`DᵀD` is a graph Laplacian
/// of maximum degree 4); each difference reads two pixels (`κ = √2` per entry), and a Neumann
/// pair `((D_h x)_p, (D_v x)_p)` reads three pixels through `[[−1, 1, 0], [−1, 0, 1]]`, of
/// norm `√3`.
#[derive(Clone, Copy, Debug)]
pub struct Differences2d {
    h: usize,
    w: usize,
    boundary: DiffBoundary,
}

impl Differences2d {
    /// Differences on an `h × w` grid (both sides `≥ 2`).
    pub fn new(h: usize, w: usize, boundary: DiffBoundary) -> Result<Self> {
        if h < 2 || w < 2 {
            return Err(Error::param(
                "grid",
                format!("{h}×{w}"),
                "differences need images of at least 2×2",
            ));
        }
        Ok(Self { h, w, boundary })
    }
    /// The number of horizontal differences (the first block of the output).
    fn n_h(&self) -> usize {
        match self.boundary {
            DiffBoundary::Interior => self.h * (self.w - 1),
            DiffBoundary::Neumann => self.h * self.w,
        }
    }
    /// The row stride of the horizontal block.
    fn hs(&self) -> usize {
        match self.boundary {
            DiffBoundary::Interior => self.w - 1,
            DiffBoundary::Neumann => self.w,
        }
    }
}

impl PartOperator for Differences2d {
    fn name(&self) -> String {
        format!("differences({:?})", self.boundary).to_lowercase()
    }
    fn shape(&self) -> (usize, usize) {
        let m = match self.boundary {
            DiffBoundary::Interior => self.h * (self.w - 1) + (self.h - 1) * self.w,
            DiffBoundary::Neumann => 2 * self.h * self.w,
        };
        (m, self.h * self.w)
    }
    fn apply(&self, _p: &[f64], x: &[f64], out: &mut [f64]) {
        let (h, w, hs) = (self.h, self.w, self.hs());
        let (dh, dv) = out.split_at_mut(self.n_h());
        for i in 0..h {
            let row = &x[i * w..(i + 1) * w];
            let o = &mut dh[i * hs..(i + 1) * hs];
            for j in 0..w - 1 {
                o[j] = row[j + 1] - row[j];
            }
            if hs == w {
                o[w - 1] = 0.0;
            }
        }
        for i in 0..h - 1 {
            let (row, next) = (&x[i * w..(i + 1) * w], &x[(i + 1) * w..(i + 2) * w]);
            let o = &mut dv[i * w..(i + 1) * w];
            for j in 0..w {
                o[j] = next[j] - row[j];
            }
        }
        if self.boundary == DiffBoundary::Neumann {
            dv[(h - 1) * w..].fill(0.0);
        }
    }
    fn adjoint_add(&self, _p: &[f64], y: &[f64], s: f64, out: &mut [f64]) {
        let (h, w, hs) = (self.h, self.w, self.hs());
        let (dh, dv) = y.split_at(self.n_h());
        for i in 0..h {
            let g = &dh[i * hs..(i + 1) * hs];
            let o = &mut out[i * w..(i + 1) * w];
            for j in 0..w - 1 {
                let v = s * g[j];
                o[j + 1] += v;
                o[j] -= v;
            }
        }
        for i in 0..h - 1 {
            let g = &dv[i * w..(i + 1) * w];
            for j in 0..w {
                let v = s * g[j];
                out[(i + 1) * w + j] += v;
                out[i * w + j] -= v;
            }
        }
    }
    fn norm(&self, _p: &[f64]) -> Bound {
        Bound::proven(8f64.sqrt())
    }
    fn group_norm(&self, _p: &[f64], grouping: Grouping) -> Bound {
        match (grouping, self.boundary) {
            (Grouping::Pairs, DiffBoundary::Neumann) => Bound::proven(3f64.sqrt()),
            (Grouping::Pairs, DiffBoundary::Interior) => self.norm(&[]),
            (Grouping::Scalar, _) => Bound::proven(2f64.sqrt()),
        }
    }
}

/// The valid correlation `u = k ⋆ x` (no padding) with a learned or fixed `ks × ks` kernel:
/// `‖K‖ ≤ ‖k‖₁` (Young), and each output reads `ks²` pixels with the taps, so `κ = ‖k‖₂`.
/// The learned taps are the parameters; `∇_k⟨k ⋆ x, y⟩` is the core's
/// [`ValidCorrelation2d::kernel_gradient_add`].
#[derive(Clone, Debug)]
pub struct Correlation {
    geom: ValidCorrelation2d<f64>,
    /// `Some(taps)`: fixed; `None`: learned from `init`.
    fixed: Option<Vec<f64>>,
    init: Vec<f64>,
    ks: usize,
}

impl Correlation {
    /// A learned `ks × ks` filter on `h × w` images, starting from `init` (row-major `ks²`).
    pub fn learned(h: usize, w: usize, init: Array2<f64>) -> Result<Self> {
        let ks = Self::check_square(&init)?;
        Ok(Self {
            geom: ValidCorrelation2d::new(h, w, Array2::zeros((ks, ks)))?,
            fixed: None,
            init: init.iter().copied().collect(),
            ks,
        })
    }
    /// A fixed square filter.
    pub fn fixed(h: usize, w: usize, kernel: Array2<f64>) -> Result<Self> {
        let ks = Self::check_square(&kernel)?;
        let taps: Vec<f64> = kernel.iter().copied().collect();
        Ok(Self {
            geom: ValidCorrelation2d::new(h, w, kernel)?,
            fixed: Some(taps),
            init: Vec::new(),
            ks,
        })
    }
    fn check_square(k: &Array2<f64>) -> Result<usize> {
        let (a, b) = k.dim();
        if a != b || a == 0 {
            return Err(Error::param(
                "filter",
                format!("{a}×{b}"),
                "pass a non-empty square filter",
            ));
        }
        if k.iter().any(|v| !v.is_finite()) {
            return Err(Error::param(
                "filter",
                "non-finite taps",
                "pass finite taps",
            ));
        }
        Ok(a)
    }
    fn taps<'a>(&'a self, p: &'a [f64]) -> &'a [f64] {
        self.fixed.as_deref().unwrap_or(p)
    }
}

impl PartOperator for Correlation {
    fn name(&self) -> String {
        format!("correlation({0}×{0})", self.ks)
    }
    fn shape(&self) -> (usize, usize) {
        let (oh, ow) = self.geom.out_dims();
        let (m, n) = LinearOperator::<f64>::shape(&self.geom);
        debug_assert_eq!(m, oh * ow);
        (m, n)
    }
    fn n_params(&self) -> usize {
        if self.fixed.is_some() {
            0
        } else {
            self.ks * self.ks
        }
    }
    fn initial_params(&self) -> Vec<f64> {
        self.init.clone()
    }
    fn apply(&self, p: &[f64], x: &[f64], out: &mut [f64]) {
        self.geom.correlate(x, self.taps(p), out);
    }
    fn adjoint_add(&self, p: &[f64], y: &[f64], s: f64, out: &mut [f64]) {
        self.geom.adjoint_add(y, self.taps(p), s, out);
    }
    fn param_vjp_add(&self, _p: &[f64], x: &[f64], y: &[f64], s: f64, out: &mut [f64]) {
        if self.fixed.is_none() {
            self.geom.kernel_gradient_add(y, x, s, out);
        }
    }
    fn norm(&self, p: &[f64]) -> Bound {
        Bound::proven(self.taps(p).iter().map(|v| v.abs()).sum())
    }
    fn group_norm(&self, p: &[f64], grouping: Grouping) -> Bound {
        match grouping {
            Grouping::Scalar => {
                Bound::proven(self.taps(p).iter().map(|v| v * v).sum::<f64>().sqrt())
            }
            Grouping::Pairs => self.norm(p),
        }
    }
}

/// Any core linear operator (a blur, a mask, a dense matrix) with a stated norm bound.
#[derive(Clone)]
pub struct Linear {
    op: std::sync::Arc<dyn LinearOperator<f64>>,
    norm: Bound,
}

impl Linear {
    /// `op` with `‖op‖ ≤ norm` (proven or estimated).
    pub fn new(op: impl LinearOperator<f64> + 'static, norm: Bound) -> Result<Self> {
        if !(norm.value >= 0.0 && norm.value.is_finite()) {
            return Err(Error::param(
                "operator norm",
                norm.value,
                "must be finite and ≥ 0",
            ));
        }
        Ok(Self {
            op: std::sync::Arc::new(op),
            norm,
        })
    }

    /// A dense matrix, with the proven bound `‖A‖ ≤ min(‖A‖_F, √(‖A‖₁‖A‖_∞))`.
    pub fn dense(a: Array2<f64>) -> Result<Self> {
        let fro = a.iter().map(|v| v * v).sum::<f64>().sqrt();
        let n1 = a
            .columns()
            .into_iter()
            .map(|c| c.iter().map(|v| v.abs()).sum::<f64>())
            .fold(0.0, f64::max);
        let ninf = a
            .rows()
            .into_iter()
            .map(|r| r.iter().map(|v| v.abs()).sum::<f64>())
            .fold(0.0, f64::max);
        let bound = fro.min((n1 * ninf).sqrt());
        Self::new(
            hyperprox_core::ops::DenseMatrix::new(a)?,
            Bound::proven(bound),
        )
    }

    /// A "same"-size blur of `h × w` images with `kernel` and a boundary (the core `Conv2d`),
    /// with the proven bound `‖A‖ ≤ √(‖A‖₁‖A‖_∞)`: the entries of `A` are at most those of
    /// the blur with `|k|` in size, whose row and column sums are `|A|·1` and `|A|ᵀ·1`.
    pub fn blur(
        h: usize,
        w: usize,
        kernel: Array2<f64>,
        boundary: hyperprox_core::ops::Boundary,
    ) -> Result<Self> {
        use hyperprox_core::ops::{Conv2d, ConvMethod};
        let abs = Conv2d::new(h, w, kernel.mapv(f64::abs), boundary, ConvMethod::Auto)?;
        let ones = ndarray::Array1::<f64>::ones(h * w);
        let rows = abs.apply(ones.view())?.fold(0.0f64, |a, &b| a.max(b));
        let cols = abs.adjoint(ones.view())?.fold(0.0f64, |a, &b| a.max(b));
        let op = Conv2d::new(h, w, kernel, boundary, ConvMethod::Auto)?;
        Self::new(op, Bound::proven((rows * cols).sqrt() * (1.0 + 1e-12)))
    }

    /// A pixel mask (`true` = observed), `‖M‖ ≤ 1`.
    pub fn mask(keep: Vec<bool>) -> Result<Self> {
        Self::new(hyperprox_core::ops::Mask::new(keep), Bound::proven(1.0))
    }
}

impl PartOperator for Linear {
    fn name(&self) -> String {
        self.op.name()
    }
    fn shape(&self) -> (usize, usize) {
        self.op.shape()
    }
    fn apply(&self, _p: &[f64], x: &[f64], out: &mut [f64]) {
        self.op
            .apply_unchecked(ArrayViewMut1::from(out), ArrayView1::from(x));
    }
    fn adjoint_add(&self, _p: &[f64], y: &[f64], s: f64, out: &mut [f64]) {
        let mut t = vec![0.0; out.len()];
        self.op
            .adjoint_unchecked(ArrayViewMut1::from(&mut t[..]), ArrayView1::from(y));
        out.iter_mut().zip(t).for_each(|(o, v)| *o += s * v);
    }
    fn norm(&self, _p: &[f64]) -> Bound {
        self.norm
    }
}

/// A shared operator is an operator.
impl PartOperator for std::sync::Arc<dyn PartOperator> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn shape(&self) -> (usize, usize) {
        (**self).shape()
    }
    fn n_params(&self) -> usize {
        (**self).n_params()
    }
    fn initial_params(&self) -> Vec<f64> {
        (**self).initial_params()
    }
    fn apply(&self, p: &[f64], x: &[f64], out: &mut [f64]) {
        (**self).apply(p, x, out)
    }
    fn adjoint_add(&self, p: &[f64], y: &[f64], s: f64, out: &mut [f64]) {
        (**self).adjoint_add(p, y, s, out)
    }
    fn param_vjp_add(&self, p: &[f64], x: &[f64], y: &[f64], s: f64, out: &mut [f64]) {
        (**self).param_vjp_add(p, x, y, s, out)
    }
    fn norm(&self, p: &[f64]) -> Bound {
        (**self).norm(p)
    }
    fn group_norm(&self, p: &[f64], grouping: Grouping) -> Bound {
        (**self).group_norm(p, grouping)
    }
    fn min_singular(&self) -> f64 {
        (**self).min_singular()
    }
}
