//! The 2-D finite-difference gradient with forward differences and Neumann boundary.

use super::LinearOperator;
use crate::error::{Error, Result};
use crate::linalg::Real;
use ndarray::{ArrayView1, ArrayViewMut1};

/// Discrete gradient `∇: ℝ^{h·w} → ℝ^{2·h·w}` of a row-major `h × w` image.
///
/// Output layout: the first `h·w` entries are the horizontal differences
/// `(D_h x)[i, j] = x[i, j+1] − x[i, j]` (0 on the last column), the next `h·w` the vertical
/// differences `(D_v x)[i, j] = x[i+1, j] − x[i, j]` (0 on the last row): forward differences with
/// Neumann (zero-flux) boundary. The adjoint is the negative divergence `∇ᵀ = −div`.
/// `‖∇‖² = 4 sin²(π(h−1)/(2h)) + 4 sin²(π(w−1)/(2w)) < 8` exactly: `∇ᵀ∇ = L_h ⊗ I + I ⊗ L_w`
/// with `L_k` the 1-D Neumann Laplacian (path graph), whose eigenvalues are
/// `4 sin²(πj/(2k))`, `j = 0, …, k − 1` ([`LinearOperator::opnorm_estimate`] returns it, no
/// power iteration).
///
/// # References
/// A. Chambolle, "An algorithm for total variation minimization and applications",
/// J. Math. Imaging Vis. 20 (2004), 89–97.
#[derive(Clone, Copy, Debug)]
pub struct Gradient2d {
    h: usize,
    w: usize,
}

impl Gradient2d {
    /// Gradient on an `h × w` grid.
    pub fn new(h: usize, w: usize) -> Result<Self> {
        if h == 0 || w == 0 {
            return Err(Error::param(
                "grid",
                format!("{h}x{w}"),
                "the image must have at least one pixel",
            ));
        }
        Ok(Self { h, w })
    }
    /// `(h, w)`.
    pub fn grid(&self) -> (usize, usize) {
        (self.h, self.w)
    }
}

impl<T: Real> LinearOperator<T> for Gradient2d {
    fn shape(&self) -> (usize, usize) {
        (2 * self.h * self.w, self.h * self.w)
    }
    fn name(&self) -> String {
        format!("Gradient2d({}x{})", self.h, self.w)
    }
    fn apply_unchecked(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        with_slices(out, x, |o, x| grad_kernel(self.h, self.w, o, x));
    }
    fn adjoint_unchecked(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        with_slices(out, y, |o, y| neg_div_kernel(self.h, self.w, o, y));
    }
    /// The exact norm (see the type's documentation); `params` is not used.
    fn opnorm_estimate(&self, _params: super::PowerIteration) -> Result<T> {
        let top = |k: usize| {
            let s = (std::f64::consts::PI * (k as f64 - 1.0) / (2.0 * k as f64)).sin();
            4.0 * s * s
        };
        Ok(T::c((top(self.h) + top(self.w)).sqrt()))
    }
}

/// Runs a slice kernel on views, copying only if a view is not contiguous.
pub(crate) fn with_slices<T: Real>(
    mut out: ArrayViewMut1<'_, T>,
    x: ArrayView1<'_, T>,
    f: impl FnOnce(&mut [T], &[T]),
) {
    let xs_owned;
    let xs = match x.as_slice() {
        Some(s) => s,
        None => {
            xs_owned = x.to_vec();
            &xs_owned
        }
    };
    match out.as_slice_mut() {
        Some(o) => f(o, xs),
        None => {
            let mut o = vec![T::zero(); out.len()];
            f(&mut o, xs);
            out.assign(&ArrayView1::from(&o[..]));
        }
    }
}

/// Rows per parallel task (one band per rayon thread) if the image is large enough to split.
fn row_bands(h: usize, w: usize) -> Option<usize> {
    crate::linalg::parallel_sweep_worth_it(h * w).then(|| crate::linalg::chunk_per_thread(h))
}

fn grad_kernel<T: Real>(h: usize, w: usize, out: &mut [T], x: &[T]) {
    let n = h * w;
    let (dh, dv) = out.split_at_mut(n);
    // Rows are independent (row i reads rows i and i + 1 of x): the same numbers in bands.
    let band = |i0: usize, dh: &mut [T], dv: &mut [T]| {
        for (k, (dhr, dvr)) in dh.chunks_mut(w).zip(dv.chunks_mut(w)).enumerate() {
            let i = i0 + k;
            let row = &x[i * w..(i + 1) * w];
            for j in 0..w - 1 {
                dhr[j] = row[j + 1] - row[j];
            }
            dhr[w - 1] = T::zero();
            if i + 1 < h {
                let next = &x[(i + 1) * w..(i + 2) * w];
                for j in 0..w {
                    dvr[j] = next[j] - row[j];
                }
            } else {
                dvr.fill(T::zero());
            }
        }
    };
    match row_bands(h, w) {
        Some(rows) => {
            use rayon::prelude::*;
            dh.par_chunks_mut(rows * w)
                .zip(dv.par_chunks_mut(rows * w))
                .enumerate()
                .for_each(|(b, (dh, dv))| band(b * rows, dh, dv));
        }
        None => band(0, dh, dv),
    }
}

fn neg_div_kernel<T: Real>(h: usize, w: usize, out: &mut [T], y: &[T]) {
    let n = h * w;
    let (ph, pv) = y.split_at(n);
    // Row i of the output reads rows i of p_h and i − 1, i of p_v: independent bands.
    let band = |i0: usize, out: &mut [T]| {
        for (k, o) in out.chunks_mut(w).enumerate() {
            let i = i0 + k;
            let phr = &ph[i * w..(i + 1) * w];
            for j in 0..w {
                let mut v = T::zero();
                if j + 1 < w {
                    v -= phr[j];
                }
                if j > 0 {
                    v += phr[j - 1];
                }
                o[j] = v;
            }
            if i + 1 < h {
                let pvr = &pv[i * w..(i + 1) * w];
                for j in 0..w {
                    o[j] -= pvr[j];
                }
            }
            if i > 0 {
                let pvp = &pv[(i - 1) * w..i * w];
                for j in 0..w {
                    o[j] += pvp[j];
                }
            }
        }
    };
    match row_bands(h, w) {
        Some(rows) => {
            use rayon::prelude::*;
            out.par_chunks_mut(rows * w)
                .enumerate()
                .for_each(|(b, o)| band(b * rows, o));
        }
        None => band(0, out),
    }
}
