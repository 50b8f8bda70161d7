//! "Valid" 2-D correlation (no padding): the filter responses of fields of experts and
//! convolutional analysis priors, with the gradient in the kernel for learning it.

use super::LinearOperator;
use crate::error::{Error, Result};
use crate::linalg::Real;
use ndarray::{Array2, ArrayView1, ArrayViewMut1};

/// `u = k ⋆ x`: `u[p, q] = Σ_{a,b} k[a, b]·x[p + a, q + b]` for a row-major `h × w` image and a
/// `kh × kw` kernel; `u` is `(h − kh + 1) × (w − kw + 1)`. Without padding `‖K‖ ≤ ‖k‖₁`
/// exactly (each output reads `kh·kw` distinct inputs, Young's inequality).
///
/// The kernel-free methods ([`ValidCorrelation2d::correlate`],
/// [`ValidCorrelation2d::adjoint_add`], [`ValidCorrelation2d::kernel_gradient_add`]) take the
/// taps per call, for many filters whose taps change (learning); the [`LinearOperator`]
/// implementation uses the kernel given at construction.
#[derive(Clone, Debug)]
pub struct ValidCorrelation2d<T> {
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    kernel: Vec<T>,
}

impl<T: Real> ValidCorrelation2d<T> {
    /// The correlation of `h × w` images with `kernel` (not larger than the image).
    pub fn new(h: usize, w: usize, kernel: Array2<T>) -> Result<Self> {
        let (kh, kw) = kernel.dim();
        if kh == 0 || kw == 0 || kh > h || kw > w {
            return Err(Error::param(
                "kernel",
                format!("{kh}×{kw} for a {h}×{w} image"),
                "the kernel must be non-empty and fit inside the image",
            ));
        }
        if kernel.iter().any(|v| !v.is_finite()) {
            return Err(Error::param(
                "kernel",
                "non-finite taps",
                "pass finite taps",
            ));
        }
        Ok(Self {
            h,
            w,
            kh,
            kw,
            kernel: kernel.iter().copied().collect(),
        })
    }

    /// Output height and width.
    pub fn out_dims(&self) -> (usize, usize) {
        (self.h - self.kh + 1, self.w - self.kw + 1)
    }

    /// `u = k ⋆ x` with taps `k` (row-major `kh × kw`).
    pub fn correlate(&self, x: &[T], k: &[T], u: &mut [T]) {
        let (oh, ow) = self.out_dims();
        u.iter_mut().for_each(|v| *v = T::zero());
        for a in 0..self.kh {
            for b in 0..self.kw {
                let kab = k[a * self.kw + b];
                for p in 0..oh {
                    let start = (p + a) * self.w + b;
                    let ur = &mut u[p * ow..(p + 1) * ow];
                    for (ui, xi) in ur.iter_mut().zip(&x[start..start + ow]) {
                        *ui += kab * *xi;
                    }
                }
            }
        }
    }

    /// `out += s·Kᵀg` with taps `k`.
    pub fn adjoint_add(&self, g: &[T], k: &[T], s: T, out: &mut [T]) {
        let (oh, ow) = self.out_dims();
        for a in 0..self.kh {
            for b in 0..self.kw {
                let kab = s * k[a * self.kw + b];
                for p in 0..oh {
                    let start = (p + a) * self.w + b;
                    let orow = &mut out[start..start + ow];
                    for (oi, gi) in orow.iter_mut().zip(&g[p * ow..(p + 1) * ow]) {
                        *oi += kab * *gi;
                    }
                }
            }
        }
    }

    /// `out[a, b] += s·Σ_p g_p x[p + (a, b)]`: the gradient of `⟨g, k ⋆ x⟩` in the taps `k`.
    pub fn kernel_gradient_add(&self, g: &[T], x: &[T], s: T, out: &mut [T]) {
        let (oh, ow) = self.out_dims();
        for a in 0..self.kh {
            for b in 0..self.kw {
                let mut acc = T::zero();
                for p in 0..oh {
                    let start = (p + a) * self.w + b;
                    acc += x[start..start + ow]
                        .iter()
                        .zip(&g[p * ow..(p + 1) * ow])
                        .map(|(u, v)| *u * *v)
                        .sum::<T>();
                }
                out[a * self.kw + b] += s * acc;
            }
        }
    }
}

/// Runs `f` on contiguous copies of `x` and `out` when they are strided.
fn on_slices<T: Real>(
    mut out: ArrayViewMut1<'_, T>,
    x: ArrayView1<'_, T>,
    f: impl FnOnce(&[T], &mut [T]),
) {
    let xc = x.as_standard_layout();
    let xs = xc.as_slice().unwrap_or(&[]);
    match out.as_slice_mut() {
        Some(o) => f(xs, o),
        None => {
            let mut tmp = vec![T::zero(); out.len()];
            f(xs, &mut tmp);
            out.iter_mut().zip(tmp).for_each(|(o, t)| *o = t);
        }
    }
}

impl<T: Real> LinearOperator<T> for ValidCorrelation2d<T> {
    fn shape(&self) -> (usize, usize) {
        let (oh, ow) = self.out_dims();
        (oh * ow, self.h * self.w)
    }
    fn name(&self) -> String {
        format!(
            "ValidCorrelation2d({}x{}, kernel {}x{})",
            self.h, self.w, self.kh, self.kw
        )
    }
    fn apply_unchecked(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        on_slices(out, x, |x, o| self.correlate(x, &self.kernel, o));
    }
    fn adjoint_unchecked(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        on_slices(out, y, |g, o| {
            o.iter_mut().for_each(|v| *v = T::zero());
            self.adjoint_add(g, &self.kernel, T::one(), o)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_gradient_is_the_derivative_of_the_response() {
        let (h, w) = (6, 5);
        let x: Vec<f64> = (0..h * w)
            .map(|i| ((i * 37) % 11) as f64 / 7.0 - 0.5)
            .collect();
        let k = Array2::from_shape_fn((3, 2), |(a, b)| 0.3 * a as f64 - 0.2 * b as f64 + 0.1);
        let op = ValidCorrelation2d::new(h, w, k.clone()).unwrap();
        let (oh, ow) = op.out_dims();
        assert_eq!((oh, ow), (4, 4));
        let g: Vec<f64> = (0..oh * ow).map(|i| (i as f64 * 0.37).sin()).collect();
        let mut grad = vec![0.0; 6];
        op.kernel_gradient_add(&g, &x, 2.0, &mut grad);
        // ⟨g, k ⋆ x⟩ is linear in k: its gradient entry (a, b) is the response to a unit tap.
        for t in 0..6 {
            let mut e = vec![0.0; 6];
            e[t] = 1.0;
            let mut u = vec![0.0; oh * ow];
            op.correlate(&x, &e, &mut u);
            let d: f64 = u.iter().zip(&g).map(|(a, b)| a * b).sum();
            assert!((grad[t] - 2.0 * d).abs() < 1e-12);
        }
        // Direct definition at one output.
        let mut u = vec![0.0; oh * ow];
        op.correlate(&x, k.as_slice().unwrap(), &mut u);
        let direct: f64 = (0..3)
            .flat_map(|a| (0..2).map(move |b| (a, b)))
            .map(|(a, b)| k[[a, b]] * x[(1 + a) * w + 2 + b])
            .sum();
        assert!((u[ow + 2] - direct).abs() < 1e-14);
        assert!(ValidCorrelation2d::new(2, 2, k).is_err());
    }
}
