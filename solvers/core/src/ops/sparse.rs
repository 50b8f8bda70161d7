//! Sparse matrices in compressed sparse row (CSR) format.

use super::LinearOperator;
use crate::error::{Error, Result};
use crate::linalg::Real;
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1};

/// A sparse matrix in CSR format: row `i` holds `data[indptr[i]..indptr[i+1]]` at columns
/// `indices[..]` (sorted, no duplicates).
#[derive(Clone, Debug)]
pub struct CsrMatrix<T: Real> {
    pub(crate) nrows: usize,
    pub(crate) ncols: usize,
    pub(crate) indptr: Vec<usize>,
    pub(crate) indices: Vec<usize>,
    pub(crate) data: Vec<T>,
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

    /// Builds from the three CSR arrays (scipy's `csr_matrix((data, indices, indptr))`): row
    /// `i` holds `data[indptr[i]..indptr[i+1]]` at columns `indices[..]`. The arrays are
    /// validated (lengths, `indptr` non-decreasing from 0 to `nnz`, column indices in range,
    /// finite values); indices need not be sorted within a row and duplicates are summed, as
    /// scipy does.
    pub fn from_csr_parts(
        nrows: usize,
        ncols: usize,
        indptr: Vec<usize>,
        indices: Vec<usize>,
        data: Vec<T>,
    ) -> Result<Self> {
        if indptr.len() != nrows + 1 {
            return Err(Error::param(
                "indptr",
                format!("length {}", indptr.len()),
                format!(
                    "a CSR matrix with {nrows} rows needs nrows + 1 = {} row pointers",
                    nrows + 1
                ),
            ));
        }
        if indices.len() != data.len() {
            return Err(Error::param(
                "indices",
                format!("length {}", indices.len()),
                format!("one column index per stored value ({} values)", data.len()),
            ));
        }
        if indptr[0] != 0 || indptr[nrows] != data.len() || indptr.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::param(
                "indptr",
                "not a row-pointer array",
                format!(
                    "indptr must start at 0, never decrease and end at nnz = {}",
                    data.len()
                ),
            ));
        }
        let sorted = (0..nrows).all(|i| {
            indices[indptr[i]..indptr[i + 1]]
                .windows(2)
                .all(|w| w[0] < w[1])
        });
        if sorted && indices.iter().all(|&j| j < ncols) && data.iter().all(|v| v.is_finite()) {
            return Ok(Self {
                nrows,
                ncols,
                indptr,
                indices,
                data,
            });
        }
        // Unsorted rows, duplicates or bad entries: the triplet path sorts, sums and reports.
        let mut t = Vec::with_capacity(data.len());
        for i in 0..nrows {
            for k in indptr[i]..indptr[i + 1] {
                t.push((i, indices[k], data[k]));
            }
        }
        Self::from_triplets(nrows, ncols, &t)
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.data.len()
    }
    /// Number of rows.
    pub fn nrows(&self) -> usize {
        self.nrows
    }
    /// Number of columns.
    pub fn ncols(&self) -> usize {
        self.ncols
    }
    /// Row pointers (`nrows + 1` entries).
    pub fn indptr(&self) -> &[usize] {
        &self.indptr
    }
    /// Column index of each stored value (sorted within each row).
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }
    /// Stored values.
    pub fn data(&self) -> &[T] {
        &self.data
    }
    /// The matrix with every entry multiplied by `s`.
    pub fn scaled(&self, s: T) -> Self {
        let mut m = self.clone();
        m.data.iter_mut().for_each(|v| *v *= s);
        m
    }
    /// The dense matrix.
    pub fn to_dense(&self) -> ndarray::Array2<T> {
        let mut a = ndarray::Array2::zeros((self.nrows, self.ncols));
        for i in 0..self.nrows {
            for k in self.indptr[i]..self.indptr[i + 1] {
                a[(i, self.indices[k])] = self.data[k];
            }
        }
        a
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

/// A sparse matrix in compressed sparse column (CSC) format: column `j` holds
/// `data[indptr[j]..indptr[j+1]]` at rows `indices[..]` (sorted, no duplicates). The storage
/// coordinate descent reads (one column at a time); scipy's `csc_matrix` arrays map one to one.
/// Held as the CSR arrays of `Aᵀ` (the same three arrays), so it shares [`CsrMatrix`]'s
/// validation and kernels.
#[derive(Clone, Debug)]
pub struct CscMatrix<T: Real> {
    /// `Aᵀ` in rows.
    pub(crate) t: CsrMatrix<T>,
}

impl<T: Real> CscMatrix<T> {
    /// Builds from the three CSC arrays (scipy's `csc_matrix((data, indices, indptr))`),
    /// validated as [`CsrMatrix::from_csr_parts`] validates its own; unsorted columns are
    /// sorted and duplicates summed.
    pub fn from_csc_parts(
        nrows: usize,
        ncols: usize,
        indptr: Vec<usize>,
        indices: Vec<usize>,
        data: Vec<T>,
    ) -> Result<Self> {
        Ok(Self {
            t: CsrMatrix::from_csr_parts(ncols, nrows, indptr, indices, data)?,
        })
    }

    /// The same matrix in columns (a counting sort over columns, `O(nnz + p)`).
    pub fn from_csr(a: &CsrMatrix<T>) -> Self {
        let (n, p) = (a.nrows, a.ncols);
        let mut ptr = vec![0usize; p + 1];
        for &j in &a.indices {
            ptr[j + 1] += 1;
        }
        for j in 0..p {
            ptr[j + 1] += ptr[j];
        }
        let mut next = ptr.clone();
        let mut idx = vec![0usize; a.nnz()];
        let mut val = vec![T::zero(); a.nnz()];
        for i in 0..n {
            for k in a.indptr[i]..a.indptr[i + 1] {
                let j = a.indices[k];
                idx[next[j]] = i;
                val[next[j]] = a.data[k];
                next[j] += 1;
            }
        }
        Self {
            t: CsrMatrix {
                nrows: p,
                ncols: n,
                indptr: ptr,
                indices: idx,
                data: val,
            },
        }
    }

    /// Keeps the entries of a dense matrix whose magnitude exceeds `drop_tol`.
    pub fn from_dense(a: ArrayView2<'_, T>, drop_tol: T) -> Result<Self> {
        Ok(Self {
            t: CsrMatrix::from_dense(a.t(), drop_tol)?,
        })
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.t.nnz()
    }
    /// Number of rows (the columns of the stored transpose).
    #[allow(clippy::misnamed_getters)]
    pub fn nrows(&self) -> usize {
        self.t.ncols
    }
    /// Number of columns (the rows of the stored transpose).
    #[allow(clippy::misnamed_getters)]
    pub fn ncols(&self) -> usize {
        self.t.nrows
    }
    /// Column pointers (`ncols + 1` entries).
    pub fn indptr(&self) -> &[usize] {
        &self.t.indptr
    }
    /// Row index of each stored value (sorted within each column).
    pub fn indices(&self) -> &[usize] {
        &self.t.indices
    }
    /// Stored values.
    pub fn data(&self) -> &[T] {
        &self.t.data
    }
    /// The matrix with every entry multiplied by `s`.
    pub fn scaled(&self, s: T) -> Self {
        Self {
            t: self.t.scaled(s),
        }
    }
    /// The dense matrix.
    pub fn to_dense(&self) -> ndarray::Array2<T> {
        self.t.to_dense().reversed_axes()
    }
}

impl<T: Real> LinearOperator<T> for CscMatrix<T> {
    fn shape(&self) -> (usize, usize) {
        (self.nrows(), self.ncols())
    }
    fn name(&self) -> String {
        format!(
            "CscMatrix({}x{}, nnz {})",
            self.nrows(),
            self.ncols(),
            self.nnz()
        )
    }
    fn apply_unchecked(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        self.t.adjoint_unchecked(out, x)
    }
    fn adjoint_unchecked(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        self.t.apply_unchecked(out, y)
    }
}
