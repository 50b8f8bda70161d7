//! The test kit must reject wrong implementations: each check is run on a deliberately broken
//! operator / prox / gradient / Jacobian and must return `Err`.

use hyperprox_core::func::*;
use hyperprox_core::linalg::Real;
use hyperprox_core::ops::*;
use hyperprox_core::testing::*;
use hyperprox_core::Result;
use ndarray::{Array1, ArrayView1, ArrayViewMut1};

/// Forward differences whose "adjoint" forgets the boundary term.
struct BadAdjoint;
impl LinearOperator<f64> for BadAdjoint {
    fn shape(&self) -> (usize, usize) {
        (5, 5)
    }
    fn apply_unchecked(&self, mut out: ArrayViewMut1<'_, f64>, x: ArrayView1<'_, f64>) {
        for i in 0..5 {
            out[i] = if i + 1 < 5 { x[i + 1] - x[i] } else { 0.0 };
        }
    }
    fn adjoint_unchecked(&self, mut out: ArrayViewMut1<'_, f64>, y: ArrayView1<'_, f64>) {
        for i in 0..5 {
            out[i] = if i > 0 { y[i - 1] } else { 0.0 } - y[i];
        }
    }
}

#[test]
fn adjoint_test_rejects_wrong_adjoint() {
    assert!(check_adjoint(&BadAdjoint, 0, 1e-12).is_err());
    // ... and accepts the correct one.
    assert!(check_adjoint::<f64, _>(&Gradient2d::new(1, 5).unwrap(), 0, 1e-12).is_ok());
}

/// λ|x| with a soft threshold at the wrong level (γλ/2) and an identity Jacobian.
struct BadL1 {
    lambda: f64,
    shrink: f64,
}
impl Function<f64> for BadL1 {
    fn name(&self) -> String {
        "BadL1".into()
    }
    fn value(&self, x: ArrayView1<'_, f64>) -> Result<f64> {
        Ok(self.lambda * x.iter().map(|v| v.abs()).sum::<f64>())
    }
    fn properties(&self) -> Properties {
        Properties {
            convex: true,
            separable: true,
            ..Default::default()
        }
    }
    fn conj_value(&self, y: ArrayView1<'_, f64>) -> Result<f64> {
        NormL1::new(self.lambda)?.conj_value(y)
    }
}
impl Prox<f64> for BadL1 {
    fn prox_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        g: f64,
    ) -> Result<()> {
        for i in 0..x.len() {
            out[i] = soft_threshold(x[i], self.shrink * g * self.lambda);
        }
        Ok(())
    }
    fn prox_jvp_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        _x: ArrayView1<'_, f64>,
        _g: f64,
        v: ArrayView1<'_, f64>,
    ) -> Result<()> {
        out.assign(&v);
        Ok(())
    }
}

#[test]
fn prox_checks_reject_wrong_threshold() {
    let tol = Tolerance::for_type::<f64>();
    let bad = BadL1 {
        lambda: 0.7,
        shrink: 0.5,
    };
    let x = random_point::<f64>(6, 1.5, 3);
    assert!(check_prox_oracle(&bad, x.view(), 1.0, 0, tol.identity).is_err());
    assert!(check_prox_optimality(&bad, x.view(), 1.0, 0, tol.identity).is_err());
    assert!(check_moreau(&bad, x.view(), 1.0, &tol).is_err());
    assert!(check_prox_jacobian(&bad, x.view(), 1.0, 0, &tol).is_err());
    // The same harness accepts the right threshold.
    let good = BadL1 {
        lambda: 0.7,
        shrink: 1.0,
    };
    assert!(check_prox_oracle(&good, x.view(), 1.0, 0, tol.identity).is_ok());
    assert!(check_prox_optimality(&good, x.view(), 1.0, 0, tol.identity).is_ok());
    assert!(check_moreau(&good, x.view(), 1.0, &tol).is_ok());
}

#[test]
fn prox_checks_reject_slightly_wrong_threshold() {
    // A 1 % error in the threshold must already be caught.
    let tol = Tolerance::for_type::<f64>();
    let bad = BadL1 {
        lambda: 0.7,
        shrink: 0.99,
    };
    let x = random_point::<f64>(6, 1.5, 4);
    assert!(check_prox_oracle(&bad, x.view(), 1.0, 0, tol.identity).is_err());
    assert!(check_moreau(&bad, x.view(), 1.0, &tol).is_err());
}

/// ½‖x‖² with gradient 1.01·x and Hessian 1.0 (inconsistent by 1 %).
struct BadQuadratic;
impl Function<f64> for BadQuadratic {
    fn name(&self) -> String {
        "BadQuadratic".into()
    }
    fn value(&self, x: ArrayView1<'_, f64>) -> Result<f64> {
        Ok(0.5 * x.dot(&x))
    }
    fn properties(&self) -> Properties {
        Properties::default()
    }
}
impl Smooth<f64> for BadQuadratic {
    fn gradient_into(&self, mut out: ArrayViewMut1<'_, f64>, x: ArrayView1<'_, f64>) -> Result<()> {
        out.assign(&(&x * 1.01));
        Ok(())
    }
    fn hvp_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        _x: ArrayView1<'_, f64>,
        v: ArrayView1<'_, f64>,
    ) -> Result<()> {
        out.assign(&(&v * 1.02));
        Ok(())
    }
    fn lipschitz(&self) -> Option<f64> {
        Some(1.0)
    }
}

#[test]
fn fd_checks_reject_wrong_derivatives() {
    let tol = Tolerance::for_type::<f64>();
    let x = random_point::<f64>(5, 1.0, 1);
    assert!(check_gradient(&BadQuadratic, x.view(), 0, &tol).is_err());
    assert!(check_hvp(&BadQuadratic, x.view(), 0, &tol).is_err());
    let good = SqrNormL2::new(1.0).unwrap();
    assert!(check_gradient(&good, x.view(), 0, &tol).is_ok());
    assert!(check_hvp(&good, x.view(), 0, &tol).is_ok());
}

/// `(Ax)²` whose VJP forgets the factor 2.
struct BadSquare(DenseMatrix<f64>);
impl ForwardMap<f64> for BadSquare {
    fn shape(&self) -> (usize, usize) {
        self.0.shape()
    }
    fn apply_into(&self, out: ArrayViewMut1<'_, f64>, x: ArrayView1<'_, f64>) -> Result<()> {
        SquaredModulus::new(&self.0).apply_into(out, x)
    }
    fn jvp_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        v: ArrayView1<'_, f64>,
    ) -> Result<()> {
        SquaredModulus::new(&self.0).jvp_into(out, x, v)
    }
    fn vjp_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        w: ArrayView1<'_, f64>,
    ) -> Result<()> {
        SquaredModulus::new(&self.0).vjp_into(out.view_mut(), x, w)?;
        out.mapv_inplace(|v| 0.5 * v);
        Ok(())
    }
}

#[test]
fn forward_map_check_rejects_wrong_vjp() {
    let tol = Tolerance::for_type::<f64>();
    let a = DenseMatrix::<f64>::gaussian(4, 3, 1).unwrap();
    let x = random_point::<f64>(3, 1.0, 2);
    assert!(check_forward_map(&BadSquare(a.clone()), x.view(), 0, &tol).is_err());
    assert!(check_forward_map(&SquaredModulus::new(a), x.view(), 0, &tol).is_ok());
}

#[test]
fn f32_tolerances_still_catch_errors() {
    let tol = Tolerance::for_type::<f32>();
    let x: Array1<f32> = random_point::<f32>(6, 1.5, 5);
    struct Bad32;
    impl Function<f32> for Bad32 {
        fn name(&self) -> String {
            "Bad32".into()
        }
        fn value(&self, x: ArrayView1<'_, f32>) -> Result<f32> {
            Ok(x.iter().map(|v| v.abs()).sum())
        }
        fn properties(&self) -> Properties {
            Properties {
                convex: true,
                ..Default::default()
            }
        }
    }
    impl Prox<f32> for Bad32 {
        fn prox_into(
            &self,
            mut out: ArrayViewMut1<'_, f32>,
            x: ArrayView1<'_, f32>,
            g: f32,
        ) -> Result<()> {
            for i in 0..x.len() {
                out[i] = soft_threshold(x[i], 0.9 * g);
            }
            Ok(())
        }
    }
    assert!(check_prox_oracle(&Bad32, x.view(), 1.0, 0, tol.identity).is_err());
    assert!(check_prox_optimality(&Bad32, x.view(), 1.0, 0, tol.identity).is_err());
    let _ = f32::NAME;
}
