//! 2-D convolution (im2col + GEMM) and pooling on images stored as rows in channel-major order.

use super::{check_width, Init, Layer, ParamGroupSpec};
use crate::diff::{Differentiable, Saved};
use crate::error::{Error, Result};
use crate::linalg::Real;
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// The shape of one image: channels, height, width (stored channel-major in a row).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl ImageShape {
    /// `(c, h, w)`.
    pub fn new(c: usize, h: usize, w: usize) -> Self {
        Self { c, h, w }
    }
    /// `c·h·w`.
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Whether the image has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Output size of a window of `k` with `stride` and `pad` over `n`, or `Err`.
fn out_size(who: &str, n: usize, k: usize, stride: usize, pad: usize) -> Result<usize> {
    if stride == 0 || k == 0 {
        return Err(Error::param(
            "kernel size and stride",
            format!("{k}, {stride}"),
            format!("{who}: both must be at least 1"),
        ));
    }
    if n + 2 * pad < k {
        return Err(Error::shape(
            who,
            "image side (with padding)",
            format!("at least the kernel size {k}"),
            (n + 2 * pad).to_string(),
        ));
    }
    Ok((n + 2 * pad - k) / stride + 1)
}

/// 2-D convolution (cross-correlation, as in deep-learning frameworks) with `c_out` filters of
/// size `c_in × k × k`, a stride and zero padding, and a bias per output channel.
///
/// The forward pass gathers the patches of the whole batch into one matrix `P`
/// (`B·H'W' × c_in k²`, *im2col*) and multiplies it by the filters `W` (`c_out × c_in k²`) in
/// one GEMM: `Y = P Wᵀ`. The VJP is two more GEMMs, `W̄ = Ḡᵀ P` and `P̄ = Ḡ W`, and the
/// scatter-add of `P̄` back onto the image (*col2im*); the JVP is `im2col(v) Wᵀ`.
/// Parameters: the filters (row-major `c_out × c_in × k × k`) then the biases (`c_out`).
#[derive(Clone, Debug)]
pub struct Conv2d {
    input: ImageShape,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
    init: Init,
    bias: bool,
}

impl Conv2d {
    /// `c_out` filters of size `k × k` over images of shape `input`. `Err` if the kernel does
    /// not fit or a size is zero.
    pub fn new(
        input: ImageShape,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        let oh = out_size("Conv2d", input.h, k, stride, pad)?;
        let ow = out_size("Conv2d", input.w, k, stride, pad)?;
        if c_out == 0 || input.is_empty() {
            return Err(Error::param(
                "channels",
                format!("{} → {c_out}", input.c),
                "Conv2d needs at least one input and one output channel",
            ));
        }
        Ok(Self {
            input,
            c_out,
            k,
            stride,
            pad,
            oh,
            ow,
            init: Init::TorchDefault,
            bias: true,
        })
    }
    /// Without the biases (the parameters are the filters only).
    pub fn without_bias(mut self) -> Self {
        self.bias = false;
        self
    }
    /// The linear part (the filters `w`, no bias) applied to a batch.
    pub fn apply<T: Real>(&self, w: &[T], x: ArrayView2<'_, T>) -> Array2<T> {
        let cols = self.im2col(x);
        let mut y = Array2::zeros((cols.nrows(), self.c_out));
        T::gemm(y.view_mut(), cols.view(), self.w(w).t(), T::one(), false);
        self.to_rows(&y, x.nrows(), None)
    }
    /// Its transpose (a transposed convolution).
    pub fn apply_t<T: Real>(&self, w: &[T], g: ArrayView2<'_, T>) -> Array2<T> {
        let gy = self.rows_to_pixels(g);
        let mut gcols = Array2::zeros((gy.nrows(), self.kk()));
        T::gemm(gcols.view_mut(), gy.view(), self.w(w), T::one(), false);
        self.col2im(&gcols, g.nrows())
    }
    /// `gw += ` the filter gradient for output cotangent `g` at input `x`.
    pub fn add_weight_grad<T: Real>(
        &self,
        gw: &mut [T],
        g: ArrayView2<'_, T>,
        x: ArrayView2<'_, T>,
    ) {
        let cols = self.im2col(x);
        let gy = self.rows_to_pixels(g);
        let nw = self.c_out * self.kk();
        let gw = ArrayViewMut2::from_shape((self.c_out, self.kk()), &mut gw[..nw]).expect("sized");
        T::gemm(gw, gy.t(), cols.view(), T::one(), true);
    }
    /// With another filter initialization.
    pub fn with_init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }
    /// The output image shape.
    pub fn output(&self) -> ImageShape {
        ImageShape::new(self.c_out, self.oh, self.ow)
    }
    fn kk(&self) -> usize {
        self.input.c * self.k * self.k
    }
    fn pix(&self) -> usize {
        self.oh * self.ow
    }
    fn w<'a, T: Real>(&self, p: &'a [T]) -> ArrayView2<'a, T> {
        ArrayView2::from_shape((self.c_out, self.kk()), &p[..self.c_out * self.kk()])
            .expect("sized")
    }
    /// Visits `(patch row, patch column, image index)` for every in-bounds tap.
    fn taps(&self, mut f: impl FnMut(usize, usize, usize)) {
        let ImageShape { c, h, w } = self.input;
        let (k, s, pad) = (self.k, self.stride, self.pad as isize);
        for oy in 0..self.oh {
            for ox in 0..self.ow {
                let row = oy * self.ow + ox;
                for ci in 0..c {
                    for ky in 0..k {
                        let iy = (oy * s + ky) as isize - pad;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..k {
                            let ix = (ox * s + kx) as isize - pad;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            f(
                                row,
                                (ci * k + ky) * k + kx,
                                (ci * h + iy as usize) * w + ix as usize,
                            );
                        }
                    }
                }
            }
        }
    }
    fn im2col<T: Real>(&self, x: ArrayView2<'_, T>) -> Array2<T> {
        let (pix, kk) = (self.pix(), self.kk());
        let mut cols = Array2::zeros((x.nrows() * pix, kk));
        let mut idx = Vec::new();
        self.taps(|r, k, i| idx.push((r, k, i)));
        for (b, xr) in x.rows().into_iter().enumerate() {
            let mut block = cols.slice_mut(ndarray::s![b * pix..(b + 1) * pix, ..]);
            for &(r, k, i) in &idx {
                block[(r, k)] = xr[i];
            }
        }
        cols
    }
    fn col2im<T: Real>(&self, cols: &Array2<T>, b: usize) -> Array2<T> {
        let pix = self.pix();
        let mut out = Array2::zeros((b, self.input.len()));
        let mut idx = Vec::new();
        self.taps(|r, k, i| idx.push((r, k, i)));
        for (bi, mut orow) in out.rows_mut().into_iter().enumerate() {
            let block = cols.slice(ndarray::s![bi * pix..(bi + 1) * pix, ..]);
            for &(r, k, i) in &idx {
                orow[i] += block[(r, k)];
            }
        }
        out
    }
    /// `(B·H'W' × c_out)` → rows `(c_out, H', W')`, plus the bias.
    fn to_rows<T: Real>(&self, y: &Array2<T>, b: usize, bias: Option<&[T]>) -> Array2<T> {
        let pix = self.pix();
        let mut out = Array2::zeros((b, self.c_out * pix));
        for (bi, mut orow) in out.rows_mut().into_iter().enumerate() {
            for p in 0..pix {
                let yr = y.row(bi * pix + p);
                for co in 0..self.c_out {
                    orow[co * pix + p] = yr[co] + bias.map_or(T::zero(), |bs| bs[co]);
                }
            }
        }
        out
    }
    /// Rows `(c_out, H', W')` → `(B·H'W' × c_out)`.
    fn rows_to_pixels<T: Real>(&self, g: ArrayView2<'_, T>) -> Array2<T> {
        let pix = self.pix();
        let mut out = Array2::zeros((g.nrows() * pix, self.c_out));
        for (bi, grow) in g.rows().into_iter().enumerate() {
            for p in 0..pix {
                let mut orow = out.row_mut(bi * pix + p);
                for co in 0..self.c_out {
                    orow[co] = grow[co * pix + p];
                }
            }
        }
        out
    }
    fn pull_back<T: Real>(
        &self,
        p: &[T],
        cols: &Array2<T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Array2<T> {
        let gy = self.rows_to_pixels(g);
        let nw = self.c_out * self.kk();
        let (gw, gb) = gp.split_at_mut(nw);
        let gw = ArrayViewMut2::from_shape((self.c_out, self.kk()), gw).expect("sized");
        T::gemm(gw, gy.t(), cols.view(), T::one(), true);
        if self.bias {
            super::layers::add_row_sums(gb, gy.view());
        }
        let mut gcols = Array2::zeros(cols.raw_dim());
        T::gemm(gcols.view_mut(), gy.view(), self.w(p), T::one(), false);
        self.col2im(&gcols, g.nrows())
    }
}

impl<T: Real> Differentiable<T> for Conv2d {
    fn name(&self) -> String {
        format!(
            "conv {}→{} {}×{} (stride {}, pad {})",
            self.input.c, self.c_out, self.k, self.k, self.stride, self.pad
        )
    }
    fn in_dim(&self) -> usize {
        self.input.len()
    }
    fn out_dim(&self) -> usize {
        self.c_out * self.pix()
    }
    fn num_params(&self) -> usize {
        self.c_out * (self.kk() + usize::from(self.bias))
    }
    fn forward(&self, p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        Ok(self.forward_save(p, x, c)?.0)
    }
    fn forward_save(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
    ) -> Result<(Array2<T>, Saved)> {
        check_width("Conv2d", x, self.input.len())?;
        let cols = self.im2col(x);
        let mut y = Array2::zeros((cols.nrows(), self.c_out));
        T::gemm(y.view_mut(), cols.view(), self.w(p).t(), T::one(), false);
        let bias = self.bias.then(|| &p[self.c_out * self.kk()..]);
        let out = self.to_rows(&y, x.nrows(), bias);
        Ok((out, Some(Box::new(cols))))
    }
    fn vjp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        let cols = self.im2col(x);
        Ok(self.pull_back(p, &cols, g, gp))
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
        match saved.as_ref().and_then(|s| s.downcast_ref::<Array2<T>>()) {
            Some(cols) => Ok(self.pull_back(p, cols, g, gp)),
            None => self.vjp(p, x, c, g, gp),
        }
    }
    fn jvp(
        &self,
        p: &[T],
        _x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        Ok(self.apply(p, v))
    }
}

impl<T: Real> Layer<T> for Conv2d {
    fn init_params(&self, rng: &mut StdRng) -> Vec<T> {
        let nw = self.c_out * self.kk();
        let fan_out = self.c_out * self.k * self.k;
        let mut p = self.init.sample(nw, self.kk(), fan_out, rng);
        if self.bias {
            p.extend(match self.init {
                Init::TorchDefault => Init::TorchDefault.sample(self.c_out, self.kk(), 0, rng),
                _ => vec![T::zero(); self.c_out],
            });
        }
        p
    }
    fn param_groups(&self) -> Vec<ParamGroupSpec> {
        let nw = self.c_out * self.kk();
        let mut v = vec![ParamGroupSpec::new("weight", 0..nw, true)];
        if self.bias {
            v.push(ParamGroupSpec::new("bias", nw..nw + self.c_out, false));
        }
        v
    }
}

/// Pooling kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolKind {
    /// Mean over the window.
    Average,
    /// Maximum over the window (the gradient goes to the first maximal entry).
    Max,
}

/// Average or max pooling over `k × k` windows with a stride, per channel (no padding).
#[derive(Clone, Debug)]
pub struct Pool2d {
    input: ImageShape,
    kind: PoolKind,
    k: usize,
    stride: usize,
    oh: usize,
    ow: usize,
}

impl Pool2d {
    /// `Err` if the window does not fit.
    pub fn new(input: ImageShape, kind: PoolKind, k: usize, stride: usize) -> Result<Self> {
        Ok(Self {
            input,
            kind,
            k,
            stride,
            oh: out_size("Pool2d", input.h, k, stride, 0)?,
            ow: out_size("Pool2d", input.w, k, stride, 0)?,
        })
    }
    /// The output image shape.
    pub fn output(&self) -> ImageShape {
        ImageShape::new(self.input.c, self.oh, self.ow)
    }
    /// Calls `f(output index, input index, weight)` for every entry that feeds an output:
    /// all window entries with weight `1/k²` (average), the first maximal one with weight 1
    /// (max, which reads `x`).
    fn route<T: Real>(&self, x: ndarray::ArrayView1<'_, T>, mut f: impl FnMut(usize, usize, T)) {
        let ImageShape { c, h, w } = self.input;
        let inv = T::one() / T::c((self.k * self.k) as f64);
        for ch in 0..c {
            for oy in 0..self.oh {
                for ox in 0..self.ow {
                    let o = (ch * self.oh + oy) * self.ow + ox;
                    let mut best: Option<(usize, T)> = None;
                    for ky in 0..self.k {
                        for kx in 0..self.k {
                            let i = (ch * h + oy * self.stride + ky) * w + ox * self.stride + kx;
                            match self.kind {
                                PoolKind::Average => f(o, i, inv),
                                PoolKind::Max => {
                                    if best.is_none_or(|(_, b)| x[i] > b) {
                                        best = Some((i, x[i]));
                                    }
                                }
                            }
                        }
                    }
                    if let Some((i, _)) = best {
                        f(o, i, T::one());
                    }
                }
            }
        }
    }
}

impl<T: Real> Differentiable<T> for Pool2d {
    fn name(&self) -> String {
        format!(
            "{:?} pool {}×{} (stride {})",
            self.kind, self.k, self.k, self.stride
        )
    }
    fn in_dim(&self) -> usize {
        self.input.len()
    }
    fn out_dim(&self) -> usize {
        self.output().len()
    }
    fn num_params(&self) -> usize {
        0
    }
    fn forward(&self, _p: &[T], x: ArrayView2<'_, T>, _c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        check_width("Pool2d", x, self.input.len())?;
        let mut out = Array2::zeros((x.nrows(), self.output().len()));
        for (mut orow, xr) in out.rows_mut().into_iter().zip(x.rows()) {
            self.route(xr, |o, i, wt| orow[o] += wt * xr[i]);
        }
        Ok(out)
    }
    fn vjp(
        &self,
        _p: &[T],
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        _gp: &mut [T],
    ) -> Result<Array2<T>> {
        let mut out = Array2::zeros((x.nrows(), self.input.len()));
        for ((mut orow, xr), gr) in out.rows_mut().into_iter().zip(x.rows()).zip(g.rows()) {
            self.route(xr, |o, i, wt| orow[i] += wt * gr[o]);
        }
        Ok(out)
    }
    fn jvp(
        &self,
        _p: &[T],
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        let mut out = Array2::zeros((x.nrows(), self.output().len()));
        for ((mut orow, xr), vr) in out.rows_mut().into_iter().zip(x.rows()).zip(v.rows()) {
            self.route(xr, |o, i, wt| orow[o] += wt * vr[i]);
        }
        Ok(out)
    }
}

impl<T: Real> Layer<T> for Pool2d {}
