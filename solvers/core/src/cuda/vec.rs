//! [`GpuVec`]: a vector in device memory, with the [`Vector`] operations as kernels.

use super::{fatal, launch, max_partials, sum_partials, Gpu, GpuReal};
use crate::error::{Error, Result};
use crate::linalg::Vector;
use cudarc::driver::CudaSlice;
use ndarray::Array1;

/// A vector of `T` (`f32` or `f64`) in the memory of one GPU. The solvers of the core run on
/// it through [`Vector`]; only [`GpuVec::to_vec`] (and the scalars of inner products and
/// norms) come back to the host.
pub struct GpuVec<T: GpuReal> {
    buf: CudaSlice<T>,
    len: usize,
    gpu: Gpu,
}

impl<T: GpuReal> GpuVec<T> {
    /// `buf` holds at least `len` numbers (allocations hold at least one).
    pub(crate) fn from_parts(buf: CudaSlice<T>, len: usize, gpu: Gpu) -> Self {
        debug_assert!(buf.len() >= len);
        Self { buf, len, gpu }
    }

    /// The device it lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Copies it to the host.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let mut host = vec![T::zero(); self.len];
        if self.len > 0 {
            self.gpu
                .stream()
                .memcpy_dtoh(&self.buf.slice(0..self.len), &mut host[..])
                .map_err(|e| Error::Device(format!("CUDA error in download: {e:?}")))?;
        }
        Ok(host)
    }

    /// Copies it to the host as an ndarray vector.
    pub fn to_array(&self) -> Result<Array1<T>> {
        self.to_vec().map(Array1::from)
    }

    /// Overwrites it with `x` (same length).
    pub fn upload_from(&mut self, x: &[T]) -> Result<()> {
        crate::linalg::check_len("GpuVec::upload_from", "x", self.len, x.len())?;
        if x.is_empty() {
            return Ok(());
        }
        let mut view = self.buf.slice_mut(0..self.len);
        self.gpu
            .stream()
            .memcpy_htod(x, &mut view)
            .map_err(|e| Error::Device(format!("CUDA error in upload: {e:?}")))
    }

    pub(crate) fn buf(&self) -> &CudaSlice<T> {
        &self.buf
    }

    pub(crate) fn buf_mut(&mut self) -> &mut CudaSlice<T> {
        &mut self.buf
    }

    pub(crate) fn into_buf(self) -> CudaSlice<T> {
        self.buf
    }

    pub(crate) fn len_(&self) -> usize {
        self.len
    }

    pub(crate) fn n(&self) -> i64 {
        self.len as i64
    }

    /// Checks that `x` has this vector's length and device (a programming error otherwise,
    /// like a length mismatch in ndarray's `zip`).
    #[track_caller]
    pub(crate) fn same_shape(&self, x: &Self) {
        assert_eq!(self.len, x.len, "GpuVec length mismatch");
        assert!(self.gpu.same(&x.gpu), "GpuVecs on different devices");
    }

    /// Sum over the threads of the one-partial-per-thread reduction `name` with arguments
    /// `(n, x, [y,] partial)`.
    fn reduce1(&self, name: &str, y: Option<&Self>, max: bool) -> T {
        let g = &self.gpu;
        let n = self.n();
        let cfg = g.red_cfg();
        let parts = fatal(g.reduce::<T>(1, |p| match y {
            Some(y) => launch!(g, T, name, cfg; &n, &self.buf, &y.buf, p),
            None => launch!(g, T, name, cfg; &n, &self.buf, p),
        }));
        if max {
            max_partials(&parts)
        } else {
            sum_partials(&parts)
        }
    }
}

impl<T: GpuReal> Clone for GpuVec<T> {
    fn clone(&self) -> Self {
        let buf = fatal(
            self.gpu
                .stream()
                .clone_dtod(&self.buf)
                .map_err(|e| Error::Device(format!("CUDA error in clone: {e:?}"))),
        );
        Self {
            buf,
            len: self.len,
            gpu: self.gpu.clone(),
        }
    }
}

impl<T: GpuReal> std::fmt::Debug for GpuVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuVec(len {} on {:?})", self.len, self.gpu)
    }
}

impl<T: GpuReal> Vector<T> for GpuVec<T> {
    fn len(&self) -> usize {
        self.len
    }
    fn dot(&self, other: &Self) -> T {
        self.same_shape(other);
        self.reduce1("dot", Some(other), false)
    }
    fn norm2(&self) -> T {
        self.dot(self).sqrt()
    }
    fn norm1(&self) -> T {
        self.reduce1("asum", None, false)
    }
    fn norm_inf(&self) -> T {
        self.reduce1("amax", None, true)
    }
    fn axpy(&mut self, a: T, x: &Self) {
        self.same_shape(x);
        let (g, n) = (self.gpu.clone(), self.n());
        fatal(launch!(&g, T, "axpy", g.cfg(self.len); &n, &mut self.buf, &a, &x.buf));
    }
    fn scale(&mut self, a: T) {
        let (g, n) = (self.gpu.clone(), self.n());
        fatal(launch!(&g, T, "scale", g.cfg(self.len); &n, &mut self.buf, &a));
    }
    fn copy_from(&mut self, x: &Self) {
        self.same_shape(x);
        if self.len == 0 {
            return;
        }
        let src = x.buf.slice(0..x.len);
        let mut dst = self.buf.slice_mut(0..self.len);
        fatal(
            self.gpu
                .stream()
                .memcpy_dtod(&src, &mut dst)
                .map_err(|e| Error::Device(format!("CUDA error in copy: {e:?}"))),
        );
    }
    fn zeros_like(&self) -> Self {
        self.zeros_of_len(self.len)
    }
    fn zeros_of_len(&self, len: usize) -> Self {
        let buf = fatal(self.gpu.alloc::<T>(len));
        Self {
            buf,
            len,
            gpu: self.gpu.clone(),
        }
    }
    fn fill(&mut self, a: T) {
        let (g, n) = (self.gpu.clone(), self.n());
        fatal(launch!(&g, T, "fill", g.cfg(self.len); &n, &mut self.buf, &a));
    }
    fn all_finite(&self) -> bool {
        self.reduce1("nonfinite", None, false) == T::zero()
    }
    fn set_axpy(&mut self, x: &Self, a: T, y: &Self) {
        self.same_shape(x);
        self.same_shape(y);
        let (g, n) = (self.gpu.clone(), self.n());
        fatal(launch!(&g, T, "set_axpy", g.cfg(self.len); &n, &mut self.buf, &x.buf, &a, &y.buf));
    }
    fn xpay(&mut self, x: &Self, a: T) {
        self.same_shape(x);
        let (g, n) = (self.gpu.clone(), self.n());
        fatal(launch!(&g, T, "xpay", g.cfg(self.len); &n, &mut self.buf, &x.buf, &a));
    }
    fn set_extrapolation(&mut self, z: &Self, x: &Self, beta: T) {
        self.same_shape(z);
        self.same_shape(x);
        let (g, n) = (self.gpu.clone(), self.n());
        fatal(launch!(&g, T, "extrap", g.cfg(self.len); &n, &mut self.buf, &z.buf, &x.buf, &beta));
    }
    fn dot_of_differences(a: &Self, b: &Self, c: &Self, d: &Self) -> T {
        a.same_shape(b);
        a.same_shape(c);
        a.same_shape(d);
        let g = &a.gpu;
        let n = a.n();
        let cfg = g.red_cfg();
        sum_partials(&fatal(g.reduce::<T>(
            1,
            |p| launch!(g, T, "diffdot", cfg; &n, &a.buf, &b.buf, &c.buf, &d.buf, p),
        )))
    }
    fn norm_of_scaled_difference(&self, s: T, b: &Self) -> T {
        self.same_shape(b);
        let g = &self.gpu;
        let n = self.n();
        let cfg = g.red_cfg();
        sum_partials(&fatal(g.reduce::<T>(
            1,
            |p| launch!(g, T, "scaled_diff_sq", cfg; &n, &self.buf, &s, &b.buf, p),
        )))
        .sqrt()
    }
    fn max_abs_diff(&self, x: &Self) -> T {
        self.same_shape(x);
        self.reduce1("maxdiff", Some(x), true)
    }
}
