//! Trainable blocks on the GPU: [`GpuMat`] (a batch in device memory, rows are samples) is a
//! [`BatchMat`], so the one unrolled training pass
//! ([`value_and_grad_on`](crate::diff::value_and_grad_on)) runs on it; the dense and
//! activation blocks of [`nn`](crate::nn) and the squared-error loss implement
//! [`DifferentiableOn`]/[`BatchLossOn`] on it, with the same formulas as on the host
//! (cuBLAS GEMMs for `X Wᵀ`, `Ḡ W`, `Ḡᵀ X`; one elementwise kernel per activation and its VJP).
//! [`shrink_step`]/[`shrink_pullback`] are the two kernels of a DU-ISTA/DU-IHT layer.

use super::{launch, sum_partials, Gpu, GpuReal, GpuVec};
use crate::diff::{BatchLossOn, BatchMat, DifferentiableOn, SquaredError, WorkspaceOn};
use crate::error::{Error, Result};
use crate::linalg::Vector;
use crate::nn::{Act, Activation, Dense};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::GemmConfig;
use ndarray::{Array2, ArrayView2};
use std::any::Any;
use std::sync::{Arc, Mutex, Weak};

/// A `rows × cols` batch in device memory, row-major (row `b` is sample `b`), as the host's
/// `Array2` in standard layout.
pub struct GpuMat<T: GpuReal> {
    rows: usize,
    cols: usize,
    data: GpuVec<T>,
}

impl<T: GpuReal> std::fmt::Debug for GpuMat<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuMat({} × {} on {:?})",
            self.rows,
            self.cols,
            self.data.gpu()
        )
    }
}

impl<T: GpuReal> GpuMat<T> {
    /// A zero batch on `gpu`.
    pub fn zeros(gpu: &Gpu, rows: usize, cols: usize) -> Result<Self> {
        Ok(Self {
            rows,
            cols,
            data: gpu.zeros(rows * cols)?,
        })
    }
    /// Copies `a` to `gpu`.
    pub fn from_array(gpu: &Gpu, a: ArrayView2<'_, T>) -> Result<Self> {
        let host: Vec<T> = a.iter().copied().collect();
        Ok(Self {
            rows: a.nrows(),
            cols: a.ncols(),
            data: gpu.upload(&host)?,
        })
    }
    /// Copies it to the host.
    pub fn to_array(&self) -> Result<Array2<T>> {
        Array2::from_shape_vec((self.rows, self.cols), self.data.to_vec()?)
            .map_err(|e| Error::Device(format!("download of a batch: {e}")))
    }
    /// Overwrites it with `a` (same shape).
    pub fn upload_from(&mut self, a: ArrayView2<'_, T>) -> Result<()> {
        crate::linalg::check_batch("GpuMat::upload_from", "batch", self.rows, self.cols, a)?;
        match a.as_slice() {
            Some(s) => self.data.upload_from(s),
            None => self
                .data
                .upload_from(&a.iter().copied().collect::<Vec<_>>()),
        }
    }
    /// Makes it `rows × cols` (zeros, on the same GPU) unless it has that shape already.
    pub fn ensure_shape(&mut self, rows: usize, cols: usize) -> Result<()> {
        if (self.rows, self.cols) != (rows, cols) {
            *self = Self::zeros(self.gpu(), rows, cols)?;
        }
        Ok(())
    }
    /// Rows (samples).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns (width).
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The entries as one device vector (row-major).
    pub fn data(&self) -> &GpuVec<T> {
        &self.data
    }
    /// The entries as one device vector, mutably.
    pub fn data_mut(&mut self) -> &mut GpuVec<T> {
        &mut self.data
    }
    /// The device.
    pub fn gpu(&self) -> &Gpu {
        self.data.gpu()
    }
    fn n(&self) -> i64 {
        (self.rows * self.cols) as i64
    }
    fn check_same(&self, what: &str, other: &Self) -> Result<()> {
        if (self.rows, self.cols) != (other.rows, other.cols) {
            return Err(Error::shape(
                what,
                "batch",
                format!("{} × {}", self.rows, self.cols),
                format!("{} × {}", other.rows, other.cols),
            ));
        }
        if !self.gpu().same(other.gpu()) {
            return Err(Error::Device(format!("{what}: batches on different GPUs")));
        }
        Ok(())
    }
}

impl<T: GpuReal> BatchMat for GpuMat<T> {
    type T = T;
    type Ref<'a> = &'a GpuMat<T>;
    fn view_of(&self) -> &GpuMat<T> {
        self
    }
    fn dims_of(r: &GpuMat<T>) -> (usize, usize) {
        (r.rows, r.cols)
    }
    fn zeros_on(like: &GpuMat<T>, rows: usize, cols: usize) -> Result<Self> {
        Self::zeros(like.gpu(), rows, cols)
    }
    fn assign_from(&mut self, src: &GpuMat<T>) -> Result<()> {
        self.check_same("assign", src)?;
        self.data.copy_from(&src.data);
        Ok(())
    }
    fn first_nonfinite_of(r: &GpuMat<T>) -> Result<Option<usize>> {
        if r.data.all_finite() {
            return Ok(None);
        }
        Ok(r.data.to_vec()?.iter().position(|v| !v.is_finite()))
    }
    fn to_host(r: &GpuMat<T>) -> Result<Array2<T>> {
        r.to_array()
    }
    fn from_host(like: &GpuMat<T>, a: ArrayView2<'_, T>) -> Result<Self> {
        Self::from_array(like.gpu(), a)
    }
}

/// `C ← α op(A) op(B) + β C` on row-major batches (`op` = transpose when `ta`/`tb`), by one
/// cuBLAS GEMM: the row-major `C` is the column-major `Cᵀ = op(B)ᵀ op(A)ᵀ`, so the operands are
/// passed swapped with their own transposition flags. `Err` on mismatched shapes.
pub fn gemm_rows_on<T: GpuReal>(
    c: &mut GpuMat<T>,
    a: &GpuMat<T>,
    ta: bool,
    b: &GpuMat<T>,
    tb: bool,
    alpha: T,
    beta: T,
) -> Result<()> {
    let (m, k) = if ta {
        (a.cols, a.rows)
    } else {
        (a.rows, a.cols)
    };
    let (k2, n) = if tb {
        (b.cols, b.rows)
    } else {
        (b.rows, b.cols)
    };
    if k != k2 || (c.rows, c.cols) != (m, n) {
        return Err(Error::shape(
            "gemm on device batches",
            "op(A) op(B) → C",
            format!("({m} × {k}) ({k2} × {n}) → {m} × {n}"),
            format!("C {} × {}", c.rows, c.cols),
        ));
    }
    for d in [m, n, k] {
        if d > i32::MAX as usize {
            return Err(Error::Device(format!(
                "a dimension of {d} is beyond cuBLAS's 32-bit sizes"
            )));
        }
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        c.data.scale(beta);
        return Ok(());
    }
    let op = |t: bool| {
        if t {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    };
    let cfg = GemmConfig {
        transa: op(tb),
        transb: op(ta),
        m: n as i32,
        n: m as i32,
        k: k as i32,
        alpha,
        lda: b.cols.max(1) as i32,
        ldb: a.cols.max(1) as i32,
        beta,
        ldc: n as i32,
    };
    let gpu = c.gpu().clone();
    // SAFETY: the shapes were checked against the buffers' lengths above.
    unsafe {
        <T as GpuReal>::gemm(
            gpu.blas(),
            cfg,
            b.data.buf(),
            a.data.buf(),
            c.data.buf_mut(),
        )
    }
}

/// A device copy of a constant host matrix (a forward operator), made once per GPU and host
/// allocation and shared by every block that holds the same `Arc`: the entry lives as long as
/// the host matrix does.
pub fn cached_matrix<T: GpuReal>(gpu: &Gpu, host: &Arc<Array2<T>>) -> Result<Arc<GpuMat<T>>> {
    type Entry = (
        usize,
        usize,
        Weak<dyn Any + Send + Sync>,
        Arc<dyn Any + Send + Sync>,
    );
    static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
    let key = Arc::as_ptr(host) as usize;
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache.retain(|e| e.2.strong_count() > 0);
    for (ord, k, _, dev) in cache.iter() {
        if *ord == gpu.ordinal() && *k == key {
            if let Ok(m) = dev.clone().downcast::<GpuMat<T>>() {
                return Ok(m);
            }
        }
    }
    let dev = Arc::new(GpuMat::from_array(gpu, host.view())?);
    let weak: Weak<dyn Any + Send + Sync> = Arc::downgrade(host) as Weak<Array2<T>>;
    let any: Arc<dyn Any + Send + Sync> = dev.clone();
    cache.push((gpu.ordinal(), key, weak, any));
    Ok(dev)
}

/// `u = x + α g` and `out = S_τ(u)` (`l1`) or `H_τ(u)` (else), one kernel: the DU-ISTA/DU-IHT
/// step after `g = Aᵀ(y − Ax)`.
pub fn shrink_step<T: GpuReal>(
    out: &mut GpuMat<T>,
    u: &mut GpuMat<T>,
    x: &GpuMat<T>,
    g: &GpuMat<T>,
    alpha: T,
    th: T,
    l1: bool,
) -> Result<()> {
    for (w, m) in [("u", &*u), ("x", x), ("g", g)] {
        out.check_same(&format!("shrink_step ({w})"), m)?;
    }
    let gpu = out.gpu().clone();
    let (n, l1) = (out.n(), l1 as i32);
    launch!(&gpu, T, "shrink_step", gpu.cfg(n as usize);
        &n, out.data.buf_mut(), u.data.buf_mut(), x.data.buf(), g.data.buf(), &alpha, &th, &l1)
}

/// The pull-back of [`shrink_step`]: `d = ḡ ⊙ 1[|u| > τ]` and returns
/// `(⟨d, g⟩, −Σ_{|u|>τ} ḡ sign u)`.
pub fn shrink_pullback<T: GpuReal>(
    d: &mut GpuMat<T>,
    gbar: &GpuMat<T>,
    u: &GpuMat<T>,
    g: &GpuMat<T>,
    th: T,
) -> Result<(T, T)> {
    for (w, m) in [("ḡ", gbar), ("u", u), ("g", g)] {
        d.check_same(&format!("shrink_pullback ({w})"), m)?;
    }
    let gpu = d.gpu().clone();
    let n = d.n();
    let cfg = gpu.red_cfg();
    let parts = gpu.reduce::<T>(2, |p| {
        launch!(&gpu, T, "shrink_vjp", cfg;
            &n, d.data.buf_mut(), gbar.data.buf(), u.data.buf(), g.data.buf(), &th, p)
    })?;
    let (even, odd): (Vec<T>, Vec<T>) = (
        parts.iter().step_by(2).copied().collect(),
        parts.iter().skip(1).step_by(2).copied().collect(),
    );
    Ok((sum_partials(&even), sum_partials(&odd)))
}

/// The penalty term of an unsupervised objective at `x`: with `l1`, adds `λ_b sign(x)` (where
/// `x ≠ 0`) to `g` and returns `‖x‖₁`; otherwise returns `‖x‖₀` and leaves `g`.
pub fn penalty_grad<T: GpuReal>(g: &mut GpuMat<T>, x: &GpuMat<T>, lam_b: T, l1: bool) -> Result<T> {
    g.check_same("penalty_grad", x)?;
    let gpu = g.gpu().clone();
    let (n, l1) = (g.n(), l1 as i32);
    let cfg = gpu.red_cfg();
    let parts = gpu.reduce::<T>(1, |p| {
        launch!(&gpu, T, "penalty_grad", cfg; &n, g.data.buf_mut(), x.data.buf(), &lam_b, &l1, p)
    })?;
    Ok(sum_partials(&parts))
}

impl<T: GpuReal> BatchLossOn<GpuMat<T>> for SquaredError {
    fn name_on(&self) -> String {
        "squared error".into()
    }
    /// `(1/B) Σ ‖x_b − x*_b‖²` and `2(x − x*)/B`, one kernel with the reduction.
    fn value_grad_on(
        &self,
        x: &GpuMat<T>,
        _c: &GpuMat<T>,
        target: &GpuMat<T>,
        out: &mut GpuMat<T>,
    ) -> Result<T> {
        x.check_same("SquaredError (target)", target)?;
        out.ensure_shape(x.rows, x.cols)?;
        let b = T::c(x.rows.max(1) as f64);
        let scale = T::c(2.0) / b;
        let gpu = x.gpu().clone();
        let n = x.n();
        let cfg = gpu.red_cfg();
        let parts = gpu.reduce::<T>(1, |p| {
            launch!(&gpu, T, "sqerr", cfg;
                &n, out.data.buf_mut(), x.data.buf(), target.data.buf(), &scale, p)
        })?;
        Ok(sum_partials(&parts) / b)
    }
}

fn check_width<T: GpuReal>(what: &str, x: &GpuMat<T>, n: usize) -> Result<()> {
    crate::linalg::check_len(what, "input width", n, x.cols)
}

fn check_params<T>(what: &str, n: usize, p: &[T]) -> Result<()> {
    crate::linalg::check_len(what, "parameters", n, p.len())
}

/// The dense block on device batches: `Y = 1bᵀ + X Wᵀ` (bias rows, then one GEMM with β = 1,
/// the host's order); VJP `X̄ = Ḡ W`, `W̄ = Ḡᵀ X` (GEMM), `b̄ = Σ_rows Ḡ` (one thread per
/// column, rows in order). Workspace: `W` and `b` uploaded from the host parameters at each
/// forward pass, and the two gradient buffers.
impl<T: GpuReal> DifferentiableOn<GpuMat<T>> for Dense {
    fn forward_on(
        &self,
        p: &[T],
        x: &GpuMat<T>,
        _c: &GpuMat<T>,
        ws: &mut WorkspaceOn<GpuMat<T>>,
        out: &mut GpuMat<T>,
    ) -> Result<()> {
        let (n_in, n_out) = (
            crate::diff::Differentiable::<T>::in_dim(self),
            crate::diff::Differentiable::<T>::out_dim(self),
        );
        check_params(
            "Dense",
            crate::diff::Differentiable::<T>::num_params(self),
            p,
        )?;
        check_width("Dense", x, n_in)?;
        let bias = p.len() > n_out * n_in;
        let [w, b] = ws.buffers_on(x, &[(n_out, n_in), (1, n_out)])? else {
            unreachable!("two buffers were asked for")
        };
        w.data.upload_from(&p[..n_out * n_in])?;
        out.ensure_shape(x.rows, n_out)?;
        if bias {
            b.data.upload_from(&p[n_out * n_in..])?;
            let gpu = x.gpu().clone();
            let (rows, cols) = (x.rows as i64, n_out as i64);
            launch!(&gpu, T, "bias_rows", gpu.cfg((rows * cols) as usize);
                &rows, &cols, out.data.buf_mut(), b.data.buf())?;
        }
        let beta = if bias { T::one() } else { T::zero() };
        gemm_rows_on(out, x, false, w, true, T::one(), beta)
    }
    fn vjp_on(
        &self,
        p: &[T],
        x: &GpuMat<T>,
        c: &GpuMat<T>,
        ws: &mut WorkspaceOn<GpuMat<T>>,
        g: &GpuMat<T>,
        gp: &mut [T],
        out: &mut GpuMat<T>,
    ) -> Result<()> {
        let (n_in, n_out) = (
            crate::diff::Differentiable::<T>::in_dim(self),
            crate::diff::Differentiable::<T>::out_dim(self),
        );
        check_params(
            "Dense",
            crate::diff::Differentiable::<T>::num_params(self),
            gp,
        )?;
        if ws.bufs.len() < 2 || ws.bufs[0].dims() != (n_out, n_in) {
            let mut y = GpuMat::zeros(x.gpu(), x.rows, n_out)?;
            self.forward_on(p, x, c, ws, &mut y)?;
        }
        let k = n_out * n_in;
        let bias = p.len() > k;
        let [w, _b, gw, gb] =
            ws.buffers_on(x, &[(n_out, n_in), (1, n_out), (n_out, n_in), (1, n_out)])?
        else {
            unreachable!("four buffers were asked for")
        };
        gemm_rows_on(gw, g, true, x, false, T::one(), T::zero())?;
        for (dst, v) in gp[..k].iter_mut().zip(gw.data.to_vec()?) {
            *dst += v;
        }
        if bias {
            let gpu = x.gpu().clone();
            let (rows, cols) = (g.rows as i64, n_out as i64);
            launch!(&gpu, T, "col_sums", gpu.cfg(n_out);
                &rows, &cols, gb.data.buf_mut(), g.data.buf())?;
            for (dst, v) in gp[k..].iter_mut().zip(gb.data.to_vec()?) {
                *dst += v;
            }
        }
        out.ensure_shape(x.rows, n_in)?;
        gemm_rows_on(out, g, false, w, false, T::one(), T::zero())
    }
}

/// The activation's code and parameter in the kernels.
fn act_code(f: Activation) -> (i32, f64) {
    match f {
        Activation::Relu => (0, 0.0),
        Activation::LeakyRelu(a) => (1, a),
        Activation::Tanh => (2, 0.0),
        Activation::Sigmoid => (3, 0.0),
        Activation::Softplus(b) => (4, b),
        Activation::Gelu => (5, 0.0),
    }
}

/// The activation block on device batches: one kernel for `σ(x)`, one for `ḡ ⊙ σ'(x)`.
impl<T: GpuReal> DifferentiableOn<GpuMat<T>> for Act {
    fn forward_on(
        &self,
        _p: &[T],
        x: &GpuMat<T>,
        _c: &GpuMat<T>,
        _ws: &mut WorkspaceOn<GpuMat<T>>,
        out: &mut GpuMat<T>,
    ) -> Result<()> {
        check_width(
            "activation",
            x,
            crate::diff::Differentiable::<T>::in_dim(self),
        )?;
        out.ensure_shape(x.rows, x.cols)?;
        let (kind, a) = act_code(self.function());
        let a = T::c(a);
        let gpu = x.gpu().clone();
        let n = x.n();
        launch!(&gpu, T, "act", gpu.cfg(n as usize); &n, out.data.buf_mut(), x.data.buf(), &kind, &a)
    }
    fn vjp_on(
        &self,
        _p: &[T],
        x: &GpuMat<T>,
        _c: &GpuMat<T>,
        _ws: &mut WorkspaceOn<GpuMat<T>>,
        g: &GpuMat<T>,
        _gp: &mut [T],
        out: &mut GpuMat<T>,
    ) -> Result<()> {
        x.check_same("activation VJP", g)?;
        out.ensure_shape(x.rows, x.cols)?;
        let (kind, a) = act_code(self.function());
        let a = T::c(a);
        let gpu = x.gpu().clone();
        let n = x.n();
        launch!(&gpu, T, "act_vjp", gpu.cfg(n as usize);
            &n, out.data.buf_mut(), x.data.buf(), g.data.buf(), &kind, &a)
    }
}
