//! Conformance suites stamped out for every operator, function and prox of hyperprox-core,
//! in f32 and f64 (see `hyperprox_core::testing`). Test names say what is checked:
//! `ops::<op>::adjoint_*`, `prox::<f>::prox_{oracle,optimality,moreau,jacobian}::f{32,64}`,
//! `smooth::<f>::{gradient,hvp}_*`.

use hyperprox_core::func::*;
use hyperprox_core::linalg::Real;
use hyperprox_core::ops::*;
use hyperprox_core::{operator_conformance, prox_conformance, smooth_conformance};
use ndarray::{array, Array1, Array2};

fn arr<T: Real>(v: &[f64]) -> Array1<T> {
    v.iter().map(|&x| T::c(x)).collect()
}

fn mat<T: Real>(m: usize, n: usize, seed: u64) -> Array2<T> {
    DenseMatrix::<T>::gaussian(m, n, seed)
        .unwrap()
        .matrix()
        .to_owned()
}

/// `[I I]`: a tight frame with `L Lᵀ = 2I`.
fn frame<T: Real>(n: usize) -> DenseMatrix<T> {
    let mut a = Array2::zeros((n, 2 * n));
    for i in 0..n {
        a[(i, i)] = T::one();
        a[(i, n + i)] = T::one();
    }
    DenseMatrix::new(a).unwrap()
}

fn tv_tol<T: Real>() -> T {
    T::c(if T::epsilon().as_f64() < 1e-10 {
        1e-6
    } else {
        1e-2
    })
}

mod ops {
    use super::*;

    operator_conformance!(dense, |T| DenseMatrix::<T>::gaussian(7, 5, 1).unwrap());
    operator_conformance!(dense_normalized, |T| DenseMatrix::<T>::gaussian(4, 9, 2)
        .unwrap()
        .normalize_columns());
    operator_conformance!(csr, |T| CsrMatrix::from_dense(
        mat::<T>(6, 8, 3).view(),
        T::c(0.5)
    )
    .unwrap());
    operator_conformance!(csc, |T| hyperprox_core::ops::CscMatrix::from_dense(
        mat::<T>(6, 8, 4).view(),
        T::c(0.5)
    )
    .unwrap());
    operator_conformance!(sparse_design, |T| hyperprox_core::solve::Design::from(
        CsrMatrix::from_dense(mat::<T>(7, 5, 5).view(), T::c(0.3)).unwrap()
    ));
    operator_conformance!(gradient2d, |T| Gradient2d::new(5, 7).unwrap());
    operator_conformance!(valid_correlation, |T| ValidCorrelation2d::new(
        6,
        5,
        ndarray::Array2::from_shape_fn((3, 2), |(a, b)| T::c(
            0.3 * a as f64 - 0.2 * b as f64 + 0.1
        ))
    )
    .unwrap());
    operator_conformance!(gradient2d_thin, |T| Gradient2d::new(1, 6).unwrap());
    operator_conformance!(conv_direct_zero, |T| Conv2d::new(
        6,
        5,
        mat::<T>(3, 4, 4),
        Boundary::Zero,
        ConvMethod::Direct
    )
    .unwrap());
    operator_conformance!(conv_direct_reflect, |T| Conv2d::new(
        6,
        5,
        mat::<T>(3, 4, 5),
        Boundary::Reflect,
        ConvMethod::Direct
    )
    .unwrap());
    operator_conformance!(conv_direct_periodic, |T| Conv2d::new(
        6,
        5,
        mat::<T>(5, 3, 6),
        Boundary::Periodic,
        ConvMethod::Direct
    )
    .unwrap());
    operator_conformance!(conv_fft_zero, |T| Conv2d::new(
        9,
        7,
        mat::<T>(4, 3, 7),
        Boundary::Zero,
        ConvMethod::Fft
    )
    .unwrap());
    operator_conformance!(conv_fft_reflect, |T| Conv2d::new(
        9,
        7,
        mat::<T>(11, 11, 8),
        Boundary::Reflect,
        ConvMethod::Fft
    )
    .unwrap());
    operator_conformance!(conv_fft_periodic, |T| Conv2d::new(
        9,
        7,
        mat::<T>(3, 3, 9),
        Boundary::Periodic,
        ConvMethod::Fft
    )
    .unwrap());
    operator_conformance!(mask, |T| Mask::random(20, 0.4, 3).unwrap());
    operator_conformance!(subsample, |T| Subsample::random(20, 8, 3).unwrap());
    operator_conformance!(diagonal, |T| Diagonal::new(arr::<T>(&[
        1.0, -2.0, 0.5, 3.0
    ]))
    .unwrap());
    operator_conformance!(identity, |T| Identity::new(5));
    operator_conformance!(compose, |T| Compose::new(
        Gradient2d::new(4, 5).unwrap(),
        Conv2d::new(
            4,
            5,
            mat::<T>(3, 3, 10),
            Boundary::Reflect,
            ConvMethod::Direct
        )
        .unwrap()
    )
    .unwrap());
    operator_conformance!(sum, |T| Sum::new(
        DenseMatrix::<T>::gaussian(5, 4, 11).unwrap(),
        DenseMatrix::<T>::gaussian(5, 4, 12).unwrap()
    )
    .unwrap());
    operator_conformance!(scaled, |T| Scaled::new(
        T::c(-1.5),
        Gradient2d::new(3, 4).unwrap()
    )
    .unwrap());
    operator_conformance!(stack, |T| Stack::new(
        Gradient2d::new(3, 4).unwrap(),
        Identity::new(12)
    )
    .unwrap());
    operator_conformance!(transpose, |T| Transpose::new(
        DenseMatrix::<T>::gaussian(3, 8, 13).unwrap()
    ));
    operator_conformance!(boxed_dyn, |T| {
        let b: Box<dyn LinearOperator<T>> = Box::new(Gradient2d::new(4, 4).unwrap());
        b
    });
}

mod forward_maps {
    use super::*;
    use hyperprox_core::testing::{check_forward_map, random_point, Tolerance};

    fn run<T: Real>() {
        let tol = Tolerance::for_type::<T>();
        let x = random_point::<T>(6, 1.0, 1);
        let lin = Linear::new(DenseMatrix::<T>::gaussian(4, 6, 1).unwrap());
        check_forward_map(&lin, x.view(), 2, &tol).unwrap();
        let sq = SquaredModulus::new(DenseMatrix::<T>::gaussian(9, 6, 2).unwrap());
        check_forward_map(&sq, x.view(), 3, &tol).unwrap();
    }
    #[test]
    fn jvp_vjp_f64() {
        run::<f64>();
    }
    #[test]
    fn jvp_vjp_f32() {
        run::<f32>();
    }
}

mod prox {
    use super::*;

    prox_conformance!(
        sqr_norm_l2,
        |T| SqrNormL2::new(T::c(0.8)).unwrap(),
        n = 5,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        norm_l1,
        |T| NormL1::new(T::c(0.7)).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        norm_l1_weighted,
        |T| NormL1::weighted(arr::<T>(&[0.1, 0.5, 1.0, 0.0, 2.0, 0.7])).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        norm_l0,
        |T| NormL0::new(T::c(0.5)).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_jacobian]
    );
    prox_conformance!(
        elastic_net,
        |T| ElasticNet::new(T::c(0.8), T::c(0.6)).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        huber,
        |T| Huber::new(T::c(1.2), T::c(0.5)).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        ind_box,
        |T| IndBox::new(T::c(-0.5), T::c(1.0)).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        ind_box_per_coordinate,
        |T| IndBox::per_coordinate(
            arr::<T>(&[-1.0, 0.0, -0.2, -3.0]),
            arr::<T>(&[1.0, 0.5, 0.3, -2.0])
        )
        .unwrap(),
        n = 4,
        gammas = [1.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        ind_nonnegative,
        |T| IndNonnegative::<T>::new(),
        n = 6,
        gammas = [1.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        norm_lq_half,
        |T| NormLq::half(T::c(0.6)).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_jacobian]
    );
    prox_conformance!(
        norm_lq_two_thirds,
        |T| NormLq::two_thirds(T::c(0.6)).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_jacobian]
    );
    prox_conformance!(
        gen_gaussian_p03,
        |T| GeneralizedGaussian::new(T::c(0.5), T::c(0.3)).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_jacobian]
    );
    prox_conformance!(
        gen_gaussian_p08,
        |T| GeneralizedGaussian::new(T::c(0.5), T::c(0.8)).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_jacobian]
    );
    prox_conformance!(
        gen_gaussian_p1,
        |T| GeneralizedGaussian::new(T::c(0.5), T::c(1.0)).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        gen_gaussian_p15,
        |T| GeneralizedGaussian::new(T::c(0.5), T::c(1.5)).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        gen_gaussian_p2,
        |T| GeneralizedGaussian::new(T::c(0.5), T::c(2.0)).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        cel0,
        |T| Cel0::with_column_norms(T::c(0.4), arr::<T>(&[0.5, 0.8, 1.0, 1.2, 1.5, 2.0])).unwrap(),
        n = 6,
        gammas = [0.3, 2.0],
        checks = [prox_oracle, prox_optimality, prox_jacobian]
    );
    prox_conformance!(
        ind_simplex,
        |T| IndSimplex::new(T::c(1.5)).unwrap(),
        n = 5,
        gammas = [1.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        ind_ball_l2,
        |T| IndBallL2::new(T::c(1.0)).unwrap(),
        n = 5,
        gammas = [1.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        ind_ball_l1,
        |T| IndBallL1::new(T::c(1.2)).unwrap(),
        n = 5,
        gammas = [1.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        norm_l21,
        |T| NormL21::weighted(
            Groups::new(6, vec![vec![0, 3], vec![1], vec![2, 4, 5]]).unwrap(),
            T::c(0.6),
            arr::<T>(&[1.0, 0.5, 1.7])
        )
        .unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        wgsef,
        |T| Wgsef::new(
            Groups::contiguous(&[2, 1, 2, 1, 2]).unwrap(),
            2,
            arr::<T>(&[1.0, 0.5, 2.0, 1.0, 1.5]),
            T::c(0.7)
        )
        .unwrap(),
        n = 8,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau]
    );
    prox_conformance!(
        sparse_envelope,
        |T| Wgsef::new(
            Groups::contiguous(&[1; 6]).unwrap(),
            2,
            Array1::ones(6),
            T::c(1.0)
        )
        .unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau]
    );
    prox_conformance!(
        nuclear_norm,
        |T| NuclearNorm::new(3, 2, T::c(0.5)).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau]
    );
    prox_conformance!(
        least_squares,
        |T| LeastSquares::new(
            DenseMatrix::<T>::gaussian(4, 6, 21).unwrap(),
            arr::<T>(&[1.0, -1.0, 0.5, 2.0])
        )
        .unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        total_variation_iso,
        |T| TotalVariation::new(3, 4, T::c(0.3), TvKind::Isotropic)
            .unwrap()
            .with_tolerance(tv_tol::<T>(), 200_000)
            .unwrap(),
        n = 12,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau]
    );
    prox_conformance!(
        total_variation_aniso,
        |T| TotalVariation::new(3, 4, T::c(0.3), TvKind::Anisotropic)
            .unwrap()
            .with_tolerance(tv_tol::<T>(), 200_000)
            .unwrap(),
        n = 12,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau]
    );
    prox_conformance!(
        conjugate_l1,
        |T| Conjugate::new(NormL1::new(T::c(0.7)).unwrap()).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        conjugate_elastic_net,
        |T| Conjugate::new(ElasticNet::new(T::c(0.8), T::c(0.5)).unwrap()).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        translate_l21,
        |T| Translate::new(
            NormL21::new(Groups::contiguous(&[2, 3]).unwrap(), T::c(0.5)).unwrap(),
            arr::<T>(&[1.0, -0.5, 0.2, 0.0, 2.0])
        )
        .unwrap(),
        n = 5,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        precompose_frame,
        |T| Precompose::new(NormL1::new(T::c(0.6)).unwrap(), frame::<T>(3), T::c(2.0)).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        separable_sum,
        |T| SeparableSum::new(vec![
            (
                3,
                Box::new(NormL1::new(T::c(0.5)).unwrap()) as Box<dyn Prox<T>>
            ),
            (2, Box::new(IndBox::new(T::c(-1.0), T::c(0.5)).unwrap())),
            (2, Box::new(SqrNormL2::new(T::c(2.0)).unwrap())),
        ])
        .unwrap(),
        n = 7,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
    prox_conformance!(
        moreau_envelope_l1,
        |T| MoreauEnvelope::new(NormL1::new(T::c(0.8)).unwrap(), T::c(0.5)).unwrap(),
        n = 6,
        gammas = [0.5, 2.0],
        checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]
    );
}

mod smooth {
    use super::*;

    fn labels<T: Real>(n: usize) -> Array1<T> {
        (0..n)
            .map(|i| if i % 3 == 0 { -T::one() } else { T::one() })
            .collect()
    }

    smooth_conformance!(sqr_norm_l2, |T| SqrNormL2::new(T::c(0.8)).unwrap(), n = 7);
    smooth_conformance!(huber, |T| Huber::new(T::c(1.2), T::c(0.5)).unwrap(), n = 7);
    smooth_conformance!(
        least_squares,
        |T| LeastSquares::new(
            DenseMatrix::<T>::gaussian(8, 5, 31).unwrap(),
            arr::<T>(&[1.0, -1.0, 0.5, 2.0, 0.0, 0.3, -0.7, 1.1])
        )
        .unwrap(),
        n = 5
    );
    smooth_conformance!(
        logistic,
        |T| Logistic::new(
            DenseMatrix::<T>::gaussian(9, 4, 32).unwrap(),
            labels::<T>(9)
        )
        .unwrap(),
        n = 4
    );
    smooth_conformance!(
        multinomial_logistic,
        |T| MultinomialLogistic::new(mat::<T>(8, 3, 33), vec![0, 1, 2, 1, 0, 2, 2, 1], 3).unwrap(),
        n = 9
    );
    smooth_conformance!(
        smoothed_tv_iso,
        |T| SmoothedTv::new(5, 4, T::c(0.7), T::c(0.3), TvKind::Isotropic).unwrap(),
        n = 20
    );
    smooth_conformance!(
        smoothed_tv_aniso,
        |T| SmoothedTv::new(5, 4, T::c(0.7), T::c(0.3), TvKind::Anisotropic).unwrap(),
        n = 20
    );
    smooth_conformance!(
        smoothed_tv_iso_interior_batch,
        |T| SmoothedTv::new(4, 3, T::c(0.7), T::c(0.3), TvKind::Isotropic)
            .unwrap()
            .with_boundary(TvBoundary::Interior)
            .with_images(2)
            .unwrap(),
        n = 24
    );
    smooth_conformance!(
        smoothed_tv_aniso_interior_batch,
        |T| SmoothedTv::new(4, 3, T::c(0.7), T::c(0.3), TvKind::Anisotropic)
            .unwrap()
            .with_boundary(TvBoundary::Interior)
            .with_images(2)
            .unwrap(),
        n = 24
    );
    smooth_conformance!(
        sorsa,
        |T| SorsaOrthonormality::new(5, 3, T::c(0.5)).unwrap(),
        n = 15
    );
    smooth_conformance!(
        moreau_envelope_huber,
        |T| MoreauEnvelope::new(Huber::new(T::c(1.0), T::c(0.4)).unwrap(), T::c(0.5)).unwrap(),
        n = 6
    );
}

#[test]
fn arrays_helper_is_exact() {
    assert_eq!(arr::<f64>(&[1.0, 2.0]), array![1.0, 2.0]);
}
