//! nalgebra interoperability (feature `nalgebra`): a [`DMatrix`] is a [`LinearOperator`], and
//! vectors and matrices convert to and from the ndarray types every solver takes.
//!
//! nalgebra stores matrices column-major, so [`dmatrix_view`] is a zero-copy (Fortran-order)
//! ndarray view and [`dvector_view`] a zero-copy 1-D view; the conversions into nalgebra
//! ([`to_dvector`], [`to_dmatrix`]) copy once. The operator applies `A x` and `Aᵀ y` by the same
//! GEMM kernel as [`DenseMatrix`](crate::ops::DenseMatrix), on the view. nalgebra's matrices
//! have an inherent `adjoint()` (the conjugate transpose, no argument), which method syntax
//! picks first: call the operator's as `LinearOperator::adjoint(&a, y)`.
//!
//! ```
//! use hyperprox_core::interop::{dvector_view, to_dvector};
//! use hyperprox_core::prelude::*;
//! use nalgebra::{DMatrix, DVector};
//! let a = DMatrix::from_row_slice(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
//! let x = DVector::from_vec(vec![1.0, 0.0, -1.0]);
//! let y = a.apply(dvector_view(&x)).unwrap();
//! assert_eq!(to_dvector(y.view()), &a * &x);
//! ```

use crate::linalg::Real;
use crate::ops::LinearOperator;
use nalgebra::{DMatrix, DVector, Scalar};
use ndarray::{Array1, ArrayView1, ArrayView2, ArrayViewMut1, Axis, ShapeBuilder};

/// A zero-copy ndarray view of a nalgebra vector.
pub fn dvector_view<T: Scalar>(v: &DVector<T>) -> ArrayView1<'_, T> {
    ArrayView1::from(v.as_slice())
}

/// A zero-copy ndarray view (column-major strides) of a nalgebra matrix.
pub fn dmatrix_view<T: Scalar>(a: &DMatrix<T>) -> ArrayView2<'_, T> {
    ArrayView2::from_shape((a.nrows(), a.ncols()).f(), a.as_slice())
        .expect("a DMatrix is a contiguous column-major buffer of nrows × ncols entries")
}

/// A nalgebra vector with the entries of `v` (one copy).
pub fn to_dvector<T: Scalar>(v: ArrayView1<'_, T>) -> DVector<T> {
    DVector::from_iterator(v.len(), v.iter().cloned())
}

/// A nalgebra matrix with the entries of `a` (one copy, in nalgebra's column-major order).
pub fn to_dmatrix<T: Scalar>(a: ArrayView2<'_, T>) -> DMatrix<T> {
    let (m, n) = a.dim();
    DMatrix::from_iterator(m, n, a.t().iter().cloned())
}

/// An ndarray vector with the entries of a nalgebra vector (one copy).
pub fn to_array1<T: Scalar>(v: &DVector<T>) -> Array1<T> {
    dvector_view(v).to_owned()
}

impl<T: Real + Scalar> LinearOperator<T> for DMatrix<T> {
    fn shape(&self) -> (usize, usize) {
        (self.nrows(), self.ncols())
    }
    fn name(&self) -> String {
        format!("nalgebra::DMatrix({}x{})", self.nrows(), self.ncols())
    }
    fn apply_unchecked(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        T::gemm(
            out.insert_axis(Axis(1)),
            dmatrix_view(self),
            x.insert_axis(Axis(1)),
            T::one(),
            false,
        );
    }
    fn adjoint_unchecked(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        T::gemm(
            out.insert_axis(Axis(1)),
            dmatrix_view(self).t(),
            y.insert_axis(Axis(1)),
            T::one(),
            false,
        );
    }
}
