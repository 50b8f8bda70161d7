//! The structured best-response convolution: per example and output channel `c`,
//!
//! ```text
//! [s_w; s_b] = V λ,      out_c = W_c ∗ x + b_c + s_w,c · (W_h,c ∗ x) + s_b,c · b_h,c
//! ```
//!
//! (`hyperconv2d.py` of the reference code: the gates scale whole output channels). Built on
//! the core `nn::Conv2d` (im2col + GEMM) for both convolutions. Parameters: the elementary
//! filters and biases (as `nn::Conv2d`), the hyper filters, the hyper biases (`c_out`), then `V`
//! (`2·c_out × h`, row-major), which starts at zero: the untrained layer is the plain
//! convolution. Rows are channel-major (`c_out × H' × W'`), as the core's.
//!
//! Derivatives with `Ḡ` the output gradient: `x̄ = conv_eᵀ Ḡ + conv_hᵀ(S_w ⊙ Ḡ)`, the filter
//! gradients by the core's, `b̄_h,c = Σ Ḡ_c S_b,c`, `S̄_w,c = ⟨Ḡ_c, W_h,c ∗ x⟩`,
//! `S̄_b,c = b_h,c Σ Ḡ_c`, `V̄ = S̄ᵀ U`, `Ū = S̄ V`.

use hyperprox_core::diff::Differentiable;
use hyperprox_core::error::Result;
use hyperprox_core::linalg::{check_len, Real};
use hyperprox_core::nn::{Conv2d, ImageShape, Layer, ParamGroupSpec};
use ndarray::{s, Array2, ArrayView2};
use rand::rngs::StdRng;

/// The STN convolution (see the module docs).
#[derive(Clone, Debug)]
pub struct StnConv2d {
    elem: Conv2d,
    hyper: Conv2d,
    c_out: usize,
    pix: usize,
    n_hyper: usize,
    ctx: usize,
}

impl StnConv2d {
    /// `c_out` filters of `k × k` (stride, zero padding) over images of shape `input`, reading
    /// `n_hyper` hyperparameters from the context.
    pub fn new(
        input: ImageShape,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        n_hyper: usize,
    ) -> Result<Self> {
        let elem = Conv2d::new(input, c_out, k, stride, pad)?;
        let hyper = Conv2d::new(input, c_out, k, stride, pad)?.without_bias();
        let o = elem.output();
        Ok(Self {
            elem,
            hyper,
            c_out,
            pix: o.h * o.w,
            n_hyper,
            ctx: n_hyper,
        })
    }

    /// Reads the hyperparameters from the first `n_hyper` columns of a context of `width`.
    pub fn with_context_width(mut self, width: usize) -> Self {
        self.ctx = width.max(self.n_hyper);
        self
    }

    /// Output shape.
    pub fn output(&self) -> ImageShape {
        self.elem.output()
    }

    /// Parameters of the elementary convolution (filters and biases).
    pub fn elementary_len(&self) -> usize {
        Differentiable::<f64>::num_params(&self.elem)
    }

    /// `(elementary, hyper filters, hyper biases, V)`.
    fn split<'a, T: Real>(&self, p: &'a [T]) -> (&'a [T], &'a [T], &'a [T], ArrayView2<'a, T>) {
        let e = self.elementary_len();
        let h = Differentiable::<f64>::num_params(&self.hyper);
        let (pe, rest) = p.split_at(e);
        let (ph, rest) = rest.split_at(h);
        let (bh, v) = rest.split_at(self.c_out);
        let v = ArrayView2::from_shape((2 * self.c_out, self.n_hyper), v).expect("sized");
        (pe, ph, bh, v)
    }

    fn check<T: Real>(&self, p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<()> {
        let np = Differentiable::<T>::num_params(self);
        check_len("StnConv2d", "parameters", np, p.len())?;
        check_len("StnConv2d", "input width", self.elem_in(), x.ncols())?;
        check_len("StnConv2d", "context width", self.ctx, c.ncols())?;
        check_len("StnConv2d", "context rows", x.nrows(), c.nrows())
    }

    fn elem_in(&self) -> usize {
        Differentiable::<f64>::in_dim(&self.elem)
    }

    fn gates<T: Real>(&self, v: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Array2<T> {
        c.slice(s![.., ..self.n_hyper]).dot(&v.t())
    }

    /// `(x̄, c̄)`; `x̄` and the parameter gradient only when `gp` is given (otherwise `x̄` is
    /// empty: the context VJP of the hyper step needs no input gradient).
    fn backward<T: Real>(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: Option<&mut [T]>,
    ) -> Result<(Array2<T>, Array2<T>)> {
        self.check(p, x, c)?;
        check_len(
            "StnConv2d",
            "output gradient width",
            self.c_out * self.pix,
            g.ncols(),
        )?;
        let (pe, ph, bh, v) = self.split(p);
        let sg = self.gates(v, c);
        let zh = self.hyper.forward(ph, x, c.slice(s![.., ..0]))?;
        let (co, pix) = (self.c_out, self.pix);
        let mut gw = g.to_owned();
        let mut sbar = Array2::zeros(sg.raw_dim());
        let mut gbh = vec![T::zero(); co];
        for i in 0..g.nrows() {
            for ch in 0..co {
                let (mut dot, mut sum) = (T::zero(), T::zero());
                for q in 0..pix {
                    let j = ch * pix + q;
                    dot += g[[i, j]] * zh[[i, j]];
                    sum += g[[i, j]];
                    gw[[i, j]] = g[[i, j]] * sg[[i, ch]];
                }
                sbar[[i, ch]] = dot;
                sbar[[i, co + ch]] = sum * bh[ch];
                gbh[ch] += sum * sg[[i, co + ch]];
            }
        }
        let mut cbar = Array2::zeros(c.raw_dim());
        cbar.slice_mut(s![.., ..self.n_hyper]).assign(&sbar.dot(&v));
        let ctx0 = c.slice(s![.., ..0]);
        let (e, h) = (pe.len(), ph.len());
        let xbar = match gp {
            Some(gp) => {
                let np = Differentiable::<T>::num_params(self);
                check_len("StnConv2d", "parameter gradient", np, gp.len())?;
                let (ge, rest) = gp.split_at_mut(e);
                let (gh, rest) = rest.split_at_mut(h);
                let (gb, gv) = rest.split_at_mut(co);
                let xe = self.elem.vjp(pe, x, ctx0, g, ge)?;
                let xh = self.hyper.vjp(ph, x, ctx0, gw.view(), gh)?;
                for (a, b) in gb.iter_mut().zip(&gbh) {
                    *a += *b;
                }
                let vbar = sbar.t().dot(&c.slice(s![.., ..self.n_hyper]));
                for (a, &b) in gv.iter_mut().zip(vbar.iter()) {
                    *a += b;
                }
                xe + xh
            }
            None => Array2::zeros((0, 0)),
        };
        Ok((xbar, cbar))
    }
}

impl<T: Real> Differentiable<T> for StnConv2d {
    fn name(&self) -> String {
        format!("STN {}", Differentiable::<T>::name(&self.elem))
    }
    fn in_dim(&self) -> usize {
        self.elem_in()
    }
    fn out_dim(&self) -> usize {
        self.c_out * self.pix
    }
    fn ctx_dim(&self) -> usize {
        self.ctx
    }
    fn num_params(&self) -> usize {
        self.elementary_len()
            + Differentiable::<f64>::num_params(&self.hyper)
            + self.c_out
            + 2 * self.c_out * self.n_hyper
    }
    fn forward(&self, p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        self.check(p, x, c)?;
        let (pe, ph, bh, v) = self.split(p);
        let ctx0 = c.slice(s![.., ..0]);
        let mut out = self.elem.forward(pe, x, ctx0)?;
        let zh = self.hyper.forward(ph, x, ctx0)?;
        let sg = self.gates(v, c);
        let (co, pix) = (self.c_out, self.pix);
        for i in 0..out.nrows() {
            for ch in 0..co {
                let (sw, sb) = (sg[[i, ch]], sg[[i, co + ch]] * bh[ch]);
                for q in 0..pix {
                    let j = ch * pix + q;
                    out[[i, j]] += sw * zh[[i, j]] + sb;
                }
            }
        }
        Ok(out)
    }
    fn vjp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        self.backward(p, x, c, g, Some(gp)).map(|r| r.0)
    }
    fn vjp_ctx(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        self.backward(p, x, c, g, None).map(|r| r.1)
    }
    fn jvp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        self.check(p, x, c)?;
        check_len("StnConv2d", "tangent width", self.elem_in(), v.ncols())?;
        let (pe, ph, _, vm) = self.split(p);
        let ctx0 = c.slice(s![.., ..0]);
        let mut out = self.elem.jvp(pe, x, ctx0, v)?;
        let zh = self.hyper.jvp(ph, x, ctx0, v)?;
        let sg = self.gates(vm, c);
        for i in 0..out.nrows() {
            for ch in 0..self.c_out {
                for q in 0..self.pix {
                    let j = ch * self.pix + q;
                    out[[i, j]] += sg[[i, ch]] * zh[[i, j]];
                }
            }
        }
        Ok(out)
    }
}

impl<T: Real> Layer<T> for StnConv2d {
    fn init_params(&self, rng: &mut StdRng) -> Vec<T> {
        let mut p: Vec<T> = Layer::<T>::init_params(&self.elem, rng);
        let other: Vec<T> = Layer::<T>::init_params(&self.elem, rng);
        let h = Differentiable::<f64>::num_params(&self.hyper);
        p.extend_from_slice(&other[..h]);
        p.extend_from_slice(&other[h..]);
        p.extend(vec![T::zero(); 2 * self.c_out * self.n_hyper]);
        p
    }
    fn param_groups(&self) -> Vec<ParamGroupSpec> {
        let e = self.elementary_len();
        let h = Differentiable::<f64>::num_params(&self.hyper);
        let nb = self.c_out;
        let nw = e - nb;
        let np = Differentiable::<T>::num_params(self);
        vec![
            ParamGroupSpec::new("weight", 0..nw, true),
            ParamGroupSpec::new("bias", nw..e, false),
            ParamGroupSpec::new("hyper_weight", e..e + h, true),
            ParamGroupSpec::new("hyper_bias", e + h..e + h + nb, false),
            ParamGroupSpec::new("gates", e + h + nb..np, false),
        ]
    }
}
