//! Sparse matrices in compressed sparse row (CSR) format.

use super::LinearOperator;
use crate::error::{Error, Result};
use crate::linalg::Real;
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1};

/// A sparse matrix in CSR format: row `i` holds `data[indptr[i]..indptr[i+1]]` at columns
/// `indices[..]` (sorted, no duplicates).
#[derive(Clone, Debug)]
pub struct CsrMatrix<T: Real> {
    nrows: usize,
    ncols: usize,
    indptr: Vec<usize>,
    indices: Vec<usize>,
    data: Vec<T>,
}

impl<T: Real> CsrMatrix<T> {
    /// Builds from `(row, col, value)` triplets; duplicates are summed.
    pub fn from_triplets(
        nrows: usize,
        ncols: usize,
        triplets: &[(usize, usize, T)],
    ) -> Result<Self> {
        for (k, &(i, j, v)) in triplets.iter().enumerate() {
            if i >= nrows || j >= ncols {
                return Err(Error::param(
                    format!("triplet[{k}]"),
                    format!("({i}, {j})"),
                    format!("indices must lie in 0..{nrows} x 0..{ncols}"),
                ));
            }
            if !v.is_finite() {
                return Err(Error::NonFinite {
                    what: "CsrMatrix triplets".into(),
                    index: k,
                    value: format!("{v}"),
                });
            }
        }
        let mut sorted: Vec<(usize, usize, T)> = triplets.to_vec();
        sorted.sort_by_key(|&(i, j, _)| (i, j));
        let mut indptr = vec![0usize; nrows + 1];
        let mut indices = Vec::with_capacity(sorted.len());
        let mut data: Vec<T> = Vec::with_capacity(sorted.len());
        let mut last: Option<(usize, usize)> = None;
        for &(i, j, v) in &sorted {
            if last == Some((i, j)) {
                *data.last_mut().expect("nonempty") += v;
            } else {
                indices.push(j);
                data.push(v);
                indptr[i + 1] += 1;
                last = Some((i, j));
            }
        }
        for i in 0..nrows {
            indptr[i + 1] += indptr[i];
        }
        Ok(Self {
            nrows,
            ncols,
            indptr,
            indices,
            data,
        })
    }

    /// Keeps the entries of a dense matrix whose magnitude exceeds `drop_tol`.
    pub fn from_dense(a: ArrayView2<'_, T>, drop_tol: T) -> Result<Self> {
        let mut t = Vec::new();
        for ((i, j), &v) in a.indexed_iter() {
            if v.abs() > drop_tol || !v.is_finite() {
                t.push((i, j, v));
            }
        }
        Self::from_triplets(a.nrows(), a.ncols(), &t)
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.data.len()
    }
}

impl<T: Real> LinearOperator<T> for CsrMatrix<T> {
    fn shape(&self) -> (usize, usize) {
        (self.nrows, self.ncols)
    }
    fn name(&self) -> String {
        format!(
            "CsrMatrix({}x{}, nnz {})",
            self.nrows,
            self.ncols,
            self.nnz()
        )
    }
    fn apply_unchecked(&self, mut out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        for i in 0..self.nrows {
            let mut acc = T::zero();
            for k in self.indptr[i]..self.indptr[i + 1] {
                acc += self.data[k] * x[self.indices[k]];
            }
            out[i] = acc;
        }
    }
    fn adjoint_unchecked(&self, mut out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        out.fill(T::zero());
        for i in 0..self.nrows {
            let yi = y[i];
            for k in self.indptr[i]..self.indptr[i + 1] {
                out[self.indices[k]] += self.data[k] * yi;
            }
        }
    }
}
