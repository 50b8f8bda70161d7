//! The design matrix `A` (n samples × p features) of the regression problems — dense or sparse
//! (CSR) — and its column storage for the coordinate methods.
//!
//! A user passes either: [`LassoProblem::new`](super::LassoProblem::new) and
//! [`LogisticL1Problem::new`](super::LogisticL1Problem::new) take a dense `Array2`,
//! `with_design` takes a [`Design`] (built with `Design::from` on an `Array2` or a
//! [`CsrMatrix`]). Coordinate descent reads `A` one column at a time: a dense design is kept as
//! `Aᵀ` in standard layout (contiguous columns, a view when `A` is column-major), a sparse one
//! is converted once to compressed columns (CSC, `O(nnz)`), so that a coordinate step costs the
//! column's nonzeros, not `n`. Every solver runs unchanged on both; the solutions agree to
//! rounding (tested).

use crate::error::{Error, Result};
use crate::linalg::{axpy_slices, dot_slices, transpose_owned, Real};
use crate::ops::{CscMatrix, CsrMatrix, LinearOperator};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, CowArray, Ix2};
use std::borrow::Cow;
use std::sync::OnceLock;

/// A design matrix, dense or sparse (CSR), built with `Design::from` on an `Array2` or a
/// [`CsrMatrix`]. It caches what coordinate methods derive from it (the squared column norms,
/// and for a sparse design its compressed columns), so a path of solves on one design pays for
/// them once.
#[derive(Clone, Debug)]
pub struct Design<T: Real> {
    kind: Kind<T>,
    col_sq: OnceLock<Array1<T>>,
}

#[derive(Clone, Debug)]
enum Kind<T: Real> {
    Dense(Array2<T>),
    Sparse(CscMatrix<T>),
}

impl<T: Real> From<Array2<T>> for Design<T> {
    fn from(a: Array2<T>) -> Self {
        Self {
            kind: Kind::Dense(a),
            col_sq: OnceLock::new(),
        }
    }
}

impl<T: Real> From<CsrMatrix<T>> for Design<T> {
    /// Converted to compressed columns once, here (`O(nnz)`): the storage every solver reads.
    fn from(a: CsrMatrix<T>) -> Self {
        Design::from(CscMatrix::from_csr(&a))
    }
}

impl<T: Real> From<CscMatrix<T>> for Design<T> {
    fn from(a: CscMatrix<T>) -> Self {
        Self {
            kind: Kind::Sparse(a),
            col_sq: OnceLock::new(),
        }
    }
}

/// A borrowed design (what `lambda_max` and the checks read).
#[derive(Clone, Copy, Debug)]
pub enum DesignRef<'d, T: Real> {
    /// A dense view.
    Dense(ArrayView2<'d, T>),
    /// A sparse matrix in rows.
    Csr(&'d CsrMatrix<T>),
    /// A sparse matrix in columns.
    Csc(&'d CscMatrix<T>),
}

impl<'d, T: Real> From<ArrayView2<'d, T>> for DesignRef<'d, T> {
    fn from(a: ArrayView2<'d, T>) -> Self {
        DesignRef::Dense(a)
    }
}
impl<'d, T: Real> From<&'d Array2<T>> for DesignRef<'d, T> {
    fn from(a: &'d Array2<T>) -> Self {
        DesignRef::Dense(a.view())
    }
}
impl<'d, T: Real> From<&'d CsrMatrix<T>> for DesignRef<'d, T> {
    fn from(a: &'d CsrMatrix<T>) -> Self {
        DesignRef::Csr(a)
    }
}
impl<'d, T: Real> From<&'d CscMatrix<T>> for DesignRef<'d, T> {
    fn from(a: &'d CscMatrix<T>) -> Self {
        DesignRef::Csc(a)
    }
}
impl<'d, T: Real> From<&'d Design<T>> for DesignRef<'d, T> {
    fn from(a: &'d Design<T>) -> Self {
        a.view()
    }
}

impl<'d, T: Real> DesignRef<'d, T> {
    /// `(n, p)`.
    pub fn dim(&self) -> (usize, usize) {
        match self {
            DesignRef::Dense(a) => a.dim(),
            DesignRef::Csr(a) => (a.nrows(), a.ncols()),
            DesignRef::Csc(a) => (a.nrows(), a.ncols()),
        }
    }
    /// Non-empty, finite, one target per row (`what` names the targets in the message).
    pub fn check(&self, context: &str, targets: ArrayView1<'_, T>, what: &str) -> Result<()> {
        match self {
            DesignRef::Dense(a) => crate::linalg::check_design(context, *a, targets, what),
            DesignRef::Csr(_) | DesignRef::Csc(_) => {
                crate::linalg::check_design_dims(context, self.dim(), targets, what)?;
                // The sparse constructors reject non-finite values; checked again for safety.
                let data = match self {
                    DesignRef::Csr(a) => a.data(),
                    DesignRef::Csc(a) => a.data(),
                    DesignRef::Dense(_) => &[],
                };
                if let Some((i, v)) = data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                    return Err(Error::NonFinite {
                        what: format!("{context} A (stored value)"),
                        index: i,
                        value: format!("{v}"),
                    });
                }
                Ok(())
            }
        }
    }
    /// `Ax`.
    pub fn apply(&self, x: ArrayView1<'_, T>) -> Array1<T> {
        let mut out = Array1::zeros(self.dim().0);
        self.apply_into(out.view_mut(), x);
        out
    }
    /// `out = Ax` (lengths checked by the caller).
    pub fn apply_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        match self {
            DesignRef::Dense(a) => crate::linalg::gemv_into(out, *a, x.as_standard_layout().view()),
            DesignRef::Csr(a) => a.apply_unchecked(out, x),
            DesignRef::Csc(a) => a.apply_unchecked(out, x),
        }
    }
    /// `Aᵀy`.
    pub fn adjoint(&self, y: ArrayView1<'_, T>) -> Array1<T> {
        let mut out = Array1::zeros(self.dim().1);
        self.adjoint_into(out.view_mut(), y);
        out
    }
    /// `out = Aᵀy` (lengths checked by the caller).
    pub fn adjoint_into(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        match self {
            DesignRef::Dense(a) => {
                crate::linalg::gemv_into(out, a.t(), y.as_standard_layout().view())
            }
            DesignRef::Csr(a) => a.adjoint_unchecked(out, y),
            DesignRef::Csc(a) => a.adjoint_unchecked(out, y),
        }
    }
    /// Column `j` as a dense vector.
    pub fn column(&self, j: usize) -> Array1<T> {
        match self {
            DesignRef::Dense(a) => a.column(j).to_owned(),
            DesignRef::Csc(a) => {
                let mut c = Array1::zeros(a.nrows());
                for k in a.indptr()[j]..a.indptr()[j + 1] {
                    c[a.indices()[k]] = a.data()[k];
                }
                c
            }
            DesignRef::Csr(a) => {
                let mut c = Array1::zeros(a.nrows());
                let (ptr, idx, val) = (a.indptr(), a.indices(), a.data());
                for i in 0..a.nrows() {
                    // Sorted indices within a row: binary search.
                    if let Ok(k) = idx[ptr[i]..ptr[i + 1]].binary_search(&j) {
                        c[i] = val[ptr[i] + k];
                    }
                }
                c
            }
        }
    }
}

impl<T: Real> Design<T> {
    /// The borrowed form.
    pub fn view(&self) -> DesignRef<'_, T> {
        match &self.kind {
            Kind::Dense(a) => DesignRef::Dense(a.view()),
            Kind::Sparse(a) => DesignRef::Csc(a),
        }
    }
    /// `(n, p)`.
    pub fn dim(&self) -> (usize, usize) {
        self.view().dim()
    }
    /// The dense matrix, `None` for a sparse design.
    pub fn dense(&self) -> Option<ArrayView2<'_, T>> {
        match &self.kind {
            Kind::Dense(a) => Some(a.view()),
            Kind::Sparse(_) => None,
        }
    }
    /// The sparse matrix (in columns), `None` for a dense design.
    pub fn sparse(&self) -> Option<&CscMatrix<T>> {
        match &self.kind {
            Kind::Dense(_) => None,
            Kind::Sparse(a) => Some(a),
        }
    }
    /// Whether the design is sparse.
    pub fn is_sparse(&self) -> bool {
        matches!(self.kind, Kind::Sparse(_))
    }
    /// The design with every entry multiplied by `s`.
    pub fn scaled(&self, s: T) -> Self {
        match &self.kind {
            Kind::Dense(a) => Design::from(a.mapv(|v| v * s)),
            Kind::Sparse(a) => Design::from(a.scaled(s)),
        }
    }
    /// The dense matrix (a copy; for a sparse design, zeros filled in).
    pub fn to_dense(&self) -> Array2<T> {
        match &self.kind {
            Kind::Dense(a) => a.clone(),
            Kind::Sparse(a) => a.to_dense(),
        }
    }
    /// Stored entries (`n·p` for a dense design).
    pub fn nnz(&self) -> usize {
        match &self.kind {
            Kind::Dense(a) => a.len(),
            Kind::Sparse(a) => a.nnz(),
        }
    }
    /// A dense design in column-major (Fortran) order, so that coordinate methods read its
    /// columns without a transposed copy (one copy now if it is row-major); a sparse design
    /// unchanged.
    pub fn into_column_major(self) -> Self {
        match self.kind {
            Kind::Dense(a) if !a.t().is_standard_layout() => {
                Design::from(transpose_owned(a.view()).reversed_axes())
            }
            kind => Self { kind, ..self },
        }
    }
    /// `‖aⱼ‖²` for every column (computed once, then cached).
    pub fn col_sq_norms(&self) -> &Array1<T> {
        self.col_sq.get_or_init(|| Columns::of(self).sq_norms())
    }
}

impl<T: Real> LinearOperator<T> for Design<T> {
    fn shape(&self) -> (usize, usize) {
        self.dim()
    }
    fn name(&self) -> String {
        match &self.kind {
            Kind::Dense(a) => format!("Design(dense {}x{})", a.nrows(), a.ncols()),
            Kind::Sparse(a) => a.name(),
        }
    }
    fn apply_unchecked(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        self.view().apply_into(out, x)
    }
    fn adjoint_unchecked(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        self.view().adjoint_into(out, y)
    }
}

/// The columns of a design for coordinate methods: contiguous dense columns (`Aᵀ` in standard
/// layout) or compressed sparse columns. `dot` and `axpy` cost `n` or the column's nonzeros.
#[derive(Clone, Debug)]
pub(crate) enum Columns<'a, T: Real> {
    Dense(CowArray<'a, T, Ix2>),
    Sparse(Cow<'a, CscMatrix<T>>),
}

impl<T: Real> Columns<'static, T> {
    /// No columns (a buffer for [`Columns::scaled_subset`]).
    pub(crate) fn empty() -> Self {
        Columns::Sparse(Cow::Owned(
            CscMatrix::from_csc_parts(0, 0, vec![0], Vec::new(), Vec::new())
                .expect("an empty matrix is valid"),
        ))
    }
}

impl<'a, T: Real> Columns<'a, T> {
    /// The columns of `design`: a view of a column-major dense `A` (no copy), a transposed
    /// copy of a row-major one, compressed columns of a sparse one.
    pub(crate) fn of(design: &'a Design<T>) -> Self {
        match &design.kind {
            Kind::Dense(a) => {
                if a.t().is_standard_layout() {
                    Columns::Dense(CowArray::from(a.view().reversed_axes()))
                } else {
                    Columns::Dense(CowArray::from(transpose_owned(a.view())))
                }
            }
            Kind::Sparse(a) => Columns::Sparse(Cow::Borrowed(a)),
        }
    }

    /// Rows `n` (the length of a column).
    pub(crate) fn nrows(&self) -> usize {
        match self {
            Columns::Dense(at) => at.ncols(),
            Columns::Sparse(c) => c.nrows(),
        }
    }

    /// Columns `p`.
    pub(crate) fn ncols(&self) -> usize {
        match self {
            Columns::Dense(at) => at.nrows(),
            Columns::Sparse(c) => c.ncols(),
        }
    }

    /// Average stored entries per column (the cost of one `dot`/`axpy`).
    pub(crate) fn column_cost(&self) -> usize {
        match self {
            Columns::Dense(at) => at.ncols(),
            Columns::Sparse(c) => c.nnz() / c.ncols().max(1),
        }
    }

    /// Column `j` as a slice (dense designs only).
    #[inline]
    pub(crate) fn dense_column(&self, j: usize) -> Option<&[T]> {
        match self {
            Columns::Dense(at) => {
                let n = at.ncols();
                Some(&at.as_slice().expect("standard layout")[j * n..(j + 1) * n])
            }
            Columns::Sparse(_) => None,
        }
    }

    /// `aⱼᵀv`.
    #[inline]
    pub(crate) fn dot(&self, j: usize, v: &[T]) -> T {
        match self {
            Columns::Dense(_) => dot_slices(self.dense_column(j).expect("dense"), v),
            Columns::Sparse(c) => {
                let (s, e) = (c.indptr()[j], c.indptr()[j + 1]);
                let mut acc = T::zero();
                for (&i, &a) in c.indices()[s..e].iter().zip(&c.data()[s..e]) {
                    acc += a * v[i];
                }
                acc
            }
        }
    }

    /// Calls `f(i, aᵢⱼ)` for the stored entries of column `j` (every row when dense).
    #[inline]
    pub(crate) fn for_each_entry(&self, j: usize, mut f: impl FnMut(usize, T)) {
        match self {
            Columns::Dense(_) => {
                for (i, &a) in self.dense_column(j).expect("dense").iter().enumerate() {
                    f(i, a)
                }
            }
            Columns::Sparse(c) => {
                let (s, e) = (c.indptr()[j], c.indptr()[j + 1]);
                for (&i, &a) in c.indices()[s..e].iter().zip(&c.data()[s..e]) {
                    f(i, a)
                }
            }
        }
    }

    /// `v ← v + α·aⱼ`.
    #[inline]
    pub(crate) fn axpy(&self, j: usize, alpha: T, v: &mut [T]) {
        match self {
            Columns::Dense(_) => axpy_slices(v, alpha, self.dense_column(j).expect("dense")),
            Columns::Sparse(c) => {
                let (s, e) = (c.indptr()[j], c.indptr()[j + 1]);
                for (&i, &a) in c.indices()[s..e].iter().zip(&c.data()[s..e]) {
                    v[i] += alpha * a;
                }
            }
        }
    }

    /// `v ← v + α·aⱼ` on an ndarray vector (contiguous).
    #[inline]
    pub(crate) fn axpy_into(&self, j: usize, alpha: T, v: &mut Array1<T>) {
        self.axpy(j, alpha, v.as_slice_mut().expect("contiguous"))
    }

    /// `‖aⱼ‖²`.
    pub(crate) fn sq_norm(&self, j: usize) -> T {
        match self {
            Columns::Dense(_) => {
                let c = self.dense_column(j).expect("dense");
                dot_slices(c, c)
            }
            Columns::Sparse(c) => c.data()[c.indptr()[j]..c.indptr()[j + 1]]
                .iter()
                .map(|&a| a * a)
                .sum(),
        }
    }

    /// `‖aⱼ‖²` for every column.
    pub(crate) fn sq_norms(&self) -> Array1<T> {
        (0..self.ncols()).map(|j| self.sq_norm(j)).collect()
    }

    /// The Gram matrix `G = A_wsᵀA_ws` of the columns `ws` (`m × m`, symmetric), reusing the
    /// entries of `cache` (the Gram matrix of the columns `cache.0`, e.g. the previous working
    /// set: only the products with columns new to `ws` are computed, `|new|·|ws|·n` work).
    /// Dense: the columns gathered into blocks and one faer GEMM; sparse: each new column
    /// scattered once into a dense buffer and dotted with the others.
    pub(crate) fn gram(&self, ws: &[usize], cache: Option<(&[usize], &Array2<T>)>) -> Array2<T> {
        let (m, n) = (ws.len(), self.nrows());
        let mut g = Array2::zeros((m, m));
        // Position of each column of `ws` in the cache, if there.
        let pos: Vec<Option<usize>> = match cache {
            Some((idx, _)) => ws.iter().map(|j| idx.binary_search(j).ok()).collect(),
            None => vec![None; m],
        };
        if let Some((_, cg)) = cache {
            for k in 0..m {
                for l in 0..m {
                    if let (Some(a), Some(b)) = (pos[k], pos[l]) {
                        g[(k, l)] = cg[(a, b)];
                    }
                }
            }
        }
        let fresh: Vec<usize> = (0..m).filter(|&k| pos[k].is_none()).collect();
        if fresh.is_empty() {
            return g;
        }
        match self {
            Columns::Dense(_) => {
                let gather = |ks: &[usize]| {
                    let mut block = Array2::zeros((ks.len(), n));
                    for (mut row, &k) in block.rows_mut().into_iter().zip(ks) {
                        row.as_slice_mut()
                            .expect("standard layout")
                            .copy_from_slice(self.dense_column(ws[k]).expect("dense"));
                    }
                    block
                };
                let all: Vec<usize> = (0..m).collect();
                let (bf, ba) = (gather(&fresh), gather(&all));
                let mut cross = Array2::zeros((fresh.len(), m));
                T::gemm(cross.view_mut(), bf.view(), ba.t(), T::one(), false);
                for (r, &k) in fresh.iter().enumerate() {
                    for l in 0..m {
                        g[(k, l)] = cross[(r, l)];
                    }
                }
                // Entries between two fresh columns were computed twice (in rounding-different
                // orders): keep the one of the lower row so that `g` is exactly symmetric.
                for &k in &fresh {
                    for l in 0..m {
                        if pos[l].is_some() || l < k {
                            g[(l, k)] = g[(k, l)];
                        }
                    }
                }
            }
            Columns::Sparse(_) => {
                let mut buf = vec![T::zero(); n];
                for &k in &fresh {
                    self.for_each_entry(ws[k], |i, a| buf[i] = a);
                    for l in 0..m {
                        let v = self.dot(ws[l], &buf);
                        g[(k, l)] = v;
                        g[(l, k)] = v;
                    }
                    self.for_each_entry(ws[k], |i, _| buf[i] = T::zero());
                }
            }
        }
        g
    }

    /// The columns `ws` of `A` scaled row-wise by `h` (`diag(h)·A_ws`, the prox-Newton
    /// working-set columns `√H aⱼ`), in the storage of `buf` reused (dense: one block of
    /// `|ws|·n` values, filled without a zeroing pass; sparse: the same nonzero pattern).
    /// Column `k` of the result is `ws[k]`.
    pub(crate) fn scaled_subset(
        &self,
        ws: &[usize],
        h: &[T],
        buf: Columns<'static, T>,
        parallel: bool,
    ) -> Columns<'static, T> {
        let n = self.nrows();
        match self {
            Columns::Dense(_) => {
                let mut v: Vec<T> = match buf {
                    Columns::Dense(a) => a.into_owned().into_raw_vec_and_offset().0,
                    Columns::Sparse(_) => Vec::new(),
                };
                v.clear();
                if parallel {
                    use rayon::prelude::*;
                    v.resize(ws.len() * n, T::zero());
                    v.par_chunks_mut(n.max(1))
                        .zip(ws.par_iter())
                        .for_each(|(out, &j)| {
                            let col = self.dense_column(j).expect("dense");
                            for ((o, &a), &s) in out.iter_mut().zip(col).zip(h) {
                                *o = a * s;
                            }
                        });
                } else {
                    for &j in ws {
                        let col = self.dense_column(j).expect("dense");
                        v.extend(col.iter().zip(h).map(|(&a, &s)| a * s));
                    }
                }
                Columns::Dense(CowArray::from(
                    Array2::from_shape_vec((ws.len(), n), v).expect("ws.len() * n values"),
                ))
            }
            Columns::Sparse(c) => {
                let mut out = match buf {
                    Columns::Sparse(b) => b.into_owned(),
                    Columns::Dense(_) => match Columns::empty() {
                        Columns::Sparse(c) => c.into_owned(),
                        Columns::Dense(_) => unreachable!("empty() is sparse"),
                    },
                };
                // The CSR arrays of the transpose: one row per working-set column.
                let t = &mut out.t;
                t.nrows = ws.len();
                t.ncols = n;
                t.indptr.clear();
                t.indices.clear();
                t.data.clear();
                t.indptr.push(0);
                for &j in ws {
                    let (s, e) = (c.indptr()[j], c.indptr()[j + 1]);
                    t.indices.extend_from_slice(&c.indices()[s..e]);
                    t.data.extend(
                        c.indices()[s..e]
                            .iter()
                            .zip(&c.data()[s..e])
                            .map(|(&i, &a)| a * h[i]),
                    );
                    t.indptr.push(t.indices.len());
                }
                Columns::Sparse(Cow::Owned(out))
            }
        }
    }
}

/// The columns `idx` of a design as an operator `ℝ^{|idx|} → ℝⁿ` (no copy): what the group
/// Lipschitz constants `‖A_g‖²` are estimated on.
pub(crate) struct ColumnSubset<'c, 'a, T: Real> {
    pub(crate) cols: &'c Columns<'a, T>,
    pub(crate) idx: &'c [usize],
}

impl<T: Real> LinearOperator<T> for ColumnSubset<'_, '_, T> {
    fn shape(&self) -> (usize, usize) {
        (self.cols.nrows(), self.idx.len())
    }
    fn apply_unchecked(&self, mut out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        let mut v = vec![T::zero(); self.cols.nrows()];
        for (k, &j) in self.idx.iter().enumerate() {
            if x[k] != T::zero() {
                self.cols.axpy(j, x[k], &mut v);
            }
        }
        out.iter_mut().zip(v).for_each(|(o, vi)| *o = vi);
    }
    fn adjoint_unchecked(&self, mut out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        let y = y.as_standard_layout();
        let ys = y.as_slice().expect("standard layout");
        for (k, &j) in self.idx.iter().enumerate() {
            out[k] = self.cols.dot(j, ys);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn sparse_and_dense() -> (CsrMatrix<f64>, Array2<f64>) {
        let d = array![
            [0.0, 2.0, 0.0, -1.0],
            [1.5, 0.0, 0.0, 0.0],
            [0.0, -3.0, 0.5, 0.0]
        ];
        (CsrMatrix::from_dense(d.view(), 0.0).unwrap(), d)
    }

    /// Every column operation of the sparse storage against the dense columns, entry by entry.
    #[test]
    fn sparse_columns_match_dense_columns() {
        let (s, d) = sparse_and_dense();
        let (ds, ss) = (Design::from(d.clone()), Design::from(s));
        let (cd, cs) = (Columns::of(&ds), Columns::of(&ss));
        assert_eq!((cs.nrows(), cs.ncols()), (3, 4));
        let v = [0.3, -1.2, 2.0];
        for j in 0..4 {
            assert!((cd.dot(j, &v) - cs.dot(j, &v)).abs() < 1e-15);
            assert!((cd.sq_norm(j) - cs.sq_norm(j)).abs() < 1e-15);
            let (mut a, mut b) = (v, v);
            cd.axpy(j, 0.7, &mut a);
            cs.axpy(j, 0.7, &mut b);
            // (the dense kernel may fuse the multiply-add: equal to rounding)
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-15, "{a:?} vs {b:?}");
            }
            assert_ne!(a, v, "column {j} is not zero: axpy changes v");
            assert_eq!(ds.view().column(j), ss.view().column(j));
            assert_eq!(ss.view().column(j), d.column(j));
        }
        let h = [2.0, -1.0, 0.5];
        let ws = [3, 1];
        let sd = cd.scaled_subset(&ws, &h, Columns::empty(), false);
        let sp = cs.scaled_subset(
            &ws,
            &h,
            Columns::Dense(CowArray::from(Array2::zeros((0, 0)))),
            false,
        );
        // Reusing a buffer of the other kind and of its own kind gives the same columns.
        let sp2 = cs.scaled_subset(&ws, &h, sp.clone(), false);
        let sd2 = cd.scaled_subset(&ws, &h, sd.clone(), true);
        for k in 0..2 {
            assert_eq!(sp2.sq_norm(k), sp.sq_norm(k));
            assert_eq!(sd2.sq_norm(k), sd.sq_norm(k));
        }
        for (k, &j) in ws.iter().enumerate() {
            let want: Vec<f64> = (0..3).map(|i| d[(i, j)] * h[i]).collect();
            for (i, e) in (0..3).map(|i| {
                let mut unit = [0.0; 3];
                unit[i] = 1.0;
                (i, unit)
            }) {
                assert_eq!(sd.dot(k, &e), want[i]);
                assert_eq!(sp.dot(k, &e), want[i]);
            }
        }
    }

    /// `A_wsᵀA_ws` and `A_wsᵀv` of both storages against the dense products.
    #[test]
    fn gram_of_a_column_subset_matches_the_dense_product() {
        let (s, d) = sparse_and_dense();
        let ws = [3, 0, 1];
        let v = [0.5, -1.0, 2.0];
        let sub = d.select(ndarray::Axis(1), &ws);
        let want = sub.t().dot(&sub);
        let want_v = sub.t().dot(&ndarray::arr1(&v));
        for design in [Design::from(d.clone()), Design::from(s)] {
            let cols = Columns::of(&design);
            let g = cols.gram(&ws, None);
            for (x, y) in g.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-14, "{g} vs {want}");
            }
            assert_eq!(g, g.t());
            // From a cache of other columns: the shared entries are reused (a planted value
            // shows it), the others computed.
            let mut cached = cols.gram(&[0, 2, 3], None);
            cached[(0, 2)] = 7.0; // columns 0 and 3
            cached[(2, 0)] = 7.0;
            let g2 = cols.gram(&ws, Some((&[0, 2, 3], &cached)));
            assert_eq!(g2[(0, 1)], 7.0); // ws[0] = 3, ws[1] = 0
            assert_eq!(g2, g2.t());
            for k in 0..3 {
                for l in 0..3 {
                    if (k, l) != (0, 1) && (k, l) != (1, 0) {
                        assert!((g2[(k, l)] - want[(k, l)]).abs() <= 1e-14, "{k} {l}");
                    }
                }
            }
        }
        let _ = want_v;
    }

    #[test]
    fn design_products_match_dense_and_pass_the_adjoint_test() {
        let (s, d) = sparse_and_dense();
        let ss = Design::from(s);
        let x = array![1.0, -2.0, 0.5, 3.0];
        let y = array![0.2, 0.4, -1.0];
        assert_eq!(ss.view().apply(x.view()), d.dot(&x));
        assert_eq!(ss.view().adjoint(y.view()), d.t().dot(&y));
        crate::testing::check_adjoint(&ss, 3, 1e-12).unwrap();
        crate::testing::check_adjoint(&Design::from(d), 3, 1e-12).unwrap();
    }

    #[test]
    fn csr_parts_are_validated_and_unsorted_rows_accepted() {
        // Unsorted row with a duplicate: sorted and summed (scipy's semantics).
        let m = CsrMatrix::from_csr_parts(
            2,
            3,
            vec![0, 3, 4],
            vec![2, 0, 2, 1],
            vec![1.0, 2.0, 3.0, 4.0],
        )
        .unwrap();
        assert_eq!(m.to_dense(), array![[2.0, 0.0, 4.0], [0.0, 4.0, 0.0]]);
        assert!(CsrMatrix::from_csr_parts(2, 3, vec![0, 1], vec![0], vec![1.0]).is_err());
        assert!(CsrMatrix::from_csr_parts(1, 3, vec![0, 1], vec![3], vec![1.0]).is_err());
        assert!(CsrMatrix::from_csr_parts(1, 3, vec![0, 2], vec![0], vec![1.0]).is_err());
        assert!(
            CsrMatrix::from_csr_parts(2, 3, vec![0, 2, 1], vec![0, 1], vec![1.0, 1.0]).is_err()
        );
        assert!(CsrMatrix::from_csr_parts(1, 3, vec![0, 1], vec![0], vec![f64::NAN]).is_err());
        // The CSC arrays of the same matrix (columns 0, 1, 2): the same dense matrix.
        let c =
            CscMatrix::from_csc_parts(2, 3, vec![0, 1, 2, 3], vec![0, 1, 0], vec![2.0, 4.0, 4.0])
                .unwrap();
        assert_eq!(c.to_dense(), m.to_dense());
        assert_eq!(CscMatrix::from_csr(&m).to_dense(), m.to_dense());
        assert!(
            CscMatrix::from_csc_parts(2, 3, vec![0, 1, 2], vec![0, 1], vec![1.0, 1.0]).is_err()
        );
        assert!(CscMatrix::from_csc_parts(2, 3, vec![0, 1, 1, 1], vec![2], vec![1.0]).is_err());
        let empty = CsrMatrix::<f64>::from_csr_parts(0, 3, vec![0], vec![], vec![]).unwrap();
        let e = Design::from(empty)
            .view()
            .check("test", ndarray::Array1::<f64>::zeros(0).view(), "b")
            .unwrap_err();
        assert!(e.to_string().contains("non-empty"), "{e}");
    }
}
