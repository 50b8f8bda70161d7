//! The input-convex network `ψ_θ` and the learned proximal network `f_θ = ∇ψ_θ`.
//!
//! ```text
//! z₁ = s(H₁y + b₁),   z_k = s(W_k z_{k−1} + H_k y + b_k)  (k = 2..K),   W_k ≥ 0,
//! ψ(y) = wᵀz_K + hᵀy + c + α‖y‖²,                                        w ≥ 0,
//! ```
//!
//! with `s(t) = log(1 + e^{βt})/β` (softplus of sharpness β). `ψ` is convex in `y` because
//! `s` is convex and increasing and every layer after the first combines the previous one with
//! non-negative weights. The LPN is `f(y) = ∇ψ(y)`, computed by an explicit backward pass:
//!
//! ```text
//! δ_K = s'(a_K) ⊙ w,   δ_{k−1} = (W_kᵀ δ_k) ⊙ s'(a_{k−1}),   f(y) = Σ_k H_kᵀ δ_k + h + 2αy.
//! ```
//!
//! **Training gradient (second order).** For a loss on `f(y)` with `G = ∂loss/∂f`, the
//! parameter gradient is `∇_θ ⟨G, ∇_yψ(y; θ)⟩ = ∇_θ φ`, `φ = D_yψ(y)[G]` the directional
//! derivative. `φ` is computed by a forward pass with tangents (`ȧ₁ = H₁G`,
//! `ȧ_k = W_k ż_{k−1} + H_k G`, `ż_k = s'(a_k) ⊙ ȧ_k`, `φ = wᵀż_K + hᵀG + 2αyᵀG`) and
//! differentiated in reverse (adjoints `z̄, ż̄`):
//!
//! ```text
//! ā_k = z̄_k ⊙ s'(a_k) + ż̄_k ⊙ s''(a_k) ⊙ ȧ_k,   ǡ_k = ż̄_k ⊙ s'(a_k),
//! ∂H_k += ā_k yᵀ + ǡ_k Gᵀ,  ∂b_k += ā_k,  ∂W_k += ā_k z_{k−1}ᵀ + ǡ_k ż_{k−1}ᵀ,
//! z̄_{k−1} = W_kᵀ ā_k,  ż̄_{k−1} = W_kᵀ ǡ_k,   (start: ż̄_K = w, z̄_K = 0)
//! ```
//!
//! and the same sweep gives the Hessian-vector product `∇²ψ(y) G = Σ_k H_kᵀ ā_k + 2αG`.
//!
//! Layers are dense and act on a batch (rows of a `B × d` matrix) by matrix products.
//!
//! # References
//! Z. Fang, S. Buchanan, J. Sulam, "What's in a prior? Learned proximal networks for inverse
//! problems", ICLR 2024 (arXiv:2310.14344); B. Amos, L. Xu, J. Z. Kolter, "Input convex
//! neural networks", ICML 2017.

use hyperprox_core::error::{Error, Result};
use hyperprox_core::nn::Dense;
use ndarray::{concatenate, s, Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Rows per work item: batches are split into chunks that run in parallel (and whose
/// temporaries stay small enough for the allocator's fast path).
const CHUNK: usize = 64;

fn chunk_ranges(n: usize) -> Vec<(usize, usize)> {
    (0..n)
        .step_by(CHUNK)
        .map(|a| (a, (a + CHUNK).min(n)))
        .collect()
}

fn stack_rows(parts: Vec<Array2<f64>>, cols: usize) -> Array2<f64> {
    if parts.is_empty() {
        return Array2::zeros((0, cols));
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    concatenate(Axis(0), &views).expect("equal widths")
}

/// Architecture of an ICNN.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IcnnConfig {
    /// Input dimension `d`.
    pub dim: usize,
    /// Widths `m₁..m_K` of the hidden layers.
    pub widths: Vec<usize>,
    /// Softplus sharpness `β`.
    pub beta: f64,
    /// Strong-convexity weight `α ≥ 0` of the `α‖y‖²` term.
    pub alpha: f64,
    /// Dense or convolutional layers (dense if absent from a model file).
    #[serde(default)]
    pub arch: Arch,
}

/// Layer type of an ICNN (in model files: `{"kind": "dense"}` or `{"kind": "conv", ...}`).
#[derive(Clone, Copy, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Arch {
    /// Fully connected layers; `widths` are numbers of units.
    #[default]
    Dense,
    /// Convolutional layers on `height × width` single-channel images (`dim = height·width`):
    /// `widths` are channel counts, every `H_k` and `W_k` is a `kernel × kernel` convolution
    /// with zero padding (stride 1), biases per unit; the output `wᵀz_K` is dense.
    Conv {
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// Odd kernel size.
        kernel: usize,
    },
}

impl IcnnConfig {
    /// The paper's 1-D network (Laplacian experiment): 5 layers of width 50, `β = 10`, `α = 0`.
    pub fn paper_1d() -> Self {
        Self {
            dim: 1,
            widths: vec![50; 5],
            beta: 10.0,
            alpha: 0.0,
            arch: Arch::Dense,
        }
    }

    /// Units of layer `k` (widths times pixels for convolutional layers).
    fn units(&self, k: usize) -> usize {
        match self.arch {
            Arch::Dense => self.widths[k],
            Arch::Conv { height, width, .. } => self.widths[k] * height * width,
        }
    }

    /// The input map `H_k` and the layer map `W_k` (`k ≥ 1`).
    fn maps(&self, k: usize) -> (Lin, Option<Lin>) {
        match self.arch {
            Arch::Dense => (
                Lin::Dense {
                    out: self.widths[k],
                    inp: self.dim,
                },
                (k > 0).then(|| Lin::Dense {
                    out: self.widths[k],
                    inp: self.widths[k - 1],
                }),
            ),
            Arch::Conv {
                height,
                width,
                kernel,
            } => (
                Lin::Conv {
                    cout: self.widths[k],
                    cin: 1,
                    h: height,
                    w: width,
                    k: kernel,
                },
                (k > 0).then(|| Lin::Conv {
                    cout: self.widths[k],
                    cin: self.widths[k - 1],
                    h: height,
                    w: width,
                    k: kernel,
                }),
            ),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.dim == 0 || self.widths.is_empty() || self.widths.contains(&0) {
            return Err(Error::param(
                "architecture",
                format!("dim {}, widths {:?}", self.dim, self.widths),
                "need a positive input dimension and at least one layer of positive width",
            ));
        }
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            return Err(Error::param(
                "beta",
                self.beta,
                "the softplus sharpness must be positive (e.g. 10)",
            ));
        }
        if !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            return Err(Error::param(
                "alpha",
                self.alpha,
                "the strong-convexity weight must be ≥ 0",
            ));
        }
        if let Arch::Conv {
            height,
            width,
            kernel,
        } = self.arch
        {
            if height.checked_mul(width) != Some(self.dim) || kernel % 2 == 0 || kernel == 0 {
                return Err(Error::param(
                    "convolutional architecture",
                    format!("{height}×{width}, kernel {kernel}, dim {}", self.dim),
                    "need dim = height·width and an odd kernel size",
                ));
            }
        }
        // The parameter count of `Layout::new`, without overflow: a model file cannot make the
        // reader allocate more than MAX_PARAMS numbers.
        let m = |a: usize, b: usize| (a as u128).saturating_mul(b as u128);
        let (px, kk) = match self.arch {
            Arch::Dense => (1, 1),
            Arch::Conv {
                height,
                width,
                kernel,
            } => (m(height, width), m(kernel, kernel)),
        };
        let mut total: u128 = 1 + 2 * self.dim as u128;
        for (k, &wk) in self.widths.iter().enumerate() {
            let inp = if k == 0 { 1 } else { self.widths[k - 1] };
            let h_k = match self.arch {
                Arch::Dense => m(wk, self.dim),
                Arch::Conv { .. } => (wk as u128).saturating_mul(kk),
            };
            let w_k = if k == 0 {
                0
            } else {
                m(wk, inp).saturating_mul(kk)
            };
            total = total
                .saturating_add(h_k)
                .saturating_add(w_k)
                .saturating_add((wk as u128).saturating_mul(px).saturating_mul(2));
        }
        if total > MAX_PARAMS as u128 {
            return Err(Error::param(
                "architecture",
                format!(
                    "dim {}, widths {:?}, {:?}",
                    self.dim, self.widths, self.arch
                ),
                format!("more than {MAX_PARAMS} parameters; use a smaller network"),
            ));
        }
        Ok(())
    }
}

/// The largest network accepted (parameters; 16 GiB of `f64`).
const MAX_PARAMS: usize = 1 << 31;

/// A linear map of a layer, acting on batches (rows are samples), with its parameters in a
/// slice: dense `out × inp` (row-major) or a zero-padded convolution `cout × cin × k × k`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Lin {
    Dense {
        out: usize,
        inp: usize,
    },
    Conv {
        cout: usize,
        cin: usize,
        h: usize,
        w: usize,
        k: usize,
    },
}

impl Lin {
    fn n_params(&self) -> usize {
        match *self {
            Lin::Dense { out, inp } => out * inp,
            Lin::Conv { cout, cin, k, .. } => cout * cin * k * k,
        }
    }

    /// `X ↦ X Mᵀ` (`B × inp → B × out`).
    fn apply(&self, p: &[f64], x: ArrayView2<'_, f64>) -> Array2<f64> {
        match *self {
            Lin::Dense { out, inp } => Dense::new(inp, out).without_bias().apply(p, x),
            Lin::Conv { cout, cin, h, w, k } => {
                let x = x.as_standard_layout();
                let mut y = Array2::zeros((x.nrows(), cout * h * w));
                for (xb, mut yb) in x.rows().into_iter().zip(y.rows_mut()) {
                    let (xs, ys) = (xb.as_slice().expect("row"), yb.as_slice_mut().expect("row"));
                    conv_taps(cout, cin, h, w, k, |co, ci, tap, oi, ii, len| {
                        let kv = p[(co * cin + ci) * k * k + tap];
                        for (o, xv) in ys[oi..oi + len].iter_mut().zip(&xs[ii..ii + len]) {
                            *o += kv * xv;
                        }
                    });
                }
                y
            }
        }
    }

    /// `G ↦ G M` (`B × out → B × inp`).
    fn apply_t(&self, p: &[f64], g: ArrayView2<'_, f64>) -> Array2<f64> {
        match *self {
            Lin::Dense { out, inp } => Dense::new(inp, out).without_bias().apply_t(p, g),
            Lin::Conv { cout, cin, h, w, k } => {
                let g = g.as_standard_layout();
                let mut x = Array2::zeros((g.nrows(), cin * h * w));
                for (gb, mut xb) in g.rows().into_iter().zip(x.rows_mut()) {
                    let (gs, xs) = (gb.as_slice().expect("row"), xb.as_slice_mut().expect("row"));
                    conv_taps(cout, cin, h, w, k, |co, ci, tap, oi, ii, len| {
                        let kv = p[(co * cin + ci) * k * k + tap];
                        for (xv, gv) in xs[ii..ii + len].iter_mut().zip(&gs[oi..oi + len]) {
                            *xv += kv * gv;
                        }
                    });
                }
                x
            }
        }
    }

    /// `Σ_b g_b x_bᵀ` restricted to the parameters (flattened like the parameters).
    fn grad(&self, g: ArrayView2<'_, f64>, x: ArrayView2<'_, f64>) -> Array1<f64> {
        match *self {
            Lin::Dense { out, inp } => {
                let mut gw = vec![0.0; out * inp];
                Dense::new(inp, out)
                    .without_bias()
                    .add_weight_grad(&mut gw, g, x);
                Array1::from(gw)
            }
            Lin::Conv { cout, cin, h, w, k } => {
                let (g, x) = (g.as_standard_layout(), x.as_standard_layout());
                let mut out = vec![0.0; self.n_params()];
                for (gb, xb) in g.rows().into_iter().zip(x.rows()) {
                    let (gs, xs) = (gb.as_slice().expect("row"), xb.as_slice().expect("row"));
                    conv_taps(cout, cin, h, w, k, |co, ci, tap, oi, ii, len| {
                        out[(co * cin + ci) * k * k + tap] += gs[oi..oi + len]
                            .iter()
                            .zip(&xs[ii..ii + len])
                            .map(|(a, b)| a * b)
                            .sum::<f64>();
                    });
                }
                Array1::from(out)
            }
        }
    }
}

/// For a zero-padded `k × k` correlation on `h × w` images, calls
/// `f(out channel, in channel, tap, output offset, input offset, run length)` for every
/// contiguous run of a row where output pixel `(i, j)` reads input pixel
/// `(i + a − k/2, j + c − k/2)` (tap `a·k + c`).
#[allow(clippy::too_many_arguments)]
#[inline]
fn conv_taps(
    cout: usize,
    cin: usize,
    h: usize,
    w: usize,
    k: usize,
    mut f: impl FnMut(usize, usize, usize, usize, usize, usize),
) {
    let pad = (k / 2) as isize;
    for co in 0..cout {
        for ci in 0..cin {
            for a in 0..k {
                for c in 0..k {
                    let (da, dc) = (a as isize - pad, c as isize - pad);
                    let j0 = (-dc).max(0) as usize;
                    let j1 = ((w as isize) - dc).min(w as isize).max(0) as usize;
                    if j1 <= j0 {
                        continue;
                    }
                    for i in 0..h {
                        let ii = i as isize + da;
                        if ii < 0 || ii >= h as isize {
                            continue;
                        }
                        let oi = (co * h + i) * w + j0;
                        let xi = (ci * h + ii as usize) * w + (j0 as isize + dc) as usize;
                        f(co, ci, a * k + c, oi, xi, j1 - j0);
                    }
                }
            }
        }
    }
}
// end conv helpers

/// Offsets of the parameter blocks in the flat vector.
#[derive(Clone, Debug, PartialEq)]
struct Layout {
    h: Vec<usize>,
    b: Vec<usize>,
    w: Vec<usize>,
    maps: Vec<(Lin, Option<Lin>)>,
    w_out: usize,
    h_out: usize,
    c_out: usize,
    total: usize,
}

impl Layout {
    fn new(cfg: &IcnnConfig) -> Self {
        let mut off = 0;
        let (mut h, mut b, mut w, mut maps) = (vec![], vec![], vec![], vec![]);
        for k in 0..cfg.widths.len() {
            let (hk, wk) = cfg.maps(k);
            h.push(off);
            off += hk.n_params();
            b.push(off);
            off += cfg.units(k);
            w.push(off);
            off += wk.map_or(0, |l| l.n_params());
            maps.push((hk, wk));
        }
        let w_out = off;
        off += cfg.units(cfg.widths.len() - 1);
        let h_out = off;
        off += cfg.dim;
        let c_out = off;
        off += 1;
        Self {
            h,
            b,
            w,
            maps,
            w_out,
            h_out,
            c_out,
            total: off,
        }
    }
}

/// Softplus `s(t) = log(1 + e^{βt})/β` and its first two derivatives (the core kernel).
#[inline]
fn softplus(t: f64, beta: f64) -> (f64, f64, f64) {
    hyperprox_core::linalg::softplus_derivs(t, beta)
}

/// Forward quantities of a batch.
struct Cache {
    /// `s(a_k)`.
    z: Vec<Array2<f64>>,
    /// `s'(a_k)`.
    d1: Vec<Array2<f64>>,
    /// `s''(a_k)`.
    d2: Vec<Array2<f64>>,
}

/// An input-convex network `ψ_θ` with a flat parameter vector; `f_θ = ∇ψ_θ` is the learned
/// proximal operator (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Icnn {
    cfg: IcnnConfig,
    layout: Layout,
    /// All parameters, flat (layer by layer: `H_k`, `b_k`, `W_k`; then `w`, `h`, `c`).
    pub params: Array1<f64>,
}

impl Icnn {
    /// A network with PyTorch's default initialization (`U(±1/√fan_in)` for weights and
    /// biases), seeded, then projected (`W_k, w ≥ 0`).
    pub fn new(cfg: IcnnConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let layout = Layout::new(&cfg);
        let mut params = Array1::zeros(layout.total);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut fill = |params: &mut Array1<f64>, start: usize, len: usize, fan_in: usize| {
            let r = 1.0 / (fan_in as f64).sqrt();
            for p in params.slice_mut(ndarray::s![start..start + len]).iter_mut() {
                *p = r * (2.0 * rng.random::<f64>() - 1.0);
            }
        };
        let fan = |l: &Lin| match *l {
            Lin::Dense { inp, .. } => inp,
            Lin::Conv { cin, k, .. } => cin * k * k,
        };
        for k in 0..cfg.widths.len() {
            let (hk, wk) = layout.maps[k];
            fill(&mut params, layout.h[k], hk.n_params(), fan(&hk));
            let fan_b = wk.as_ref().map_or(fan(&hk), fan);
            fill(&mut params, layout.b[k], cfg.units(k), fan_b);
            if let Some(wk) = wk {
                fill(&mut params, layout.w[k], wk.n_params(), fan(&wk));
            }
        }
        let mk = cfg.units(cfg.widths.len() - 1);
        fill(&mut params, layout.w_out, mk, mk);
        fill(&mut params, layout.h_out, cfg.dim, cfg.dim);
        let mut net = Self {
            cfg,
            layout,
            params,
        };
        net.project();
        Ok(net)
    }

    /// A network from a configuration and a parameter vector (checked).
    pub fn from_params(cfg: IcnnConfig, params: Array1<f64>) -> Result<Self> {
        cfg.validate()?;
        let layout = Layout::new(&cfg);
        hyperprox_core::linalg::check_len(
            "Icnn::from_params",
            "parameters",
            layout.total,
            params.len(),
        )?;
        hyperprox_core::linalg::check_finite("ICNN parameters", params.view())?;
        Ok(Self {
            cfg,
            layout,
            params,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &IcnnConfig {
        &self.cfg
    }

    /// Number of parameters.
    pub fn n_params(&self) -> usize {
        self.layout.total
    }

    /// Indices of the parameters constrained to be non-negative (`W_k`, `w`).
    pub fn constrained(&self) -> Vec<std::ops::Range<usize>> {
        let mut v: Vec<_> = (1..self.cfg.widths.len())
            .map(|k| {
                self.layout.w[k]
                    ..self.layout.w[k] + self.layout.maps[k].1.map_or(0, |l| l.n_params())
            })
            .collect();
        v.push(self.layout.w_out..self.layout.h_out);
        v
    }

    /// Projection onto the constraints: clamps `W_k` and `w` at 0 (after each optimizer step).
    pub fn project(&mut self) {
        for r in self.constrained() {
            self.params
                .slice_mut(ndarray::s![r])
                .mapv_inplace(|v| v.max(0.0));
        }
    }

    fn pslice(&self, start: usize, len: usize) -> &[f64] {
        &self.params.as_slice().expect("contiguous")[start..start + len]
    }

    /// `H_k x` and its helpers.
    fn h_apply(&self, k: usize, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let l = self.layout.maps[k].0;
        l.apply(self.pslice(self.layout.h[k], l.n_params()), x)
    }
    fn h_apply_t(&self, k: usize, g: ArrayView2<'_, f64>) -> Array2<f64> {
        let l = self.layout.maps[k].0;
        l.apply_t(self.pslice(self.layout.h[k], l.n_params()), g)
    }
    fn w_apply(&self, k: usize, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let l = self.layout.maps[k].1.expect("k ≥ 1");
        l.apply(self.pslice(self.layout.w[k], l.n_params()), x)
    }
    fn w_apply_t(&self, k: usize, g: ArrayView2<'_, f64>) -> Array2<f64> {
        let l = self.layout.maps[k].1.expect("k ≥ 1");
        l.apply_t(self.pslice(self.layout.w[k], l.n_params()), g)
    }

    fn vec(&self, start: usize, len: usize) -> ArrayView1<'_, f64> {
        self.params.slice(ndarray::s![start..start + len])
    }

    fn check_batch(&self, y: ArrayView2<'_, f64>, what: &str) -> Result<()> {
        if y.ncols() != self.cfg.dim {
            return Err(Error::shape(
                "ICNN",
                what,
                format!("{} columns (one sample per row)", self.cfg.dim),
                format!("{} columns", y.ncols()),
            ));
        }
        if let Some(v) = y.iter().find(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: what.into(),
                index: 0,
                value: v.to_string(),
            });
        }
        Ok(())
    }

    fn forward(&self, y: ArrayView2<'_, f64>) -> Cache {
        let beta = self.cfg.beta;
        let (mut z, mut d1, mut d2) = (vec![], vec![], vec![]);
        for k in 0..self.cfg.widths.len() {
            let mut a = self.h_apply(k, y);
            if k > 0 {
                let prev: &Array2<f64> = &z[k - 1];
                a += &self.w_apply(k, prev.view());
            }
            a += &self.vec(self.layout.b[k], self.cfg.units(k));
            let mut zk = Array2::zeros(a.raw_dim());
            let mut s1 = Array2::zeros(a.raw_dim());
            let mut s2 = Array2::zeros(a.raw_dim());
            ndarray::Zip::from(&mut zk)
                .and(&mut s1)
                .and(&mut s2)
                .and(&a)
                .for_each(|zz, p, q, &t| {
                    let (s, ds, dds) = softplus(t, beta);
                    *zz = s;
                    *p = ds;
                    *q = dds;
                });
            z.push(zk);
            d1.push(s1);
            d2.push(s2);
        }
        Cache { z, d1, d2 }
    }

    fn mk(&self) -> usize {
        self.cfg.units(self.cfg.widths.len() - 1)
    }

    /// `ψ(y)` for each row of `y`.
    pub fn psi(&self, y: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        self.check_batch(y, "input")?;
        let c = self.forward(y);
        let zk = c.z.last().expect("layers");
        let mut out = zk.dot(&self.vec(self.layout.w_out, self.mk()));
        out += &y.dot(&self.vec(self.layout.h_out, self.cfg.dim));
        out += self.params[self.layout.c_out];
        if self.cfg.alpha > 0.0 {
            for (o, r) in out.iter_mut().zip(y.rows()) {
                *o += self.cfg.alpha * r.dot(&r);
            }
        }
        Ok(out)
    }

    /// The LPN `f(y) = ∇ψ(y)` for each row of `y` (`B × d`).
    pub fn prox(&self, y: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        self.check_batch(y, "input")?;
        let parts: Vec<Array2<f64>> = chunk_ranges(y.nrows())
            .into_par_iter()
            .map(|(a, b)| {
                let yc = y.slice(s![a..b, ..]);
                self.prox_unchecked(yc, &self.forward(yc))
            })
            .collect();
        Ok(stack_rows(parts, self.cfg.dim))
    }

    fn prox_unchecked(&self, y: ArrayView2<'_, f64>, c: &Cache) -> Array2<f64> {
        let d = self.cfg.dim;
        let kk = self.cfg.widths.len();
        let mut delta = &c.d1[kk - 1] * &self.vec(self.layout.w_out, self.mk());
        let mut f = y.to_owned() * (2.0 * self.cfg.alpha);
        f += &self.vec(self.layout.h_out, d);
        for k in (0..kk).rev() {
            f += &self.h_apply_t(k, delta.view());
            if k > 0 {
                delta = self.w_apply_t(k, delta.view()) * &c.d1[k - 1];
            }
        }
        f
    }

    /// `(ψ(y), f(y))` for each row.
    pub fn psi_and_prox(&self, y: ArrayView2<'_, f64>) -> Result<(Array1<f64>, Array2<f64>)> {
        Ok((self.psi(y)?, self.prox(y)?))
    }

    /// For a batch `y` and cotangents `g` (both `B × d`): the parameter gradient of
    /// `Σ_b ⟨g_b, f(y_b)⟩` and the Hessian-vector products `∇²ψ(y_b) g_b` (rows).
    pub fn param_grad(
        &self,
        y: ArrayView2<'_, f64>,
        g: ArrayView2<'_, f64>,
    ) -> Result<(Array1<f64>, Array2<f64>)> {
        self.grad_and_hvp(y, g, true)
    }

    /// `param_grad`, optionally skipping the parameter part (Hessian-vector products only).
    fn grad_and_hvp(
        &self,
        y: ArrayView2<'_, f64>,
        g: ArrayView2<'_, f64>,
        with_params: bool,
    ) -> Result<(Array1<f64>, Array2<f64>)> {
        self.check_batch(y, "input")?;
        self.check_batch(g, "cotangent")?;
        if g.nrows() != y.nrows() {
            return Err(Error::shape(
                "ICNN",
                "cotangent",
                format!("{} rows", y.nrows()),
                format!("{} rows", g.nrows()),
            ));
        }
        let parts: Vec<(Array1<f64>, Array2<f64>)> = chunk_ranges(y.nrows())
            .into_par_iter()
            .map(|(a, b)| {
                let yc = y.slice(s![a..b, ..]);
                self.param_grad_unchecked(yc, g.slice(s![a..b, ..]), &self.forward(yc), with_params)
            })
            .collect();
        Ok(self.reduce(parts))
    }

    fn reduce(&self, parts: Vec<(Array1<f64>, Array2<f64>)>) -> (Array1<f64>, Array2<f64>) {
        let mut grad = Array1::zeros(self.layout.total);
        let mut hv = Vec::with_capacity(parts.len());
        for (g, h) in parts {
            grad += &g;
            hv.push(h);
        }
        (grad, stack_rows(hv, self.cfg.dim))
    }

    fn param_grad_unchecked(
        &self,
        y: ArrayView2<'_, f64>,
        g: ArrayView2<'_, f64>,
        c: &Cache,
        with_params: bool,
    ) -> (Array1<f64>, Array2<f64>) {
        let kk = self.cfg.widths.len();
        let lay = &self.layout;
        let mut grad = Array1::zeros(lay.total);
        // Tangent forward pass.
        let mut zdot: Vec<Array2<f64>> = Vec::with_capacity(kk);
        let mut adot: Vec<Array2<f64>> = Vec::with_capacity(kk);
        for k in 0..kk {
            let mut ad = self.h_apply(k, g);
            if k > 0 {
                ad += &self.w_apply(k, zdot[k - 1].view());
            }
            zdot.push(&ad * &c.d1[k]);
            adot.push(ad);
        }
        // ∂φ/∂w = Σ_b ż_K, ∂φ/∂h = Σ_b G.
        grad.slice_mut(ndarray::s![lay.w_out..lay.h_out])
            .assign(&zdot[kk - 1].sum_axis(Axis(0)));
        grad.slice_mut(ndarray::s![lay.h_out..lay.c_out])
            .assign(&g.sum_axis(Axis(0)));
        let bsz = y.nrows();
        let w_out = self.vec(lay.w_out, self.mk());
        let mut zdbar = Array2::from_shape_fn((bsz, self.mk()), |(_, j)| w_out[j]);
        let mut zbar: Option<Array2<f64>> = None;
        let mut hvp = g.to_owned() * (2.0 * self.cfg.alpha);
        for k in (0..kk).rev() {
            let m = self.cfg.units(k);
            let (hk, wk) = lay.maps[k];
            let mut abar = &zdbar * &c.d2[k] * &adot[k];
            if let Some(zb) = &zbar {
                abar += &(zb * &c.d1[k]);
            }
            let adbar = &zdbar * &c.d1[k];
            let gb = abar.sum_axis(Axis(0));
            grad.slice_mut(ndarray::s![lay.b[k]..lay.b[k] + m])
                .assign(&gb);
            if with_params {
                let gh = hk.grad(abar.view(), y) + hk.grad(adbar.view(), g);
                grad.slice_mut(ndarray::s![lay.h[k]..lay.h[k] + hk.n_params()])
                    .assign(&gh);
            }
            hvp += &self.h_apply_t(k, abar.view());
            if let Some(wk) = wk {
                if with_params {
                    let gw = wk.grad(abar.view(), c.z[k - 1].view())
                        + wk.grad(adbar.view(), zdot[k - 1].view());
                    grad.slice_mut(ndarray::s![lay.w[k]..lay.w[k] + wk.n_params()])
                        .assign(&gw);
                }
                zbar = Some(self.w_apply_t(k, abar.view()));
                zdbar = self.w_apply_t(k, adbar.view());
            }
        }
        (grad, hvp)
    }

    /// The Hessian `∇²ψ(y)` at a fixed single input `y` (`1 × d`) as a reusable operator
    /// (the forward pass is done once; each product costs one tangent and one backward pass).
    pub fn hessian_at(
        &self,
        y: ArrayView2<'_, f64>,
    ) -> Result<impl Fn(ArrayView2<'_, f64>) -> Array2<f64> + '_> {
        self.check_batch(y, "input")?;
        let y = y.to_owned();
        let c = self.forward(y.view());
        Ok(move |v: ArrayView2<'_, f64>| self.param_grad_unchecked(y.view(), v, &c, false).1)
    }

    /// `∇²ψ(y_b) v_b` for each row.
    pub fn hvp(&self, y: ArrayView2<'_, f64>, v: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        Ok(self.grad_and_hvp(y, v, false)?.1)
    }

    /// One training evaluation: `f(y)`, then `G = loss_grad(f)` from the caller, then the
    /// parameter gradient — sharing one forward pass.
    pub fn prox_then_grad(
        &self,
        y: ArrayView2<'_, f64>,
        loss_grad: impl FnOnce(&Array2<f64>) -> Array2<f64>,
    ) -> Result<(Array2<f64>, Array1<f64>)> {
        self.check_batch(y, "input")?;
        let ranges = chunk_ranges(y.nrows());
        let fwd: Vec<(Cache, Array2<f64>)> = ranges
            .par_iter()
            .map(|&(a, b)| {
                let yc = y.slice(s![a..b, ..]);
                let c = self.forward(yc);
                let f = self.prox_unchecked(yc, &c);
                (c, f)
            })
            .collect();
        let f = stack_rows(fwd.iter().map(|p| p.1.clone()).collect(), self.cfg.dim);
        let g = loss_grad(&f);
        self.check_batch(g.view(), "loss gradient")?;
        if g.dim() != f.dim() {
            return Err(Error::shape(
                "ICNN",
                "loss gradient",
                format!("{:?}", f.dim()),
                format!("{:?}", g.dim()),
            ));
        }
        let parts: Vec<(Array1<f64>, Array2<f64>)> = ranges
            .par_iter()
            .zip(fwd.par_iter())
            .map(|(&(a, b), (c, _))| {
                self.param_grad_unchecked(y.slice(s![a..b, ..]), g.slice(s![a..b, ..]), c, true)
            })
            .collect();
        Ok((f, self.reduce(parts).0))
    }

    /// Applies `f` to each entry of a 1-D model's input (`dim = 1`).
    pub fn prox_scalar(&self, x: ArrayView1<'_, f64>) -> Result<Array1<f64>> {
        if self.cfg.dim != 1 {
            return Err(Error::param(
                "dim",
                self.cfg.dim,
                "prox_scalar needs a 1-D model; use prox on rows",
            ));
        }
        let y = x.to_owned().insert_axis(Axis(1));
        Ok(self.prox(y.view())?.column(0).to_owned())
    }

    /// Serializes the model (architecture and parameters) as JSON (format
    /// `hyperprox-lpn-icnn-v1`).
    pub fn to_json(&self) -> String {
        self.to_json_value().to_string()
    }

    /// The model as a JSON value (see [`Icnn::to_json`]).
    pub fn to_json_value(&self) -> serde_json::Value {
        let file = ModelFile {
            cfg: self.cfg.clone(),
            params: self.params.to_vec(),
        };
        // Numbers, strings and lists always serialize.
        hyperprox_core::io::to_tagged_json(MODEL_FORMAT, &file).unwrap_or_default()
    }

    /// Reads a model written by [`Icnn::to_json`].
    pub fn from_json(text: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::param("model file", "invalid JSON", e.to_string()))?;
        Self::from_json_value(v)
    }

    /// Reads a model from a JSON value (see [`Icnn::to_json`]).
    pub fn from_json_value(v: serde_json::Value) -> Result<Self> {
        let f: ModelFile = hyperprox_core::io::from_tagged_json(
            MODEL_FORMAT,
            "model file",
            "not a hyperprox LPN model; train one with `hyperprox lpn train`",
            v,
        )?;
        Self::from_params(f.cfg, Array1::from(f.params))
    }
}

const MODEL_FORMAT: &str = "hyperprox-lpn-icnn-v1";

/// A model file's payload: the architecture's fields and the parameters.
#[derive(serde::Serialize, serde::Deserialize)]
struct ModelFile {
    #[serde(flatten)]
    cfg: IcnnConfig,
    params: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution map against the zero-padded `k × k` correlation written out pixel by
    /// pixel (`y[co, i, j] = Σ_{ci, a, c} K[co, ci, a, c]·x[ci, i + a − k/2, j + c − k/2]`), on
    /// non-square images and two kernel sizes, so that a wrong offset, run length or boundary
    /// test in the tap enumeration (which the adjoint and gradient checks cannot see: the
    /// forward and backward passes share it) is caught.
    /// `ψ`'s output constant enters with its sign (`∇ψ` cannot see it, so the derivative
    /// checks do not): raising it by `δ` raises `ψ` by `δ` on every row.
    #[test]
    fn the_output_constant_shifts_psi() {
        let cfg = IcnnConfig {
            dim: 3,
            widths: vec![5, 4],
            beta: 2.0,
            alpha: 0.1,
            arch: Arch::Dense,
        };
        let net = Icnn::new(cfg, 3).unwrap();
        let y = Array2::from_shape_fn((4, 3), |(i, j)| (i as f64 - 1.5) * 0.3 + j as f64 * 0.2);
        let mut up = net.clone();
        up.params[net.layout.c_out] += 0.5;
        let (p0, p1) = (net.psi(y.view()).unwrap(), up.psi(y.view()).unwrap());
        for (a, b) in p0.iter().zip(&p1) {
            assert!((b - a - 0.5).abs() < 1e-12, "{a} → {b}");
        }
    }

    #[test]
    fn convolution_is_the_zero_padded_correlation() {
        for (cout, cin, h, w, k) in [(2, 3, 5, 4, 3), (1, 2, 3, 6, 5)] {
            let lin = Lin::Conv { cout, cin, h, w, k };
            let p: Vec<f64> = (0..lin.n_params())
                .map(|i| ((i * 37 % 23) as f64 - 11.0) / 7.0)
                .collect();
            let x = Array2::from_shape_fn((2, cin * h * w), |(b, i)| {
                ((i * 13 + b * 5) % 17) as f64 - 8.0
            });
            let y = lin.apply(&p, x.view());
            let r = (k / 2) as isize;
            for b in 0..2 {
                for co in 0..cout {
                    for i in 0..h {
                        for j in 0..w {
                            let mut want = 0.0;
                            for ci in 0..cin {
                                for a in 0..k {
                                    for c in 0..k {
                                        let (ii, jj) = (
                                            i as isize + a as isize - r,
                                            j as isize + c as isize - r,
                                        );
                                        if ii < 0 || jj < 0 || ii >= h as isize || jj >= w as isize
                                        {
                                            continue;
                                        }
                                        let kv = p[((co * cin + ci) * k + a) * k + c];
                                        want +=
                                            kv * x[[b, (ci * h + ii as usize) * w + jj as usize]];
                                    }
                                }
                            }
                            assert_eq!(
                                y[[b, (co * h + i) * w + j]],
                                want,
                                "({cout},{cin},{h},{w},{k}) b {b} co {co} ({i},{j})"
                            );
                        }
                    }
                }
            }
        }
    }
}
