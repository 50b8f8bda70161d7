//! 2-D convolution (blur) with zero, symmetric-reflect or periodic boundary; direct summation
//! for small kernels, FFT (rustfft) for large ones.

use super::LinearOperator;
use crate::error::{Error, Result};
use crate::linalg::Real;
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut1};
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftNum, FftPlanner};
use std::sync::{Arc, Mutex};

/// How the image is extended beyond its border.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Boundary {
    /// Zeros outside the image.
    Zero,
    /// Symmetric (half-sample) reflection: `… c b a | a b c … x y z | z y x …`.
    Reflect,
    /// Periodic wrap-around.
    Periodic,
}

/// How the convolution is computed (both give the same operator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvMethod {
    /// Direct summation for kernels with at most 81 taps (9 × 9), FFT above.
    Auto,
    /// Direct summation: `O(h·w·kh·kw)`.
    Direct,
    /// FFT of the padded image: `O(H·W·log(H·W))`, `H = h + kh − 1`, `W = w + kw − 1`.
    Fft,
}

/// "Same"-size 2-D convolution `y = k ∗ E(x)` of a row-major `h × w` image with a `kh × kw`
/// kernel, where `E` extends the image according to [`Boundary`]:
///
/// `y[i, j] = Σ_{a,b} k[a, b] · E(x)[i − a + ⌊kh/2⌋, j − b + ⌊kw/2⌋]`.
///
/// It is written as `A = C ∘ P` with `P` the padding (extension) map and `C` the "valid"
/// convolution, so the adjoint is `Pᵀ ∘ Cᵀ` (correlation followed by folding the padding back).
pub struct Conv2d<T: Real + FftNum> {
    h: usize,
    w: usize,
    kernel: Array2<T>,
    boundary: Boundary,
    use_fft: bool,
    rows: Vec<Option<usize>>,
    cols: Vec<Option<usize>>,
    fft: Option<FftPlan<T>>,
    scratch: Mutex<Vec<T>>,
}

/// Work buffers of the FFT path: the padded spectrum and a transpose buffer.
type FftBuffers<T> = (Vec<Complex<T>>, Vec<Complex<T>>);

struct FftPlan<T: FftNum> {
    fwd_r: Arc<dyn Fft<T>>,
    inv_r: Arc<dyn Fft<T>>,
    fwd_c: Arc<dyn Fft<T>>,
    inv_c: Arc<dyn Fft<T>>,
    /// Spectrum of the kernel zero-padded to `H × W` (row-major).
    khat: Vec<Complex<T>>,
    buf: Mutex<FftBuffers<T>>,
}

fn source_index(e: isize, n: usize, b: Boundary) -> Option<usize> {
    let n_i = n as isize;
    match b {
        Boundary::Zero => (0..n_i).contains(&e).then_some(e as usize),
        Boundary::Periodic => Some(e.rem_euclid(n_i) as usize),
        Boundary::Reflect => {
            let r = e.rem_euclid(2 * n_i);
            Some(if r < n_i { r } else { 2 * n_i - 1 - r } as usize)
        }
    }
}

/// The inverse of an extension map (`map[p]` = the image index that extended index `p` reads,
/// `-1` for a zero), for `n` image indices: `(offsets, entries)` with the extended indices
/// reading image index `s` in `entries[offsets[s]..offsets[s + 1]]` (increasing). The adjoint
/// of a convolution gathers through it (the GPU backend's `conv2d_adj`).
pub fn invert_extension(map: &[i64], n: usize) -> (Vec<i64>, Vec<i64>) {
    let mut count = vec![0i64; n + 1];
    for &s in map.iter().filter(|&&s| s >= 0) {
        count[s as usize + 1] += 1;
    }
    for s in 0..n {
        count[s + 1] += count[s];
    }
    let mut next = count.clone();
    let mut entries = vec![0i64; count[n] as usize];
    for (p, &s) in map.iter().enumerate() {
        if s >= 0 {
            entries[next[s as usize] as usize] = p as i64;
            next[s as usize] += 1;
        }
    }
    (count, entries)
}

impl<T: Real + FftNum> Conv2d<T> {
    /// The extension maps: for each extended row `p ∈ 0..h+kh−1` (column `q ∈ 0..w+kw−1`) the
    /// image row (column) it reads, `-1` for a zero; `y[i, j] = Σ_{a,b} k[a, b]·x[rows[i+kh−1−a],
    /// cols[j+kw−1−b]]`.
    pub fn extension_maps(&self) -> (Vec<i64>, Vec<i64>) {
        let f = |m: &[Option<usize>]| m.iter().map(|s| s.map_or(-1, |v| v as i64)).collect();
        (f(&self.rows), f(&self.cols))
    }

    /// The image shape `(h, w)`.
    pub fn image_shape(&self) -> (usize, usize) {
        (self.h, self.w)
    }

    /// Convolution of `h × w` images with `kernel`, with the given boundary and method.
    pub fn new(
        h: usize,
        w: usize,
        kernel: Array2<T>,
        boundary: Boundary,
        method: ConvMethod,
    ) -> Result<Self> {
        let (kh, kw) = kernel.dim();
        if h == 0 || w == 0 || kh == 0 || kw == 0 {
            return Err(Error::param(
                "shape",
                format!("image {h}x{w}, kernel {kh}x{kw}"),
                "image and kernel must be non-empty",
            ));
        }
        if let Some((i, v)) = kernel.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "Conv2d kernel".into(),
                index: i,
                value: format!("{v}"),
            });
        }
        let (ch, cw) = (kh / 2, kw / 2);
        let (top, left) = ((kh - 1 - ch) as isize, (kw - 1 - cw) as isize);
        let rows = (0..h + kh - 1)
            .map(|p| source_index(p as isize - top, h, boundary))
            .collect();
        let cols = (0..w + kw - 1)
            .map(|p| source_index(p as isize - left, w, boundary))
            .collect();
        let use_fft = match method {
            ConvMethod::Direct => false,
            ConvMethod::Fft => true,
            ConvMethod::Auto => kh * kw > 81,
        };
        let (hp, wp) = (h + kh - 1, w + kw - 1);
        let fft = use_fft.then(|| {
            let mut planner = FftPlanner::<T>::new();
            let fwd_r = planner.plan_fft_forward(wp);
            let inv_r = planner.plan_fft_inverse(wp);
            let fwd_c = planner.plan_fft_forward(hp);
            let inv_c = planner.plan_fft_inverse(hp);
            let mut khat = vec![Complex::new(T::zero(), T::zero()); hp * wp];
            for ((a, b), &v) in kernel.indexed_iter() {
                khat[a * wp + b] = Complex::new(v, T::zero());
            }
            let mut tr = vec![Complex::new(T::zero(), T::zero()); hp * wp];
            fft2(&mut khat, &mut tr, hp, wp, &*fwd_r, &*fwd_c);
            FftPlan {
                fwd_r,
                inv_r,
                fwd_c,
                inv_c,
                khat,
                buf: Mutex::new((Vec::new(), Vec::new())),
            }
        });
        Ok(Self {
            h,
            w,
            kernel,
            boundary,
            use_fft,
            rows,
            cols,
            fft,
            scratch: Mutex::new(Vec::new()),
        })
    }

    /// Normalized Gaussian blur kernel of standard deviation `sigma` (pixels), size `size × size`.
    pub fn gaussian_kernel(size: usize, sigma: f64) -> Result<Array2<T>> {
        if size == 0 || !(sigma > 0.0) {
            return Err(Error::param(
                "gaussian kernel",
                format!("size {size}, sigma {sigma}"),
                "size must be >= 1 and sigma > 0",
            ));
        }
        let c = (size as f64 - 1.0) / 2.0;
        let mut k = Array2::from_shape_fn((size, size), |(a, b)| {
            let (da, db) = (a as f64 - c, b as f64 - c);
            (-(da * da + db * db) / (2.0 * sigma * sigma)).exp()
        });
        let s = k.sum();
        k.mapv_inplace(|v| v / s);
        Ok(k.mapv(T::c))
    }

    /// The kernel.
    pub fn kernel(&self) -> ArrayView2<'_, T> {
        self.kernel.view()
    }
    /// The boundary handling.
    pub fn boundary(&self) -> Boundary {
        self.boundary
    }
    /// True if the FFT path is used.
    pub fn uses_fft(&self) -> bool {
        self.use_fft
    }

    fn padded_dims(&self) -> (usize, usize) {
        let (kh, kw) = self.kernel.dim();
        (self.h + kh - 1, self.w + kw - 1)
    }

    /// `xp ← P x` (row by row through the row and column maps, on slices).
    fn pad(&self, xp: &mut [T], x: ArrayView1<'_, T>) {
        let (_, wp) = self.padded_dims();
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        for (pi, r) in self.rows.iter().enumerate() {
            let row = &mut xp[pi * wp..(pi + 1) * wp];
            match r {
                None => row.fill(T::zero()),
                Some(r) => {
                    let src = &xs[r * self.w..(r + 1) * self.w];
                    for (o, c) in row.iter_mut().zip(&self.cols) {
                        *o = c.map_or(T::zero(), |c| src[c]);
                    }
                }
            }
        }
    }

    /// `out ← Pᵀ zp` (each padded entry added back to the pixel it copies).
    fn unpad(&self, out: ArrayViewMut1<'_, T>, zp: &[T]) {
        let (_, wp) = self.padded_dims();
        let w = self.w;
        super::grad::with_slices(out, ArrayView1::from(&zp[..0]), |o, _| {
            o.fill(T::zero());
            for (pi, r) in self.rows.iter().enumerate() {
                if let Some(r) = r {
                    let dst = &mut o[r * w..(r + 1) * w];
                    let src = &zp[pi * wp..(pi + 1) * wp];
                    for (&v, c) in src.iter().zip(&self.cols) {
                        if let Some(c) = c {
                            dst[*c] += v;
                        }
                    }
                }
            }
        });
    }

    /// Valid convolution by direct summation, written as one contiguous multiply-add per
    /// kernel tap and output row (`out_i += k[a, b]·xp[i + kh − 1 − a, kw − 1 − b ..]`), which
    /// vectorizes; the taps are added in the same order for every pixel.
    fn valid_direct(&self, out: ArrayViewMut1<'_, T>, xp: &[T]) {
        let (kh, kw) = self.kernel.dim();
        let (_, wp) = self.padded_dims();
        let (h, w) = (self.h, self.w);
        let k = self.kernel.as_standard_layout();
        let k = k.as_slice().expect("standard layout");
        super::grad::with_slices(out, ArrayView1::from(xp), |o, xp| {
            for (i, orow) in o.chunks_mut(w).enumerate().take(h) {
                orow.fill(T::zero());
                for a in 0..kh {
                    let r0 = (i + kh - 1 - a) * wp;
                    for b in 0..kw {
                        let kv = k[a * kw + b];
                        let src = &xp[r0 + kw - 1 - b..r0 + kw - 1 - b + w];
                        for (o, &v) in orow.iter_mut().zip(src) {
                            *o += kv * v;
                        }
                    }
                }
            }
        });
    }

    /// The adjoint of [`Self::valid_direct`]: each output row scattered back tap by tap, one
    /// contiguous multiply-add each.
    fn valid_direct_adjoint(&self, zp: &mut [T], y: ArrayView1<'_, T>) {
        let (kh, kw) = self.kernel.dim();
        let (_, wp) = self.padded_dims();
        let w = self.w;
        zp.fill(T::zero());
        let k = self.kernel.as_standard_layout();
        let k = k.as_slice().expect("standard layout");
        let ys = y.as_standard_layout();
        let ys = ys.as_slice().expect("standard layout");
        for (i, yrow) in ys.chunks(w).enumerate().take(self.h) {
            for a in 0..kh {
                let r0 = (i + kh - 1 - a) * wp;
                for b in 0..kw {
                    let kv = k[a * kw + b];
                    let dst = &mut zp[r0 + kw - 1 - b..r0 + kw - 1 - b + w];
                    for (z, &v) in dst.iter_mut().zip(yrow) {
                        *z += kv * v;
                    }
                }
            }
        }
    }

    /// Valid convolution (or its adjoint when `adjoint`) by FFT, in place on the padded buffer.
    fn valid_fft(&self, xp: &mut [T], adjoint: bool) {
        let plan = self.fft.as_ref().expect("fft plan");
        let (hp, wp) = self.padded_dims();
        let (kh, kw) = self.kernel.dim();
        let mut guard = plan.buf.lock().unwrap_or_else(|e| e.into_inner());
        let (buf, tr) = &mut *guard;
        buf.resize(hp * wp, Complex::new(T::zero(), T::zero()));
        tr.resize(hp * wp, Complex::new(T::zero(), T::zero()));
        if adjoint {
            // Embed y (stored in the top-left h × w block of xp) at offset (kh-1, kw-1).
            buf.fill(Complex::new(T::zero(), T::zero()));
            for i in 0..self.h {
                for j in 0..self.w {
                    buf[(i + kh - 1) * wp + j + kw - 1] =
                        Complex::new(xp[i * self.w + j], T::zero());
                }
            }
        } else {
            for (b, &v) in buf.iter_mut().zip(xp.iter()) {
                *b = Complex::new(v, T::zero());
            }
        }
        fft2(buf, tr, hp, wp, &*plan.fwd_r, &*plan.fwd_c);
        for (b, kh_) in buf.iter_mut().zip(&plan.khat) {
            *b = if adjoint { *b * kh_.conj() } else { *b * kh_ };
        }
        fft2(buf, tr, hp, wp, &*plan.inv_r, &*plan.inv_c);
        let scale = T::one() / T::c((hp * wp) as f64);
        if adjoint {
            for (x, b) in xp.iter_mut().zip(buf.iter()) {
                *x = b.re * scale;
            }
        } else {
            for i in 0..self.h {
                for j in 0..self.w {
                    xp[i * self.w + j] = buf[(i + kh - 1) * wp + j + kw - 1].re * scale;
                }
            }
        }
    }
}

/// In-place 2-D FFT of a row-major `hp × wp` buffer (rows, then columns via a transpose).
fn fft2<T: FftNum>(
    buf: &mut [Complex<T>],
    tr: &mut [Complex<T>],
    hp: usize,
    wp: usize,
    fr: &dyn Fft<T>,
    fc: &dyn Fft<T>,
) {
    fr.process(buf);
    for i in 0..hp {
        for j in 0..wp {
            tr[j * hp + i] = buf[i * wp + j];
        }
    }
    fc.process(tr);
    for i in 0..hp {
        for j in 0..wp {
            buf[i * wp + j] = tr[j * hp + i];
        }
    }
}

impl<T: Real + FftNum> LinearOperator<T> for Conv2d<T> {
    fn shape(&self) -> (usize, usize) {
        (self.h * self.w, self.h * self.w)
    }
    fn name(&self) -> String {
        let (kh, kw) = self.kernel.dim();
        format!(
            "Conv2d({}x{}, kernel {kh}x{kw}, {:?}, {})",
            self.h,
            self.w,
            self.boundary,
            if self.use_fft { "fft" } else { "direct" }
        )
    }
    fn apply_unchecked(&self, mut out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        let (hp, wp) = self.padded_dims();
        let mut xp = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        xp.resize(hp * wp, T::zero());
        self.pad(&mut xp, x);
        if self.use_fft {
            self.valid_fft(&mut xp, false);
            out.assign(&ArrayView1::from(&xp[..self.h * self.w]));
        } else {
            self.valid_direct(out, &xp);
        }
    }
    fn adjoint_unchecked(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        let (hp, wp) = self.padded_dims();
        let mut zp = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        zp.resize(hp * wp, T::zero());
        if self.use_fft {
            for (z, &v) in zp.iter_mut().zip(y.iter()) {
                *z = v;
            }
            self.valid_fft(&mut zp, true);
        } else {
            self.valid_direct_adjoint(&mut zp, y);
        }
        self.unpad(out, &zp);
    }
}
