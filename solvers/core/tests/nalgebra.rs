//! nalgebra interoperability (feature `nalgebra`): a `DMatrix` passes the adjoint test as an
//! operator, the conversions are exact (and the views zero-copy), and a Lasso posed on
//! nalgebra data is solved to a certified gap by FISTA on the `DMatrix` operator and by
//! coordinate descent on the converted matrix, which agree.

use hyperprox_core::interop::{dmatrix_view, dvector_view, to_array1, to_dmatrix, to_dvector};
use hyperprox_core::prelude::*;
use hyperprox_core::testing::check_adjoint;
use nalgebra::{DMatrix, DVector};
use ndarray::Array1;

fn data() -> (DMatrix<f64>, DVector<f64>) {
    // Deterministic, not symmetric, non-square.
    let a = DMatrix::from_fn(30, 12, |i, j| ((i * 7 + j * 13) % 11) as f64 / 11.0 - 0.45);
    let b = DVector::from_fn(30, |i, _| ((i * 5) % 7) as f64 / 7.0 - 0.4);
    (a, b)
}

#[test]
fn a_dmatrix_is_an_operator_with_its_transpose_as_adjoint() {
    let (a, _) = data();
    check_adjoint::<f64, _>(&a, 3, 1e-12).unwrap();
    let a32 = a.map(|v| v as f32);
    check_adjoint::<f32, _>(&a32, 3, 1e-5).unwrap();
    // Against nalgebra's own product.
    let x = DVector::from_fn(12, |i, _| i as f64 - 5.0);
    let y = a.apply(dvector_view(&x)).unwrap();
    let want = &a * &x;
    assert!((to_dvector(y.view()) - want).amax() < 1e-13);
    // nalgebra has its own inherent `adjoint()` (conjugate transpose): call the operator's
    // through the trait.
    let back = LinearOperator::adjoint(&a, y.view()).unwrap();
    assert!((to_dvector(back.view()) - a.transpose() * (&a * &x)).amax() < 1e-12);
}

#[test]
fn conversions_are_exact_and_views_share_memory() {
    let (a, b) = data();
    let v = dmatrix_view(&a);
    assert_eq!(v.dim(), (30, 12));
    assert_eq!(v[(3, 5)], a[(3, 5)]);
    assert_eq!(v.as_ptr(), a.as_ptr(), "the view is zero-copy");
    assert_eq!(to_dmatrix(v), a);
    assert_eq!(dvector_view(&b).as_ptr(), b.as_ptr());
    assert_eq!(to_dvector(to_array1(&b).view()), b);
    // A row-major ndarray converts to the same nalgebra matrix.
    let owned = v.as_standard_layout().into_owned();
    assert!(owned.is_standard_layout());
    assert_eq!(to_dmatrix(owned.view()), a);
}

#[test]
fn a_lasso_on_nalgebra_data_is_solved_and_certified() {
    let (a, b) = data();
    let n = a.nrows() as f64;
    let arr = dmatrix_view(&a).to_owned();
    let bv = to_array1(&b);
    let pen = LassoPenalty::L1 { weights: None };
    let lam = 0.2 * LassoProblem::lambda_max(arr.view(), bv.view(), &pen).unwrap();
    let prob = LassoProblem::new(arr, bv.clone(), lam, pen).unwrap();
    let cd = CoordinateDescent::new(&prob, CoordinateDescentParams::default().with_tol(1e-12))
        .unwrap()
        .run(Array1::zeros(12).view(), NoObserver)
        .unwrap();
    assert_eq!(cd.reason, TerminationReason::Converged);
    // FISTA on ½‖Ax − b‖² + nλ‖x‖₁ with the DMatrix itself as the operator.
    let f = LeastSquares::new(a.clone(), bv).unwrap();
    let g = NormL1::new(n * lam).unwrap();
    let fista = Fista::new(
        &f,
        &g,
        FistaParams::default()
            .with_tol(1e-11)
            .with_max_iters(100_000),
    )
    .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x.view()));
    let sol = fista.run(Array1::zeros(12).view(), NoObserver).unwrap();
    assert_eq!(sol.reason, TerminationReason::Converged);
    assert!(prob.duality_gap(sol.x.view()).unwrap() <= 1e-11);
    assert!(sol.x.iter().any(|&v| v != 0.0) && sol.x.iter().any(|&v| v == 0.0));
    // Both certified to 1e-11 on the same problem: equal objectives within the gaps.
    let (pa, pb) = (
        prob.objective(cd.x.view()).unwrap(),
        prob.objective(sol.x.view()).unwrap(),
    );
    assert!((pa - pb).abs() <= 1e-11, "{pa} vs {pb}");
    let x_na = to_dvector(sol.x.view());
    assert_eq!(x_na.len(), 12);
}
