//! Scalars, vectors and dense kernels.
//!
//! * [`Real`]: the floating-point scalar every generic routine is written over (`f32`, `f64`).
//! * [`Vector`]: the small set of BLAS-1 operations algorithms need (axpy, scale, dot, norms,
//!   copy, zeros_like). It is implemented for [`ndarray::Array1`] on the CPU; a device backend
//!   implements the same trait for its buffers.
//! * Free functions over ndarray views (`dot`, `norm2`, `axpy`, …) and input checks
//!   ([`check_len`], [`check_finite`]) used throughout the crate.
//! * Dense kernels ([`Real::gemm`], [`Real::thin_svd`]) delegate to **faer** through zero-copy
//!   views of ndarray data (`faer-ext`).

use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Zip};
use std::fmt::{Debug, Display, LowerExp};

/// Floating-point scalar: implemented for `f32` and `f64`.
///
/// Besides the arithmetic of [`num_traits::Float`], it carries the dense kernels that are
/// dispatched to faer for the concrete type.
pub trait Real:
    num_traits::Float
    + num_traits::FromPrimitive
    + num_traits::NumAssign
    + ndarray::ScalarOperand
    + ndarray::LinalgScalar
    + Default
    + Debug
    + Display
    + LowerExp
    + Send
    + Sync
    + std::iter::Sum
    + 'static
{
    /// Name of the type (`"f32"` / `"f64"`), for reports.
    const NAME: &'static str;

    /// Converts an `f64` constant (rounding for `f32`).
    fn c(x: f64) -> Self;

    /// Converts to `f64` (exact for both types).
    fn as_f64(self) -> f64;

    /// `C ← α·A·B + β·C` with `β ∈ {0, 1}` (`beta_one = false` overwrites `C`), by faer.
    fn gemm(
        c: ArrayViewMut2<'_, Self>,
        a: ArrayView2<'_, Self>,
        b: ArrayView2<'_, Self>,
        alpha: Self,
        beta_one: bool,
    );

    /// [`Real::gemm`] on the calling thread only.
    fn gemm_seq(
        c: ArrayViewMut2<'_, Self>,
        a: ArrayView2<'_, Self>,
        b: ArrayView2<'_, Self>,
        alpha: Self,
        beta_one: bool,
    );

    /// Thin singular value decomposition `A = U diag(s) Vᵀ` by faer:
    /// returns `(U (m×r), s (r), V (n×r))`, `r = min(m, n)`, `s` non-increasing.
    fn thin_svd(a: ArrayView2<'_, Self>) -> Result<(Array2<Self>, Array1<Self>, Array2<Self>)>;

    /// Lower Cholesky factor `L` (`A = L Lᵀ`) of a symmetric positive definite matrix, by faer.
    fn cholesky_lower(a: ArrayView2<'_, Self>) -> Result<Array2<Self>>;

    /// Eigenvalues of a symmetric matrix (its lower triangle is read), non-decreasing, by
    /// faer's self-adjoint eigensolver.
    fn sym_eigenvalues(a: ArrayView2<'_, Self>) -> Result<Array1<Self>>;
}

/// Work above which faer is allowed to use the rayon thread pool.
const PARALLEL_FLOPS: usize = 1 << 22;

/// `C ← α·A·B + β·C` (`β ∈ {0, 1}`) for a row-separable product, parallel over the rows of
/// `A` and `C` by `rayon::join` with one sequential faer kernel per block, so that it
/// **allocates nothing** (faer's own parallel GEMM allocates its bookkeeping per call). Each
/// entry is computed by the same kernel as in [`Real::gemm`], so the result is the same; use
/// it in hot loops whose rows are samples.
pub fn gemm_rows<T: Real>(
    mut c: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    alpha: T,
    beta_one: bool,
) {
    let work = a.nrows() * a.ncols() * b.ncols();
    let rows = a.nrows();
    if work < PARALLEL_FLOPS || rows < 2 || rayon::current_num_threads() == 1 {
        T::gemm_seq(c, a, b, alpha, beta_one);
        return;
    }
    let mid = rows / 2;
    let (c1, c2) = c.view_mut().split_at(ndarray::Axis(0), mid);
    let (a1, a2) = a.split_at(ndarray::Axis(0), mid);
    rayon::join(
        || gemm_rows(c1, a1, b, alpha, beta_one),
        || gemm_rows(c2, a2, b, alpha, beta_one),
    );
}

/// faer's GEMM on ndarray views with the given parallelism.
fn gemm_with<T: Real + faer::traits::ComplexField>(
    c: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    alpha: T,
    beta_one: bool,
    par: faer::Par,
) {
    use faer_ext::IntoFaer;
    let accum = if beta_one {
        faer::Accum::Add
    } else {
        faer::Accum::Replace
    };
    faer::linalg::matmul::matmul(
        c.into_faer(),
        accum,
        a.into_faer(),
        b.into_faer(),
        alpha,
        par,
    );
    clear_upper_vector_state();
}

/// Clears the upper halves of the AVX registers (`vzeroupper`) after faer's wide-vector
/// kernels: with them left dirty, the SSE-encoded scalar code that follows (activations,
/// softmax) runs several times slower on x86 (a state-transition penalty per instruction).
#[inline]
fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    {
        // `vzeroupper` only clears the upper register halves, which no live Rust value
        // occupies across this call (the caller is compiled without AVX).
        #[target_feature(enable = "avx")]
        fn zeroupper() {
            std::arch::x86_64::_mm256_zeroupper()
        }
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU supports AVX (checked above).
            unsafe { zeroupper() }
        }
    }
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            const NAME: &'static str = stringify!($t);
            #[inline]
            fn c(x: f64) -> Self {
                x as $t
            }
            #[inline]
            fn as_f64(self) -> f64 {
                self as f64
            }
            fn gemm(
                c: ArrayViewMut2<'_, Self>,
                a: ArrayView2<'_, Self>,
                b: ArrayView2<'_, Self>,
                alpha: Self,
                beta_one: bool,
            ) {
                let work = a.nrows() * a.ncols() * b.ncols();
                let par = if work >= PARALLEL_FLOPS {
                    faer::Par::rayon(0)
                } else {
                    faer::Par::Seq
                };
                gemm_with(c, a, b, alpha, beta_one, par);
            }
            fn gemm_seq(
                c: ArrayViewMut2<'_, Self>,
                a: ArrayView2<'_, Self>,
                b: ArrayView2<'_, Self>,
                alpha: Self,
                beta_one: bool,
            ) {
                gemm_with(c, a, b, alpha, beta_one, faer::Par::Seq);
            }
            fn thin_svd(
                a: ArrayView2<'_, Self>,
            ) -> Result<(Array2<Self>, Array1<Self>, Array2<Self>)> {
                use faer_ext::{IntoFaer, IntoNdarray};
                let m = a.into_faer();
                let svd = m.thin_svd().map_err(|e| Error::NotConverged {
                    method: format!("faer thin SVD ({e:?})"),
                    iterations: 0,
                    residual: f64::NAN,
                    tol: 0.0,
                })?;
                let u = svd.U().into_ndarray().to_owned();
                let v = svd.V().into_ndarray().to_owned();
                let s = Array1::from_iter(svd.S().column_vector().iter().copied());
                Ok((u, s, v))
            }
            fn sym_eigenvalues(a: ArrayView2<'_, Self>) -> Result<Array1<Self>> {
                use faer_ext::IntoFaer;
                let m = a.into_faer();
                let ev = m.self_adjoint_eigenvalues(faer::Side::Lower).map_err(|e| {
                    Error::NotConverged {
                        method: format!("faer self-adjoint eigenvalues ({e:?})"),
                        iterations: 0,
                        residual: f64::NAN,
                        tol: 0.0,
                    }
                })?;
                Ok(Array1::from(ev))
            }
            fn cholesky_lower(a: ArrayView2<'_, Self>) -> Result<Array2<Self>> {
                use faer_ext::{IntoFaer, IntoNdarray};
                let llt = a.into_faer().llt(faer::Side::Lower).map_err(|e| {
                    Error::param(
                        "matrix",
                        format!("{e:?}"),
                        "Cholesky needs a symmetric positive definite matrix",
                    )
                })?;
                Ok(llt.L().into_ndarray().to_owned())
            }
        }
    };
}
impl_real!(f32);
impl_real!(f64);

/// The vector operations the backend-generic solvers are written over (BLAS-1 plus the few
/// fused updates of the momentum methods). Implemented for [`Array1`] on the CPU; a device
/// backend implements it for its buffers, with one kernel per method.
///
/// The required methods are the BLAS-1 set; the fused ones have defaults written with them
/// (the same arithmetic, so the same rounding, in several passes: a backend overrides them
/// with one pass). [`Array1`] overrides every fused method with a single loop.
pub trait Vector<T: Real>: Sized + Clone {
    /// Number of entries.
    fn len(&self) -> usize;
    /// True if the vector has no entries.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Inner product ⟨self, other⟩.
    fn dot(&self, other: &Self) -> T;
    /// Euclidean norm.
    fn norm2(&self) -> T;
    /// ℓ1 norm.
    fn norm1(&self) -> T;
    /// ℓ∞ norm.
    fn norm_inf(&self) -> T;
    /// `self ← self + a·x`.
    fn axpy(&mut self, a: T, x: &Self);
    /// `self ← a·self`.
    fn scale(&mut self, a: T);
    /// `self ← x`.
    fn copy_from(&mut self, x: &Self);
    /// A zero vector of the same length (and device).
    fn zeros_like(&self) -> Self;
    /// A zero vector of length `len` on the same device.
    fn zeros_of_len(&self, len: usize) -> Self;
    /// Sets every entry to `a`.
    fn fill(&mut self, a: T);
    /// True if every entry is finite.
    fn all_finite(&self) -> bool;

    /// `self ← x + a·y`.
    fn set_axpy(&mut self, x: &Self, a: T, y: &Self) {
        self.copy_from(x);
        self.axpy(a, y);
    }
    /// `self ← x + a·self`.
    fn xpay(&mut self, x: &Self, a: T) {
        self.scale(a);
        self.axpy(T::one(), x);
    }
    /// The momentum update `self ← z + β(z − x)`.
    fn set_extrapolation(&mut self, z: &Self, x: &Self, beta: T) {
        self.copy_from(z);
        self.axpy(-T::one(), x);
        self.scale(beta);
        self.axpy(T::one(), z);
    }
    /// `⟨a − b, c − d⟩`.
    fn dot_of_differences(a: &Self, b: &Self, c: &Self, d: &Self) -> T {
        let mut u = a.clone();
        u.axpy(-T::one(), b);
        let mut v = c.clone();
        v.axpy(-T::one(), d);
        u.dot(&v)
    }
    /// `‖self/s − b‖`.
    fn norm_of_scaled_difference(&self, s: T, b: &Self) -> T {
        let mut u = self.clone();
        u.scale(T::one() / s);
        u.axpy(-T::one(), b);
        u.norm2()
    }
    /// `max_i |selfᵢ − xᵢ|` (not finite if any difference is not finite).
    fn max_abs_diff(&self, x: &Self) -> T {
        let mut u = self.clone();
        u.axpy(-T::one(), x);
        if u.all_finite() {
            u.norm_inf()
        } else {
            T::nan()
        }
    }
}

/// `max(acc, d)` that keeps a NaN once seen.
fn max_keep_nan<T: Real>(acc: T, d: T) -> T {
    if acc.is_nan() {
        acc
    } else if d > acc || d.is_nan() {
        d
    } else {
        acc
    }
}

impl<T: Real> Vector<T> for Array1<T> {
    fn len(&self) -> usize {
        Array1::len(self)
    }
    fn dot(&self, other: &Self) -> T {
        dot(self.view(), other.view())
    }
    fn norm2(&self) -> T {
        norm2(self.view())
    }
    fn norm1(&self) -> T {
        norm1(self.view())
    }
    fn norm_inf(&self) -> T {
        norm_inf(self.view())
    }
    fn axpy(&mut self, a: T, x: &Self) {
        axpy(self.view_mut(), a, x.view());
    }
    fn scale(&mut self, a: T) {
        self.mapv_inplace(|v| v * a);
    }
    fn copy_from(&mut self, x: &Self) {
        self.assign(x);
    }
    fn zeros_like(&self) -> Self {
        Array1::zeros(Array1::len(self))
    }
    fn zeros_of_len(&self, len: usize) -> Self {
        Array1::zeros(len)
    }
    fn fill(&mut self, a: T) {
        self.iter_mut().for_each(|v| *v = a);
    }
    fn all_finite(&self) -> bool {
        all_finite(self.view())
    }
    fn set_axpy(&mut self, x: &Self, a: T, y: &Self) {
        Zip::from(self)
            .and(x)
            .and(y)
            .for_each(|o, &x, &y| *o = x + a * y);
    }
    fn xpay(&mut self, x: &Self, a: T) {
        Zip::from(self).and(x).for_each(|o, &x| *o = x + a * *o);
    }
    fn set_extrapolation(&mut self, z: &Self, x: &Self, beta: T) {
        Zip::from(self)
            .and(z)
            .and(x)
            .for_each(|y, &z, &x| *y = z + beta * (z - x));
    }
    fn dot_of_differences(a: &Self, b: &Self, c: &Self, d: &Self) -> T {
        Zip::from(a)
            .and(b)
            .and(c)
            .and(d)
            .fold(T::zero(), |acc, &a, &b, &c, &d| acc + (a - b) * (c - d))
    }
    fn norm_of_scaled_difference(&self, s: T, b: &Self) -> T {
        Zip::from(self)
            .and(b)
            .fold(T::zero(), |acc, &x, &y| {
                let d = x / s - y;
                acc + d * d
            })
            .sqrt()
    }
    fn max_abs_diff(&self, x: &Self) -> T {
        Zip::from(self)
            .and(x)
            .fold(T::zero(), |acc, &a, &b| max_keep_nan(acc, (a - b).abs()))
    }
}

/// ⟨a, b⟩ (lengths must agree; checked in debug builds).
#[inline]
pub fn dot<T: Real>(a: ArrayView1<'_, T>, b: ArrayView1<'_, T>) -> T {
    debug_assert_eq!(a.len(), b.len());
    a.dot(&b)
}

/// `out ← A·x` for a row-major or column-major `A` with contiguous `x` and `out`, by the SIMD
/// kernels of [`dot_slices`] (rows: one dot per entry) or [`axpy_slices`] (columns: one axpy
/// per column, over blocks of rows): one pass over `A`, no copy. Blocks of rows go to the
/// rayon threads when `A` is large; every entry is summed in an order fixed by the shape, so
/// the result is the same bits for any thread count. Other layouts go to faer's GEMM.
pub fn gemv_into<T: Real>(
    mut out: ArrayViewMut1<'_, T>,
    a: ArrayView2<'_, T>,
    x: ArrayView1<'_, T>,
) {
    use rayon::prelude::*;
    let (m, n) = a.dim();
    debug_assert_eq!((out.len(), x.len()), (m, n));
    // Rows per task: about 256 KiB of A each.
    let rows_per_task = ((32 * 1024) / n.max(1)).max(8);
    let parallel = parallel_worth_it(m * n) && m * n >= 1 << 18;
    match (out.as_slice_mut(), x.as_slice()) {
        (Some(o), Some(xs)) if a.is_standard_layout() => {
            let src = a.as_slice().expect("standard layout");
            let task = |(blk, ob): (usize, &mut [T])| {
                for (k, oi) in ob.iter_mut().enumerate() {
                    let i = blk * rows_per_task + k;
                    *oi = dot_slices(&src[i * n..(i + 1) * n], xs);
                }
            };
            if parallel {
                o.par_chunks_mut(rows_per_task).enumerate().for_each(task);
            } else {
                o.chunks_mut(rows_per_task).enumerate().for_each(task);
            }
        }
        (Some(o), Some(xs)) if a.t().is_standard_layout() => {
            // Column j of A is row j of the standard-layout Aᵀ.
            let at = a.t();
            let src = at.as_slice().expect("standard layout");
            // Long axpys: blocks of 1024 entries of `out` (8 KiB in f64, in L1).
            let rows_per_task = 1024;
            let task = |(blk, ob): (usize, &mut [T])| {
                let r0 = blk * rows_per_task;
                ob.iter_mut().for_each(|v| *v = T::zero());
                for (j, &xj) in xs.iter().enumerate() {
                    if xj != T::zero() {
                        axpy_slices(ob, xj, &src[j * m + r0..j * m + r0 + ob.len()]);
                    }
                }
            };
            if parallel {
                o.par_chunks_mut(rows_per_task).enumerate().for_each(task);
            } else {
                o.chunks_mut(rows_per_task).enumerate().for_each(task);
            }
        }
        _ => T::gemm(
            out.view_mut().insert_axis(ndarray::Axis(1)),
            a,
            x.insert_axis(ndarray::Axis(1)),
            T::one(),
            false,
        ),
    }
}

/// Whether `work` multiply-adds are worth handing to the rayon pool: waking its threads costs
/// tens of microseconds, and with one thread only costs.
pub(crate) fn parallel_worth_it(work: usize) -> bool {
    rayon::current_num_threads() > 1 && work >= 1 << 16
}

/// Whether an elementwise sweep over `len` entries is worth splitting over the rayon threads:
/// a sweep is memory-bound and waking the pool costs tens of microseconds per call, which
/// measured slower on 256² and 512² images (five sweeps per PDHG iteration); only images of a
/// megapixel and more are split.
pub(crate) fn parallel_sweep_worth_it(len: usize) -> bool {
    rayon::current_num_threads() > 1 && len >= 1 << 20
}

/// The chunk length that splits `len` items into one chunk per rayon thread (at least 1).
pub(crate) fn chunk_per_thread(len: usize) -> usize {
    len.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

/// `Aᵀ` as a new row-major array (the columns of `A` become contiguous rows), copied in
/// 32×32 tiles so that both the reads and the writes stay in cache: several times faster than
/// `a.t().as_standard_layout()` on a row-major `A`.
pub fn transpose_owned<T: Real>(a: ArrayView2<'_, T>) -> Array2<T> {
    const B: usize = 32;
    let (m, n) = a.dim();
    let mut out = vec![T::zero(); m * n];
    match a.as_slice() {
        Some(src) if m > 0 && n > 0 => {
            // Blocks of B output rows (B columns of A) on the rayon threads.
            use rayon::prelude::*;
            out.par_chunks_mut(B * m)
                .enumerate()
                .for_each(|(blk, dst)| {
                    let j0 = blk * B;
                    let jn = dst.len() / m;
                    for i0 in (0..m).step_by(B) {
                        for i in i0..(i0 + B).min(m) {
                            let row = &src[i * n + j0..i * n + j0 + jn];
                            for (jj, &v) in row.iter().enumerate() {
                                dst[jj * m + i] = v;
                            }
                        }
                    }
                });
        }
        _ => {
            for ((i, j), &v) in a.indexed_iter() {
                out[j * m + i] = v;
            }
        }
    }
    Array2::from_shape_vec((n, m), out).expect("n·m entries")
}

/// `⟨a, b⟩` of two slices of equal length: sixteen partial sums with fused multiply-adds,
/// compiled for AVX2+FMA and chosen at run time where the CPU has them (the default target
/// of a Rust build is SSE2, half the width and no FMA). The summation order depends only on
/// the length, so the result is the same bits on every call (not on every CPU: the baseline
/// path rounds each product). The coordinate-descent kernels use it for `aⱼᵀr`.
#[inline]
pub fn dot_slices<T: Real>(a: &[T], b: &[T]) -> T {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { dot_fma(a, b) };
        }
    }
    dot_body::<T, false>(a, b)
}

/// `y ← y + α·x` on slices of equal length (AVX2+FMA where available, as [`dot_slices`]).
#[inline]
pub fn axpy_slices<T: Real>(y: &mut [T], alpha: T, x: &[T]) {
    debug_assert_eq!(y.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { axpy_fma(y, alpha, x) };
            return;
        }
    }
    axpy_body::<T, false>(y, alpha, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_fma<T: Real>(a: &[T], b: &[T]) -> T {
    dot_body::<T, true>(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_fma<T: Real>(y: &mut [T], alpha: T, x: &[T]) {
    axpy_body::<T, true>(y, alpha, x)
}

#[inline(always)]
/// `FMA`: fused multiply-adds (only where the hardware has them: software `fma` is slow).
fn dot_body<T: Real, const FMA: bool>(a: &[T], b: &[T]) -> T {
    const W: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [T::zero(); W];
    let (ca, cb) = (a.chunks_exact(W), b.chunks_exact(W));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..W {
            acc[k] = madd::<T, FMA>(x[k], y[k], acc[k]);
        }
    }
    let mut tail = T::zero();
    for (x, y) in ra.iter().zip(rb) {
        tail = madd::<T, FMA>(*x, *y, tail);
    }
    // Pairwise over the partial sums.
    let mut w = W;
    while w > 1 {
        w /= 2;
        for k in 0..w {
            let v = acc[k + w];
            acc[k] += v;
        }
    }
    acc[0] + tail
}

#[inline(always)]
fn axpy_body<T: Real, const FMA: bool>(y: &mut [T], alpha: T, x: &[T]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = madd::<T, FMA>(alpha, xi, *yi);
    }
}

/// `a·b + c`, fused if `FMA`.
#[inline(always)]
fn madd<T: Real, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Euclidean norm, computed without overflow for large entries: one pass summing the squares
/// (eight partial sums on contiguous data, which vectorizes); where that sum is not finite or
/// so small that a square may have underflowed (below `min_positive/ε`, so such terms change
/// it by at most a relative `ε`), the entries are rescaled by their largest magnitude first.
pub fn norm2<T: Real>(a: ArrayView1<'_, T>) -> T {
    let ss = sum_of_squares(a);
    if ss.is_finite() && ss >= T::min_positive_value() / T::epsilon() {
        return ss.sqrt();
    }
    norm2_scaled(a)
}

/// `Σ aᵢ²`, with eight partial sums on contiguous data.
fn sum_of_squares<T: Real>(a: ArrayView1<'_, T>) -> T {
    let Some(s) = a.as_slice() else {
        return a.iter().fold(T::zero(), |acc, &v| acc + v * v);
    };
    let mut acc = [T::zero(); 8];
    let chunks = s.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k] * c[k];
        }
    }
    let tail = rest.iter().fold(T::zero(), |acc, &v| acc + v * v);
    acc.iter().fold(tail, |t, &v| t + v)
}

/// [`norm2`] by rescaling with the largest magnitude (no overflow or underflow).
fn norm2_scaled<T: Real>(a: ArrayView1<'_, T>) -> T {
    let scale = norm_inf(a);
    if scale == T::zero() || !scale.is_finite() {
        return scale;
    }
    let s: T = a.iter().map(|&v| (v / scale) * (v / scale)).sum();
    scale * s.sqrt()
}

/// ℓ1 norm.
pub fn norm1<T: Real>(a: ArrayView1<'_, T>) -> T {
    a.iter().map(|v| v.abs()).sum()
}

/// ℓ∞ norm (0 for an empty vector; NaN if any entry is NaN).
pub fn norm_inf<T: Real>(a: ArrayView1<'_, T>) -> T {
    let mut m = T::zero();
    for &v in a.iter() {
        if v.is_nan() {
            return v;
        }
        m = m.max(v.abs());
    }
    m
}

/// `y ← y + a·x`.
#[inline]
pub fn axpy<T: Real>(y: ArrayViewMut1<'_, T>, a: T, x: ArrayView1<'_, T>) {
    Zip::from(y).and(x).for_each(|yi, &xi| *yi += a * xi);
}

/// Returns an error if `got != expected`.
pub fn check_len(context: &str, what: &str, expected: usize, got: usize) -> Result<()> {
    if expected != got {
        return Err(Error::shape(
            context,
            what,
            format!("length {expected}"),
            format!("length {got}"),
        ));
    }
    Ok(())
}

/// Returns an error naming the first NaN/Inf entry of `a`.
pub fn check_finite<T: Real>(what: &str, a: ArrayView1<'_, T>) -> Result<()> {
    for (i, &v) in a.iter().enumerate() {
        if !v.is_finite() {
            return Err(Error::NonFinite {
                what: what.to_string(),
                index: i,
                value: format!("{v}"),
            });
        }
    }
    Ok(())
}

/// [`check_finite`] with the description built only on failure (no allocation on hot paths).
pub fn check_finite_lazy<T: Real>(
    what: impl FnOnce() -> String,
    a: ArrayView1<'_, T>,
) -> Result<()> {
    if all_finite(a) {
        return Ok(());
    }
    check_finite(&what(), a)
}

/// True if every entry is finite: on contiguous data, blocks of 16 entries are tested without
/// an early exit inside a block, which vectorizes.
pub fn all_finite<T: Real>(a: ArrayView1<'_, T>) -> bool {
    match a.as_slice() {
        Some(s) => s
            .chunks(16)
            .all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite())),
        None => a.iter().all(|v| v.is_finite()),
    }
}

/// Returns an error unless `gamma` is finite and strictly positive.
pub fn check_positive<T: Real>(name: &str, gamma: T) -> Result<()> {
    if !(gamma > T::zero()) || !gamma.is_finite() {
        return Err(Error::param(
            name,
            gamma,
            "must be finite and > 0; pass a positive step/parameter",
        ));
    }
    Ok(())
}

/// Returns an error unless `x` is finite and ≥ 0.
pub fn check_nonnegative<T: Real>(name: &str, x: T) -> Result<()> {
    if !(x >= T::zero()) || !x.is_finite() {
        return Err(Error::param(name, x, "must be finite and >= 0"));
    }
    Ok(())
}

/// Solves `L Lᵀ x = b` in place (`b` becomes `x`) given the lower Cholesky factor `L`.
pub fn cholesky_solve_in_place<T: Real>(l: ArrayView2<'_, T>, mut b: ArrayViewMut1<'_, T>) {
    let n = l.nrows();
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[(i, k)] * b[k];
        }
        b[i] = s / l[(i, i)];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= l[(k, i)] * b[k];
        }
        b[i] = s / l[(i, i)];
    }
}

/// Seeded standard normal vector (used by power iteration and the test kit).
pub fn randn<T: Real>(n: usize, rng: &mut impl rand::Rng) -> Array1<T> {
    use rand_distr::{Distribution, StandardNormal};
    Array1::from_shape_fn(n, |_| {
        let v: f64 = StandardNormal.sample(rng);
        T::c(v)
    })
}

/// Checks that `a` is `rows × cols` and finite.
pub fn check_batch<T: Real>(
    context: &str,
    what: &str,
    rows: usize,
    cols: usize,
    a: ArrayView2<'_, T>,
) -> Result<()> {
    if a.nrows() != rows || a.ncols() != cols {
        return Err(Error::shape(
            context,
            what,
            format!("{rows} × {cols}"),
            format!("{} × {}", a.nrows(), a.ncols()),
        ));
    }
    if let Some((i, v)) = a.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: format!("{context}: {what}"),
            index: i,
            value: v.to_string(),
        });
    }
    Ok(())
}

/// The first non-finite entry of `a` in logical (row-major) order, `(index, value)`. Arrays are
/// scanned in memory order first (contiguous, vectorized: a column-major or n-dimensional array
/// read in logical order is strided and ~20× slower); the logical order is only walked to name
/// the entry when there is one.
pub fn first_non_finite<T: Real, S: ndarray::Data<Elem = T>, D: ndarray::Dimension>(
    a: &ndarray::ArrayBase<S, D>,
) -> Option<(usize, T)> {
    if let Some(sl) = a.as_slice_memory_order() {
        // Branch-free: v − v is 0 for finite v and NaN otherwise.
        #[allow(clippy::eq_op)] // deliberate: NaN for ±∞ and NaN, 0 otherwise
        let acc = sl.iter().fold(T::zero(), |acc, &v| acc + (v - v));
        if acc == T::zero() {
            return None;
        }
    }
    a.iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
        .map(|(i, &v)| (i, v))
}

/// The shape part of [`check_design`] (any storage of `A`): `(n, p)` non-empty, one finite target
/// per row.
pub(crate) fn check_design_dims<T: Real>(
    context: &str,
    (n, p): (usize, usize),
    targets: ArrayView1<'_, T>,
    what: &str,
) -> Result<()> {
    if n == 0 || p == 0 {
        return Err(Error::param(
            "A",
            format!("{n}x{p}"),
            "the design matrix must be non-empty",
        ));
    }
    check_len(context, what, n, targets.len())?;
    check_finite(
        &format!("{context} {}", what.split(' ').next().unwrap_or(what)),
        targets,
    )
}

/// Checks a design matrix `A` (n samples × p features) against its targets: non-empty, finite,
/// and one target per row (`what` names the targets in the message).
pub fn check_design<T: Real>(
    context: &str,
    a: ArrayView2<'_, T>,
    targets: ArrayView1<'_, T>,
    what: &str,
) -> Result<()> {
    check_design_dims(context, a.dim(), targets, what)?;
    if let Some((i, v)) = first_non_finite(&a) {
        return Err(Error::NonFinite {
            what: format!("{context} A"),
            index: i,
            value: format!("{v}"),
        });
    }
    Ok(())
}

/// Stopping rule of [`conjugate_gradient`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CgParams<T> {
    /// Stop when `‖b − Mx‖ ≤ tol` (absolute) or `≤ tol·‖b‖` (relative).
    pub tol: T,
    /// Whether `tol` is relative to `‖b‖`.
    pub relative: bool,
    /// Iteration cap.
    pub max_iters: usize,
    /// `true`: reaching `max_iters` above the tolerance is `Err(NotConverged)`; `false`: it is
    /// `Ok` with `converged = false` and the residual reached (an inexact solve whose accuracy
    /// the caller reports, as the bilevel oracle does).
    pub require_convergence: bool,
}

impl<T: Real> CgParams<T> {
    /// `‖b − Mx‖ ≤ tol·‖b‖` within `max_iters`, else an error.
    pub fn relative(tol: T, max_iters: usize) -> Self {
        Self {
            tol,
            relative: true,
            max_iters,
            require_convergence: true,
        }
    }
    /// `‖b − Mx‖ ≤ tol` or `max_iters`, whichever comes first (never an error at the cap).
    pub fn absolute(tol: T, max_iters: usize) -> Self {
        Self {
            tol,
            relative: false,
            max_iters,
            require_convergence: false,
        }
    }
}

/// What [`conjugate_gradient`] reached.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CgOutcome<T> {
    /// Iterations (operator applications after the initial residual).
    pub iterations: usize,
    /// Final absolute residual `‖b − Mx‖` (the recursively updated one).
    pub residual: T,
    /// Whether the tolerance was met.
    pub converged: bool,
}

/// A preconditioner `out ← P r` with `P ≈ M⁻¹` symmetric positive definite.
pub type Preconditioner<'a, T> = &'a dyn Fn(ArrayViewMut1<'_, T>, ArrayView1<'_, T>);

/// A preconditioner on a [`Vector`] type (see [`conjugate_gradient_on`]).
pub type VectorPreconditioner<'a, V> = &'a dyn Fn(&mut V, &V);

/// (Preconditioned) conjugate gradients for a symmetric positive definite operator given as a
/// closure `apply(out, v)` (`out ← M v`): solves `M x = b` from the initial guess in `x`.
/// The one CG of the workspace: the least-squares prox, ADMM and the bilevel oracle's
/// Hessian solves all call it.
///
/// With a preconditioner `P`: `z = P r`, `α = ⟨r, z⟩/⟨p, Mp⟩`, `β = ⟨r⁺, z⁺⟩/⟨r, z⟩`,
/// `p⁺ = z⁺ + βp`. The stopping test is on the true-system residual `‖r‖` either way. A zero
/// initial guess skips the first operator application. A non-positive curvature `⟨p, Mp⟩ ≤ 0`
/// (the operator is not positive definite) is `Err(NotConverged)` with the residual so far.
///
/// # References
/// M. R. Hestenes, E. Stiefel, "Methods of conjugate gradients for solving linear systems",
/// J. Res. Nat. Bur. Standards 49 (1952); Y. Saad, *Iterative Methods for Sparse Linear
/// Systems*, 2nd ed., SIAM 2003, Algorithm 9.1.
pub fn conjugate_gradient<T: Real>(
    apply: impl Fn(ArrayViewMut1<'_, T>, ArrayView1<'_, T>),
    preconditioner: Option<Preconditioner<'_, T>>,
    b: ArrayView1<'_, T>,
    mut x: ArrayViewMut1<'_, T>,
    params: &CgParams<T>,
) -> Result<CgOutcome<T>> {
    let mut xv = x.to_owned();
    let apply_v = |out: &mut Array1<T>, v: &Array1<T>| apply(out.view_mut(), v.view());
    let pc_v = preconditioner
        .map(|pc| move |out: &mut Array1<T>, r: &Array1<T>| pc(out.view_mut(), r.view()));
    let pc_ref: Option<VectorPreconditioner<'_, Array1<T>>> = pc_v
        .as_ref()
        .map(|f| f as VectorPreconditioner<'_, Array1<T>>);
    let out = conjugate_gradient_on(apply_v, pc_ref, &b.to_owned(), &mut xv, params);
    x.assign(&xv);
    out
}

/// [`conjugate_gradient`] on any [`Vector`] type: the algorithm written once over the
/// vector operations (`dot`, `axpy`, `scale`, `copy_from`), so a backend that implements
/// [`Vector`] for its buffers (device memory next) runs this same CG. The ndarray entry point
/// above calls it.
pub fn conjugate_gradient_on<T: Real, V: Vector<T>>(
    apply: impl Fn(&mut V, &V),
    preconditioner: Option<VectorPreconditioner<'_, V>>,
    b: &V,
    x: &mut V,
    params: &CgParams<T>,
) -> Result<CgOutcome<T>> {
    let mut r = b.zeros_like();
    if x.norm_inf() != T::zero() {
        apply(&mut r, x);
    }
    // r ← b − Mx (exactly bᵢ − (Mx)ᵢ).
    r.scale(-T::one());
    r.axpy(T::one(), b);
    let b_norm = b.norm2();
    let target = if params.relative {
        params.tol * b_norm.max(T::min_positive_value())
    } else {
        params.tol
    };
    let mut z = preconditioner.map(|pc| {
        let mut z = r.zeros_like();
        pc(&mut z, &r);
        z
    });
    let mut p = r.zeros_like();
    p.copy_from(z.as_ref().unwrap_or(&r));
    let mut mp = r.zeros_like();
    let mut rz = r.dot(z.as_ref().unwrap_or(&r));
    let residual_norm = |r: &V, rz: T| {
        if preconditioner.is_some() {
            r.dot(r).sqrt()
        } else {
            rz.sqrt()
        }
    };
    let mut rn = residual_norm(&r, rz);
    for it in 0..params.max_iters {
        if rn <= target {
            return Ok(CgOutcome {
                iterations: it,
                residual: rn,
                converged: true,
            });
        }
        apply(&mut mp, &p);
        let pmp = p.dot(&mp);
        if !(pmp > T::zero()) {
            return Err(Error::NotConverged {
                method: "conjugate gradient (operator not positive definite)".into(),
                iterations: it,
                residual: rn.as_f64(),
                tol: target.as_f64(),
            });
        }
        let alpha = rz / pmp;
        x.axpy(alpha, &p);
        r.axpy(-alpha, &mp);
        let rz_new = match (preconditioner, z.as_mut()) {
            (Some(pc), Some(z)) => {
                pc(z, &r);
                r.dot(z)
            }
            _ => r.dot(&r),
        };
        let beta = rz_new / rz;
        rz = rz_new;
        rn = residual_norm(&r, rz);
        // p ← z + βp.
        p.scale(beta);
        p.axpy(T::one(), z.as_ref().unwrap_or(&r));
    }
    let converged = rn <= target;
    if !converged && params.require_convergence {
        return Err(Error::NotConverged {
            method: "conjugate gradient".into(),
            iterations: params.max_iters,
            residual: (if params.relative {
                rn / b_norm.max(T::min_positive_value())
            } else {
                rn
            })
            .as_f64(),
            tol: params.tol.as_f64(),
        });
    }
    Ok(CgOutcome {
        iterations: params.max_iters,
        residual: rn,
        converged,
    })
}

/// The logistic function `1/(1 + e^{−z})` without overflow for large `|z|`: the one sigmoid of
/// the workspace (logistic losses, the logistic solvers, the sigmoid and softplus activations).
#[inline]
pub fn sigmoid<T: Real>(z: T) -> T {
    if z >= T::zero() {
        T::one() / (T::one() + (-z).exp())
    } else {
        let e = z.exp();
        e / (T::one() + e)
    }
}

/// `log(1 + e^z)` without overflow.
#[inline]
pub fn log1pexp<T: Real>(z: T) -> T {
    if z > T::zero() {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// Softplus with sharpness `β > 0`, `s(t) = log(1 + e^{βt})/β`, and its first two derivatives
/// `(s, s', s'') = (s, σ(βt), βσ(βt)(1 − σ(βt)))`, with one `exp` and one `ln_1p`.
#[inline]
pub fn softplus_derivs<T: Real>(t: T, beta: T) -> (T, T, T) {
    let bt = beta * t;
    let e = (-bt.abs()).exp();
    let inv = T::one() / (T::one() + e);
    let sig = if bt >= T::zero() { inv } else { e * inv };
    let s = t.max(T::zero()) + e.ln_1p() / beta;
    (s, sig, beta * sig * (T::one() - sig))
}

/// Writes the softmax of `z` into `p` and returns `log Σ_j e^{z_j}` (the maximum is subtracted
/// first, so any finite scores are safe): the one softmax of the workspace (multinomial
/// logistic regression, the classification losses).
pub fn log_softmax_into<T: Real>(z: ArrayView1<'_, T>, mut p: ArrayViewMut1<'_, T>) -> T {
    let m = z.iter().fold(T::neg_infinity(), |a, &v| a.max(v));
    let mut s = T::zero();
    for (pv, &zv) in p.iter_mut().zip(z) {
        *pv = (zv - m).exp();
        s += *pv;
    }
    p.mapv_inplace(|v| v / s);
    m + s.ln()
}

#[cfg(test)]
mod tests {
    /// The first non-finite entry in logical order, whatever the memory order (the fast scan
    /// runs in memory order; the reported index must not).
    #[test]
    fn first_non_finite_names_the_logical_index() {
        use ndarray::ShapeBuilder;
        let mut f = ndarray::Array2::<f64>::zeros((3, 4).f());
        assert_eq!(first_non_finite(&f), None);
        f[(2, 0)] = f64::INFINITY; // memory position 2, logical 8
        f[(0, 3)] = f64::NAN; // memory position 9, logical 3
        let (i, v) = first_non_finite(&f).unwrap();
        assert_eq!(i, 3);
        assert!(v.is_nan());
        let mut c = ndarray::Array2::<f32>::ones((2, 2));
        c[(1, 1)] = f32::NEG_INFINITY;
        assert_eq!(first_non_finite(&c), Some((3, f32::NEG_INFINITY)));
        assert_eq!(first_non_finite(&c.slice(ndarray::s![.., 0])), None);
        let big = ndarray::Array1::from(vec![f64::MAX, -f64::MAX]);
        assert_eq!(first_non_finite(&big), None);
    }

    use super::*;
    use ndarray::array;

    use crate::testing::HostVector as Plain;

    #[test]
    fn cg_runs_on_any_vector_type_with_the_same_iterates() {
        let m = array![[4.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 2.0]];
        let b = array![1.0, -2.0, 0.5];
        let params = CgParams::relative(1e-12, 50);
        let mut x = Array1::from(vec![0.3, 0.0, -0.1]);
        let nd = conjugate_gradient(
            |mut out, v| out.assign(&m.dot(&v)),
            None,
            b.view(),
            x.view_mut(),
            &params,
        )
        .unwrap();
        let apply = |out: &mut Plain<f64>, v: &Plain<f64>| {
            out.0 = m.dot(&Array1::from(v.0.clone())).to_vec();
        };
        let mut xp = Plain(vec![0.3, 0.0, -0.1]);
        let pl = conjugate_gradient_on(apply, None, &Plain(b.to_vec()), &mut xp, &params).unwrap();
        assert_eq!(nd, pl);
        assert_eq!(x.to_vec(), xp.0, "same operations, same rounding");
        assert!((&m.dot(&x) - &b).iter().all(|r| r.abs() < 1e-10));
    }

    #[test]
    fn gemm_matches_naive_both_precisions() {
        let a = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let b = array![[1.0, 0.5], [-1.0, 2.0], [0.0, 3.0]];
        let mut c = Array2::<f64>::ones((2, 2));
        f64::gemm(c.view_mut(), a.view(), b.view(), 2.0, true);
        let exact = a.dot(&b) * 2.0 + 1.0;
        assert!((&c - &exact).iter().all(|v| v.abs() < 1e-12));
        let a32 = a.mapv(|v| v as f32);
        let b32 = b.mapv(|v| v as f32);
        let mut c32 = Array2::<f32>::zeros((3, 3));
        f32::gemm(c32.view_mut(), a32.t(), b32.t(), 1.0, false);
        let exact32 = a32.t().dot(&b32.t());
        assert!((&c32 - &exact32).iter().all(|v| v.abs() < 1e-5));
    }

    #[test]
    fn svd_reconstructs() {
        let a = array![
            [3.0, 1.0, 0.0],
            [1.0, 2.0, 1.0],
            [0.0, 1.0, 4.0],
            [1.0, 0.0, 1.0]
        ];
        let (u, s, v) = f64::thin_svd(a.view()).unwrap();
        let us = &u * &s;
        let rec = us.dot(&v.t());
        assert!((&rec - &a).iter().all(|x| x.abs() < 1e-12));
        assert!(s[0] >= s[1] && s[1] >= s[2]);
    }

    #[test]
    fn norms_and_checks() {
        let x = array![3.0, -4.0];
        assert_eq!(norm2(x.view()), 5.0);
        assert_eq!(norm1(x.view()), 7.0);
        assert_eq!(norm_inf(x.view()), 4.0);
        let big = array![1e200, 1e200];
        assert!((norm2(big.view()) / 1e200 - 2f64.sqrt()).abs() < 1e-15);
        // Underflowing squares take the rescaled path; a long vector the one-pass sum.
        let tiny: Array1<f64> = array![3e-200, -4e-200];
        assert!((norm2(tiny.view()) / 5e-200 - 1.0).abs() < 1e-15);
        let long = Array1::from_shape_fn(1001, |i| ((i * 37 % 101) as f64 - 50.0) / 7.0);
        let exact = long.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm2(long.view()) - exact).abs() < 1e-13 * exact);
        assert!((norm2(long.view()) - norm2_scaled(long.view())).abs() < 1e-13 * exact);
        assert!(norm2(array![1.0, f64::NAN].view()).is_nan());
        assert!(norm2(array![1.0, f64::INFINITY].view()).is_infinite());
        assert!(all_finite(long.view()) && !all_finite(array![0.0, f64::NAN].view()));
        assert!(check_finite("x", array![1.0, f64::NAN].view()).is_err());
        assert!(check_len("op", "x", 3, 2).is_err());
        assert!(check_positive("gamma", 0.0f64).is_err());
        let mut v = array![1.0, 2.0];
        Vector::axpy(&mut v, 2.0, &array![1.0, 1.0]);
        assert_eq!(v, array![3.0, 4.0]);
    }
}
