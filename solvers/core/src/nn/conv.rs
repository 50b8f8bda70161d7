//! 2-D convolution (im2col + GEMM) and pooling on images stored as rows in channel-major order.

use super::gemm;
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
    /// `(patch row, patch column, image index)` of every in-bounds tap, computed once.
    idx: std::sync::Arc<Vec<(u32, u32, u32)>>,
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
        let mut conv = Self {
            input,
            c_out,
            k,
            stride,
            pad,
            oh,
            ow,
            init: Init::TorchDefault,
            bias: true,
            idx: Default::default(),
        };
        let mut idx = Vec::new();
        conv.taps(|r, k, i| idx.push((r as u32, k as u32, i as u32)));
        conv.idx = std::sync::Arc::new(idx);
        Ok(conv)
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
        gemm(y.view_mut(), cols.view(), self.w(w).t(), T::one(), false);
        self.to_rows(&y, x.nrows(), None)
    }
    /// Its transpose (a transposed convolution).
    pub fn apply_t<T: Real>(&self, w: &[T], g: ArrayView2<'_, T>) -> Array2<T> {
        let gy = self.rows_to_pixels(g);
        let mut gcols = Array2::zeros((gy.nrows(), self.kk()));
        gemm(gcols.view_mut(), gy.view(), self.w(w), T::one(), false);
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
        gemm(gw, gy.t(), cols.view(), T::one(), true);
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
        let cs = cols.as_slice_mut().expect("standard layout");
        for (b, xr) in x.rows().into_iter().enumerate() {
            let block = &mut cs[b * pix * kk..(b + 1) * pix * kk];
            match xr.as_slice() {
                Some(xs) => {
                    for &(r, k, i) in self.idx.iter() {
                        block[r as usize * kk + k as usize] = xs[i as usize];
                    }
                }
                None => {
                    for &(r, k, i) in self.idx.iter() {
                        block[r as usize * kk + k as usize] = xr[i as usize];
                    }
                }
            }
        }
        cols
    }
    fn col2im<T: Real>(&self, cols: &Array2<T>, b: usize) -> Array2<T> {
        let (pix, kk) = (self.pix(), self.kk());
        let mut out = Array2::zeros((b, self.input.len()));
        let cs = cols.as_slice().expect("standard layout");
        for (bi, mut orow) in out.rows_mut().into_iter().enumerate() {
            let block = &cs[bi * pix * kk..(bi + 1) * pix * kk];
            let os = orow.as_slice_mut().expect("standard layout");
            for &(r, k, i) in self.idx.iter() {
                os[i as usize] += block[r as usize * kk + k as usize];
            }
        }
        out
    }
    /// `(B·H'W' × c_out)` → rows `(c_out, H', W')`, plus the bias.
    fn to_rows<T: Real>(&self, y: &Array2<T>, b: usize, bias: Option<&[T]>) -> Array2<T> {
        let (pix, co_n) = (self.pix(), self.c_out);
        let mut out = Array2::zeros((b, co_n * pix));
        let ys = y.as_slice().expect("standard layout");
        for (bi, mut orow) in out.rows_mut().into_iter().enumerate() {
            let os = orow.as_slice_mut().expect("standard layout");
            let yb = &ys[bi * pix * co_n..(bi + 1) * pix * co_n];
            for co in 0..co_n {
                let bv = bias.map_or(T::zero(), |bs| bs[co]);
                let dst = &mut os[co * pix..(co + 1) * pix];
                for (p, d) in dst.iter_mut().enumerate() {
                    *d = yb[p * co_n + co] + bv;
                }
            }
        }
        out
    }
    /// Rows `(c_out, H', W')` → `(B·H'W' × c_out)`.
    fn rows_to_pixels<T: Real>(&self, g: ArrayView2<'_, T>) -> Array2<T> {
        let (pix, co_n) = (self.pix(), self.c_out);
        let mut out = Array2::zeros((g.nrows() * pix, co_n));
        let os = out.as_slice_mut().expect("standard layout");
        for (bi, grow) in g.rows().into_iter().enumerate() {
            let ob = &mut os[bi * pix * co_n..(bi + 1) * pix * co_n];
            for co in 0..co_n {
                for p in 0..pix {
                    ob[p * co_n + co] = grow[co * pix + p];
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
        gemm(gw, gy.t(), cols.view(), T::one(), true);
        if self.bias {
            super::layers::add_row_sums(gb, gy.view());
        }
        let mut gcols = Array2::zeros(cols.raw_dim());
        gemm(gcols.view_mut(), gy.view(), self.w(p), T::one(), false);
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
        super::check_params("Conv2d", Differentiable::<T>::num_params(self), p)?;
        Ok(self.forward_save(p, x, c)?.0)
    }
    fn forward_save(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
    ) -> Result<(Array2<T>, Saved)> {
        super::check_params("Conv2d", Differentiable::<T>::num_params(self), p)?;
        check_width("Conv2d", x, self.input.len())?;
        let cols = self.im2col(x);
        let mut y = Array2::zeros((cols.nrows(), self.c_out));
        gemm(y.view_mut(), cols.view(), self.w(p).t(), T::one(), false);
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
        super::check_params("Conv2d", Differentiable::<T>::num_params(self), p)?;
        super::check_params("Conv2d", Differentiable::<T>::num_params(self), gp)?;
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
        super::check_params("Conv2d", Differentiable::<T>::num_params(self), p)?;
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

/// Average or max pooling over `k × k` windows with a stride, per channel (no padding). The
/// input indices of every window are computed once; max pooling keeps the position of each
/// maximum from its forward pass for the backward pass.
#[derive(Clone, Debug)]
pub struct Pool2d {
    input: ImageShape,
    kind: PoolKind,
    k: usize,
    stride: usize,
    oh: usize,
    ow: usize,
    /// Input indices of output `o`'s window: `win[o·k² .. (o+1)·k²]`.
    win: std::sync::Arc<Vec<u32>>,
}

impl Pool2d {
    /// `Err` if the window does not fit.
    pub fn new(input: ImageShape, kind: PoolKind, k: usize, stride: usize) -> Result<Self> {
        let oh = out_size("Pool2d", input.h, k, stride, 0)?;
        let ow = out_size("Pool2d", input.w, k, stride, 0)?;
        let mut win = Vec::with_capacity(input.c * oh * ow * k * k);
        for ch in 0..input.c {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ky in 0..k {
                        for kx in 0..k {
                            let i = (ch * input.h + oy * stride + ky) * input.w + ox * stride + kx;
                            win.push(i as u32);
                        }
                    }
                }
            }
        }
        Ok(Self {
            input,
            kind,
            k,
            stride,
            oh,
            ow,
            win: std::sync::Arc::new(win),
        })
    }
    /// The output image shape.
    pub fn output(&self) -> ImageShape {
        ImageShape::new(self.input.c, self.oh, self.ow)
    }
    /// For max pooling, the input index of each output's (first) maximum.
    fn argmax<T: Real>(&self, x: ArrayView2<'_, T>) -> Vec<u32> {
        let kk = self.k * self.k;
        let mut out = Vec::with_capacity(x.nrows() * self.output().len());
        for xr in x.rows() {
            let xs = xr
                .to_slice()
                .map_or_else(|| xr.to_vec().into(), std::borrow::Cow::Borrowed);
            for w in self.win.chunks(kk) {
                // Branch-free selects: the comparisons are data-dependent.
                let (mut bi, mut bv) = (w[0], xs[w[0] as usize]);
                for &i in &w[1..] {
                    let v = xs[i as usize];
                    let gt = v > bv;
                    bi = if gt { i } else { bi };
                    bv = if gt { v } else { bv };
                }
                out.push(bi);
            }
        }
        out
    }
    /// Calls `f(row, output index, input index, weight)` for every entry that feeds an
    /// output: the window with weight `1/k²` (average) or the maximum with weight 1 (max,
    /// positions in `arg`).
    fn route<T: Real>(
        &self,
        b: usize,
        arg: Option<&[u32]>,
        mut f: impl FnMut(usize, usize, usize, T),
    ) {
        let kk = self.k * self.k;
        let n_out = self.output().len();
        match arg {
            Some(a) => {
                for r in 0..b {
                    for o in 0..n_out {
                        f(r, o, a[r * n_out + o] as usize, T::one());
                    }
                }
            }
            None => {
                let inv = T::one() / T::c(kk as f64);
                for r in 0..b {
                    for (o, w) in self.win.chunks(kk).enumerate() {
                        for &i in w {
                            f(r, o, i as usize, inv);
                        }
                    }
                }
            }
        }
    }
    fn positions<T: Real>(&self, x: ArrayView2<'_, T>) -> Option<Vec<u32>> {
        (self.kind == PoolKind::Max).then(|| self.argmax(x))
    }
    fn pull<T: Real>(&self, arg: Option<&[u32]>, g: ArrayView2<'_, T>) -> Array2<T> {
        let mut out = Array2::zeros((g.nrows(), self.input.len()));
        self.route(g.nrows(), arg, |r, o, i, wt: T| {
            out[(r, i)] += wt * g[(r, o)]
        });
        out
    }
    fn push<T: Real>(&self, arg: Option<&[u32]>, v: ArrayView2<'_, T>) -> Array2<T> {
        let mut out = Array2::zeros((v.nrows(), self.output().len()));
        self.route(v.nrows(), arg, |r, o, i, wt: T| {
            out[(r, o)] += wt * v[(r, i)]
        });
        out
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
    fn forward(&self, p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        Ok(self.forward_save(p, x, c)?.0)
    }
    fn forward_save(
        &self,
        _p: &[T],
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
    ) -> Result<(Array2<T>, Saved)> {
        check_width("Pool2d", x, self.input.len())?;
        let arg = self.positions(x);
        let y = self.push(arg.as_deref(), x);
        Ok((
            y,
            arg.map(|a| Box::new(a) as Box<dyn std::any::Any + Send + Sync>),
        ))
    }
    fn vjp(
        &self,
        _p: &[T],
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        _gp: &mut [T],
    ) -> Result<Array2<T>> {
        Ok(self.pull(self.positions(x).as_deref(), g))
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
        match (
            self.kind,
            saved.as_ref().and_then(|s| s.downcast_ref::<Vec<u32>>()),
        ) {
            (PoolKind::Max, Some(a)) => Ok(self.pull(Some(a), g)),
            (PoolKind::Average, _) => Ok(self.pull(None, g)),
            _ => self.vjp(p, x, c, g, gp),
        }
    }
    fn jvp(
        &self,
        _p: &[T],
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        Ok(self.push(self.positions(x).as_deref(), v))
    }
}

impl<T: Real> Layer<T> for Pool2d {}
