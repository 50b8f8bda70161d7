//! Device linear operators: a dense matrix by cuBLAS, the 2-D finite-difference gradient, a
//! mask. Each implements [`OperatorOn`] on [`GpuVec`], so the core solvers and the power /
//! Lanczos iterations run on them.

use super::{fatal, launch, Gpu, GpuReal, GpuVec};
use crate::backend::{lanczos_norm_on, OperatorOn};
use crate::error::{Error, Result};
use crate::linalg::Real;
use crate::ops::{Gradient2d, Mask, PowerIteration};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{GemmConfig, GemvConfig, StridedBatchedConfig};
use cudarc::driver::CudaSlice;
use ndarray::ArrayView2;
use rand::{Rng, SeedableRng};

/// A dense `m × n` matrix in device memory (row-major, as the host's), applied by cuBLAS GEMV
/// (`f32`: SGEMV, `f64`: DGEMV). cuBLAS is column-major: the row-major `A` is the column-major
/// `Aᵀ` with leading dimension `n`, so `Ax` is the transposed GEMV and `Aᵀy` the plain one.
pub struct GpuDense<T: GpuReal> {
    a: CudaSlice<T>,
    m: usize,
    n: usize,
    gpu: Gpu,
}

impl<T: GpuReal> GpuDense<T> {
    /// Uploads `a` (finite entries; each dimension below 2³¹, cuBLAS's integer).
    pub fn new(gpu: &Gpu, a: ArrayView2<'_, T>) -> Result<Self> {
        let (m, n) = a.dim();
        if m > i32::MAX as usize || n > i32::MAX as usize {
            return Err(Error::param(
                "A",
                format!("{m} x {n}"),
                "each dimension must be below 2^31 for cuBLAS",
            ));
        }
        if let Some((i, v)) = crate::linalg::first_non_finite(&a) {
            return Err(Error::NonFinite {
                what: "GpuDense matrix".into(),
                index: i,
                value: format!("{v}"),
            });
        }
        let host: Vec<T> = a.as_standard_layout().iter().copied().collect();
        let a = gpu.upload(&host)?;
        Ok(Self {
            a: a.into_buf(),
            m,
            n,
            gpu: gpu.clone(),
        })
    }

    /// `y ← α op(A) x + β y` (`op(A) = A` when `!transpose`).
    pub(crate) fn gemv(
        &self,
        transpose: bool,
        alpha: T,
        x: &GpuVec<T>,
        beta: T,
        y: &mut GpuVec<T>,
    ) {
        let (xl, yl) = if transpose {
            (self.m, self.n)
        } else {
            (self.n, self.m)
        };
        assert_eq!(x.len_(), xl, "GpuDense: x has the wrong length");
        assert_eq!(y.len_(), yl, "GpuDense: y has the wrong length");
        if self.m == 0 || self.n == 0 {
            if beta == T::zero() {
                crate::linalg::Vector::fill(y, T::zero());
            } else {
                crate::linalg::Vector::scale(y, beta);
            }
            return;
        }
        let cfg = GemvConfig {
            trans: if transpose {
                cublasOperation_t::CUBLAS_OP_N
            } else {
                cublasOperation_t::CUBLAS_OP_T
            },
            m: self.n as i32,
            n: self.m as i32,
            alpha,
            lda: self.n as i32,
            incx: 1,
            beta,
            incy: 1,
        };
        // SAFETY: the lengths were checked against the shape above.
        fatal(unsafe { <T as GpuReal>::gemv(self.gpu.blas(), cfg, &self.a, x.buf(), y.buf_mut()) });
    }
}

impl<T: GpuReal> GpuDense<T> {
    /// `(m, n)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.m, self.n)
    }

    /// A batch of products in one GEMM: `x` holds `rows` vectors as the rows of a row-major
    /// `rows × n` matrix `X` (`rows × m` with `transpose`), and `out ← X Aᵀ` (`rows × m`; with
    /// `transpose`, `out ← X A`, `rows × n`): the forward and backward products of a dense
    /// layer on a minibatch.
    pub fn apply_rows(
        &self,
        transpose: bool,
        x: &GpuVec<T>,
        rows: usize,
        out: &mut GpuVec<T>,
    ) -> Result<()> {
        let (xin, xout) = if transpose {
            (self.m, self.n)
        } else {
            (self.n, self.m)
        };
        crate::linalg::check_len("GpuDense::apply_rows", "x", rows * xin, x.len_())?;
        crate::linalg::check_len("GpuDense::apply_rows", "out", rows * xout, out.len_())?;
        if rows == 0 || xout == 0 {
            return Ok(());
        }
        if xin == 0 {
            crate::linalg::Vector::fill(out, T::zero());
            return Ok(());
        }
        let cfg = rows_gemm(transpose, (xin, xout), rows, self.n);
        // SAFETY: the lengths were checked against the shapes above.
        unsafe { <T as GpuReal>::gemm(self.gpu.blas(), cfg, &self.a, x.buf(), out.buf_mut()) }
    }
}

/// The cuBLAS (column-major) GEMM computing, for a row-major `m × n` matrix `A` (`lda = n`)
/// and `rows` vectors of length `xin` stored as rows, `out = X op(A)ᵀ` (`rows × xout`): in
/// column-major terms `outᵀ = op(A_cm)·Xᵀ` with `A_cm = Aᵀ`.
fn rows_gemm<T: GpuReal>(
    transpose: bool,
    (xin, xout): (usize, usize),
    rows: usize,
    lda: usize,
) -> GemmConfig<T> {
    GemmConfig {
        transa: if transpose {
            cublasOperation_t::CUBLAS_OP_N
        } else {
            cublasOperation_t::CUBLAS_OP_T
        },
        transb: cublasOperation_t::CUBLAS_OP_N,
        m: xout as i32,
        n: rows as i32,
        k: xin as i32,
        alpha: T::one(),
        lda: lda as i32,
        ldb: xin as i32,
        beta: T::zero(),
        ldc: xout as i32,
    }
}

/// `K` dense `m × n` matrices of the same shape in one device buffer, applied each to its own
/// vector by one strided batched GEMM (e.g. the per-sample matrices of a batch of problems).
pub struct GpuDenseBatch<T: GpuReal> {
    a: CudaSlice<T>,
    k: usize,
    m: usize,
    n: usize,
    gpu: Gpu,
}

impl<T: GpuReal> GpuDenseBatch<T> {
    /// Uploads the matrices (each row-major, finite entries).
    pub fn new(gpu: &Gpu, mats: &[ArrayView2<'_, T>]) -> Result<Self> {
        let (m, n) = mats.first().map_or((0, 0), |a| a.dim());
        let mut host = Vec::with_capacity(mats.len() * m * n);
        for (i, a) in mats.iter().enumerate() {
            if a.dim() != (m, n) {
                return Err(Error::shape(
                    "GpuDenseBatch",
                    format!("matrix {i}"),
                    format!("{m} x {n}"),
                    format!("{} x {}", a.nrows(), a.ncols()),
                ));
            }
            if a.iter().any(|v| !v.is_finite()) {
                return Err(Error::param(
                    format!("matrix {i}"),
                    "a non-finite entry",
                    "remove NaN/Inf from the matrices",
                ));
            }
            host.extend(a.as_standard_layout().iter().copied());
        }
        let a = gpu.upload(&host)?;
        Ok(Self {
            a: a.into_buf(),
            k: mats.len(),
            m,
            n,
            gpu: gpu.clone(),
        })
    }

    /// `out_i ← A_i x_i` for every `i` (`x`: `K·n` numbers, `out`: `K·m`), or `A_iᵀ x_i` with
    /// `transpose` (`x`: `K·m`, `out`: `K·n`).
    pub fn apply_each(&self, transpose: bool, x: &GpuVec<T>, out: &mut GpuVec<T>) -> Result<()> {
        let (xin, xout) = if transpose {
            (self.m, self.n)
        } else {
            (self.n, self.m)
        };
        crate::linalg::check_len("GpuDenseBatch::apply_each", "x", self.k * xin, x.len_())?;
        crate::linalg::check_len(
            "GpuDenseBatch::apply_each",
            "out",
            self.k * xout,
            out.len_(),
        )?;
        if self.k == 0 || xout == 0 {
            return Ok(());
        }
        if xin == 0 {
            crate::linalg::Vector::fill(out, T::zero());
            return Ok(());
        }
        let cfg = StridedBatchedConfig {
            gemm: rows_gemm(transpose, (xin, xout), 1, self.n),
            batch_size: self.k as i32,
            stride_a: (self.m * self.n) as i64,
            stride_b: xin as i64,
            stride_c: xout as i64,
        };
        // SAFETY: the lengths were checked against the shapes above.
        unsafe { T::gemm_batched(self.gpu.blas(), cfg, &self.a, x.buf(), out.buf_mut()) }
    }
}

impl<T: GpuReal> OperatorOn<T, GpuVec<T>> for GpuDense<T> {
    fn shape_on(&self) -> (usize, usize) {
        (self.m, self.n)
    }
    fn apply_on(&self, out: &mut GpuVec<T>, x: &GpuVec<T>) {
        self.gemv(false, T::one(), x, T::zero(), out);
    }
    fn adjoint_on(&self, out: &mut GpuVec<T>, y: &GpuVec<T>) {
        self.gemv(true, T::one(), y, T::zero(), out);
    }
    /// The Lanczos estimate ([`lanczos_norm_on`]) on the device from a seeded random start.
    fn opnorm_on(&self, params: PowerIteration) -> Result<T> {
        let start = random_start::<T>(self.n, params.seed);
        let x = self.gpu.upload(&start)?;
        let y = self.gpu.zeros(self.m)?;
        lanczos_norm_on(self, x, y, params)
    }
}

/// A seeded standard normal start vector.
pub(crate) fn random_start<T: Real>(n: usize, seed: u64) -> Vec<T> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| T::c(rng.sample::<f64, _>(rand_distr::StandardNormal)))
        .collect()
}

/// The 2-D forward-difference gradient `ℝ^{h·w} → ℝ^{2·h·w}` (Neumann boundary) of
/// [`Gradient2d`] on the device: one kernel each way, the CPU's formulas and order.
pub struct GpuGradient2d {
    cpu: Gradient2d,
    gpu: Gpu,
}

impl GpuGradient2d {
    /// The gradient on `h × w` images.
    pub fn new(gpu: &Gpu, h: usize, w: usize) -> Result<Self> {
        Ok(Self {
            cpu: Gradient2d::new(h, w)?,
            gpu: gpu.clone(),
        })
    }
}

impl<T: GpuReal> OperatorOn<T, GpuVec<T>> for GpuGradient2d {
    fn shape_on(&self) -> (usize, usize) {
        let (h, w) = self.cpu.grid();
        (2 * h * w, h * w)
    }
    fn apply_on(&self, out: &mut GpuVec<T>, x: &GpuVec<T>) {
        let (h, w) = self.cpu.grid();
        assert_eq!(x.len_(), h * w, "GpuGradient2d: x has the wrong length");
        assert_eq!(
            out.len_(),
            2 * h * w,
            "GpuGradient2d: out has the wrong length"
        );
        let (hh, ww) = (h as i64, w as i64);
        let g = &self.gpu;
        fatal(launch!(g, T, "grad2d", g.cfg(h * w); &hh, &ww, out.buf_mut(), x.buf()));
    }
    fn adjoint_on(&self, out: &mut GpuVec<T>, y: &GpuVec<T>) {
        let (h, w) = self.cpu.grid();
        assert_eq!(y.len_(), 2 * h * w, "GpuGradient2d: y has the wrong length");
        assert_eq!(out.len_(), h * w, "GpuGradient2d: out has the wrong length");
        let (hh, ww) = (h as i64, w as i64);
        let g = &self.gpu;
        fatal(launch!(g, T, "negdiv2d", g.cfg(h * w); &hh, &ww, out.buf_mut(), y.buf()));
    }
    /// The exact norm of [`Gradient2d`].
    fn opnorm_on(&self, params: PowerIteration) -> Result<T> {
        crate::ops::LinearOperator::<T>::opnorm_estimate(&self.cpu, params)
    }
}

/// A mask (`diag(m)`, `mᵢ ∈ {0, 1}`: inpainting's observation operator) on the device.
pub struct GpuMask<T: GpuReal> {
    m: GpuVec<T>,
}

impl<T: GpuReal> GpuMask<T> {
    /// The mask of `mask` (observed entries 1).
    pub fn new(gpu: &Gpu, mask: &Mask) -> Result<Self> {
        let keep = mask.keep();
        let host: Vec<T> = keep
            .iter()
            .map(|&k| if k { T::one() } else { T::zero() })
            .collect();
        Ok(Self {
            m: gpu.upload(&host)?,
        })
    }
}

impl<T: GpuReal> OperatorOn<T, GpuVec<T>> for GpuMask<T> {
    fn shape_on(&self) -> (usize, usize) {
        (self.m.len_(), self.m.len_())
    }
    fn apply_on(&self, out: &mut GpuVec<T>, x: &GpuVec<T>) {
        out.same_shape(x);
        out.same_shape(&self.m);
        let n = x.n();
        let g = self.m.gpu();
        fatal(launch!(g, T, "mul", g.cfg(x.len_()); &n, out.buf_mut(), x.buf(), self.m.buf()));
    }
    fn adjoint_on(&self, out: &mut GpuVec<T>, y: &GpuVec<T>) {
        self.apply_on(out, y);
    }
    /// 1 if any entry is observed, else 0.
    fn opnorm_on(&self, _params: PowerIteration) -> Result<T> {
        Ok(crate::linalg::Vector::norm_inf(&self.m))
    }
}

/// The "same"-size 2-D convolution of [`Conv2d`](crate::ops::Conv2d) (any boundary) on the
/// device by direct summation: `conv2d` gathers each output pixel through the extension maps,
/// `conv2d_adj` gathers each adjoint pixel through their inverses
/// ([`invert_extension`](crate::ops::invert_extension)), so both are deterministic (no atomics).
/// `O(h·w·kh·kw)`: meant for the small kernels of deblurring and learned filters.
pub struct GpuConv2d<T: GpuReal> {
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    k: GpuVec<T>,
    rows: CudaSlice<i64>,
    cols: CudaSlice<i64>,
    roff: CudaSlice<i64>,
    rinv: CudaSlice<i64>,
    coff: CudaSlice<i64>,
    cinv: CudaSlice<i64>,
    norm: T,
}

fn upload_i64(gpu: &Gpu, v: &[i64]) -> Result<CudaSlice<i64>> {
    gpu.stream()
        .clone_htod(if v.is_empty() { &[0i64][..] } else { v })
        .map_err(|e| Error::Device(format!("CUDA error in upload: {e:?}")))
}

impl<T: GpuReal + rustfft::FftNum> GpuConv2d<T> {
    /// The device copy of `conv` (its kernel, boundary and image shape; `‖A‖` is the CPU
    /// operator's estimate).
    pub fn new(gpu: &Gpu, conv: &crate::ops::Conv2d<T>) -> Result<Self> {
        let (h, w) = conv.image_shape();
        let kern = conv.kernel();
        let (kh, kw) = kern.dim();
        let (rows, cols) = conv.extension_maps();
        let (roff, rinv) = crate::ops::invert_extension(&rows, h);
        let (coff, cinv) = crate::ops::invert_extension(&cols, w);
        let host: Vec<T> = kern.iter().copied().collect();
        let norm = crate::ops::LinearOperator::opnorm_estimate(conv, PowerIteration::default())?;
        Ok(Self {
            h,
            w,
            kh,
            kw,
            k: gpu.upload(&host)?,
            rows: upload_i64(gpu, &rows)?,
            cols: upload_i64(gpu, &cols)?,
            roff: upload_i64(gpu, &roff)?,
            rinv: upload_i64(gpu, &rinv)?,
            coff: upload_i64(gpu, &coff)?,
            cinv: upload_i64(gpu, &cinv)?,
            norm,
        })
    }
}

impl<T: GpuReal> OperatorOn<T, GpuVec<T>> for GpuConv2d<T> {
    fn shape_on(&self) -> (usize, usize) {
        (self.h * self.w, self.h * self.w)
    }
    fn apply_on(&self, out: &mut GpuVec<T>, x: &GpuVec<T>) {
        let n = self.h * self.w;
        assert_eq!(x.len_(), n, "GpuConv2d: x has the wrong length");
        assert_eq!(out.len_(), n, "GpuConv2d: out has the wrong length");
        let (h, w, kh, kw) = (self.h as i64, self.w as i64, self.kh as i64, self.kw as i64);
        let g = self.k.gpu();
        fatal(launch!(g, T, "conv2d", g.cfg(n);
            &h, &w, &kh, &kw, out.buf_mut(), x.buf(), self.k.buf(), &self.rows, &self.cols));
    }
    fn adjoint_on(&self, out: &mut GpuVec<T>, y: &GpuVec<T>) {
        let n = self.h * self.w;
        assert_eq!(y.len_(), n, "GpuConv2d: y has the wrong length");
        assert_eq!(out.len_(), n, "GpuConv2d: out has the wrong length");
        let (h, w, kh, kw) = (self.h as i64, self.w as i64, self.kh as i64, self.kw as i64);
        let g = self.k.gpu();
        fatal(launch!(g, T, "conv2d_adj", g.cfg(n);
            &h, &w, &kh, &kw, out.buf_mut(), y.buf(), self.k.buf(),
            &self.roff, &self.rinv, &self.coff, &self.cinv));
    }
    /// The CPU operator's estimate, computed once at construction.
    fn opnorm_on(&self, _params: PowerIteration) -> Result<T> {
        Ok(self.norm)
    }
}
