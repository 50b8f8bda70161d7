//! Function-specific checks: closed forms against independent solutions, reductions to known
//! special cases, certificates, input validation, and gradients against the `echidna`
//! automatic-differentiation crate.

use hyperprox_core::func::*;
use hyperprox_core::ops::*;
use hyperprox_core::testing::random_point;
use hyperprox_core::Error;
use ndarray::{array, Array1, Array2};

#[test]
fn lq_closed_forms_match_newton_solution() {
    // NormLq's closed forms (Xu et al. 2012, Cao et al. 2013) against the safeguarded Newton
    // solver of GeneralizedGaussian with the same exponent.
    for (lq, p) in [
        (NormLq::half(0.8).unwrap(), 0.5),
        (NormLq::two_thirds(0.8).unwrap(), 2.0 / 3.0),
    ] {
        let gg = GeneralizedGaussian::new(0.8, p).unwrap();
        for gamma in [0.3, 1.0, 3.0] {
            let x = Array1::linspace(-6.0, 6.0, 2401);
            let a = lq.prox(x.view(), gamma).unwrap();
            let b = gg.prox(x.view(), gamma).unwrap();
            for i in 0..x.len() {
                // Away from the threshold, where both 0 and the root are minimizers.
                if (a[i] == 0.0) != (b[i] == 0.0) {
                    let mu = gamma * 0.8;
                    let phi = |t: f64| 0.5 * (t - x[i]).powi(2) + mu * t.abs().powf(p);
                    assert!((phi(a[i]) - phi(b[i])).abs() < 1e-9, "x = {}", x[i]);
                    continue;
                }
                assert!(
                    (a[i] - b[i]).abs() < 1e-9 * (1.0 + x[i].abs()),
                    "q = {p}, γ = {gamma}, x = {}: {} vs {}",
                    x[i],
                    a[i],
                    b[i]
                );
            }
        }
    }
}

#[test]
fn lq_thresholds_are_the_published_ones() {
    // q = 1/2: prox vanishes iff |x| ≤ (3/2)μ^{2/3} (μ = γλ, ½-scaled objective).
    let f = NormLq::half(1.0).unwrap();
    let t = 1.5f64;
    assert_eq!(f.prox(array![t - 1e-9].view(), 1.0).unwrap()[0], 0.0);
    assert!(f.prox(array![t + 1e-9].view(), 1.0).unwrap()[0] > 0.9);
    // q = 2/3: threshold 2(2μ/3)^{3/4}.
    let f = NormLq::two_thirds(1.0).unwrap();
    let t = 2.0 * (2.0f64 / 3.0).powf(0.75);
    assert_eq!(f.prox(array![t - 1e-9].view(), 1.0).unwrap()[0], 0.0);
    assert!(f.prox(array![t + 1e-9].view(), 1.0).unwrap()[0] > 0.5);
}

#[test]
fn generalized_gaussian_reduces_to_soft_threshold_and_scaling() {
    let x = random_point::<f64>(9, 2.0, 1);
    let p1 = GeneralizedGaussian::new(0.7, 1.0)
        .unwrap()
        .prox(x.view(), 1.3)
        .unwrap();
    let l1 = NormL1::new(0.7).unwrap().prox(x.view(), 1.3).unwrap();
    assert_eq!(p1, l1);
    let p2 = GeneralizedGaussian::new(0.5, 2.0)
        .unwrap()
        .prox(x.view(), 2.0)
        .unwrap();
    assert!((&p2 - &x.mapv(|v| v / 3.0)).iter().all(|e| e.abs() < 1e-15));
}

#[test]
fn cel0_equals_l0_objective_at_threshold_points() {
    // CEL0's value equals λ for |x| ≥ √(2λ)/a and is continuous with value 0 at 0.
    let f = Cel0::new(0.5, 2.0).unwrap();
    let tau = 1.0f64 / 2.0; // √(2·0.5)/2
    assert_eq!(f.value(array![0.0].view()).unwrap(), 0.0);
    assert!((f.value(array![tau].view()).unwrap() - 0.5).abs() < 1e-15);
    assert!((f.value(array![3.0].view()).unwrap() - 0.5).abs() < 1e-15);
    // For γa² < 1 the prox is the published closed form.
    let (g, a, lam) = (0.2f64, 2.0f64, 0.5f64);
    for &u in &[0.05, 0.2, 0.4, 0.6] {
        let p = f.prox(array![u].view(), g).unwrap()[0];
        let expect = u.min((u - g * a * (2.0 * lam).sqrt()).max(0.0) / (1.0 - g * a * a));
        assert!((p - expect).abs() < 1e-15, "{u}: {p} vs {expect}");
    }
}

#[test]
fn wgsef_reduces_to_known_functions() {
    let groups = Groups::contiguous(&[2, 1, 3]).unwrap();
    let d = array![1.0, 0.5, 2.0];
    let x = random_point::<f64>(6, 1.0, 2);
    let norms = [
        (x[0] * x[0] + x[1] * x[1]).sqrt(),
        x[2].abs(),
        (x[3] * x[3] + x[4] * x[4] + x[5] * x[5]).sqrt(),
    ];
    // k ≥ number of groups: W = ½ Σ d_g ‖x_g‖².
    let w3 = Wgsef::new(groups.clone(), 3, d.clone(), 1.0).unwrap();
    let q: f64 = (0..3).map(|g| 0.5 * d[g] * norms[g] * norms[g]).sum();
    assert!((w3.value(x.view()).unwrap() - q).abs() < 1e-12);
    let p = w3.prox(x.view(), 0.7).unwrap();
    let c = [1.0 / (1.0 + 0.7), 1.0 / (1.0 + 0.35), 1.0 / (1.0 + 1.4)];
    let expect = array![
        x[0] * c[0],
        x[1] * c[0],
        x[2] * c[1],
        x[3] * c[2],
        x[4] * c[2],
        x[5] * c[2]
    ];
    assert!((&p - &expect).iter().all(|e| e.abs() < 1e-12));
    // k = 1: W = ½ (Σ √d_g ‖x_g‖)² (the dual norm of max_g ‖y_g‖/√d_g, squared).
    let w1 = Wgsef::new(groups, 1, d.clone(), 1.0).unwrap();
    let s: f64 = (0..3).map(|g| d[g].sqrt() * norms[g]).sum();
    assert!((w1.value(x.view()).unwrap() - 0.5 * s * s).abs() < 1e-12);
    // W ≥ q everywhere (q is a convex minorant of q + ι_C), with equality on vectors with
    // ≤ k nonzero groups.
    let w2 = Wgsef::new(Groups::contiguous(&[2, 1, 3]).unwrap(), 2, d.clone(), 1.0).unwrap();
    assert!(w2.value(x.view()).unwrap() >= q - 1e-12);
    assert!(w2.value(x.view()).unwrap() <= w1.value(x.view()).unwrap() + 1e-12);
    let mut y = x.clone();
    y[2] = 0.0;
    let qy: f64 = 0.5 * d[0] * norms[0] * norms[0] + 0.5 * d[2] * norms[2] * norms[2];
    assert!((w2.value(y.view()).unwrap() - qy).abs() < 1e-12);
}

#[test]
fn tv_prox_is_certified_and_keeps_constants() {
    let tv = TotalVariation::new(8, 8, 0.2, TvKind::Isotropic)
        .unwrap()
        .with_tolerance(1e-7, 100_000)
        .unwrap();
    // A piecewise-constant image with noise.
    let v = Array1::from_shape_fn(64, |i| if i % 8 < 4 { 1.0 } else { 0.0 })
        + random_point::<f64>(64, 0.1, 3);
    let r = tv.prox_certified(v.view(), 1.0).unwrap();
    assert!((2.0 * r.gap).sqrt() <= 1e-7);
    // Dual feasibility ‖q_p‖ ≤ μ and primal-dual link x = v − ∇ᵀq.
    for p in 0..64 {
        assert!((r.q[p] * r.q[p] + r.q[64 + p] * r.q[64 + p]).sqrt() <= 0.2 + 1e-12);
    }
    let g = Gradient2d::new(8, 8).unwrap();
    let x = &v - &g.adjoint(r.q.view()).unwrap();
    assert!((&x - &r.x).iter().all(|e| e.abs() < 1e-12));
    // TV denoising lowers TV and keeps the mean (∇ᵀ maps into mean-zero images).
    assert!(tv.value(r.x.view()).unwrap() < tv.value(v.view()).unwrap());
    assert!((r.x.sum() - v.sum()).abs() < 1e-10);
    // Constants are fixed points.
    let c = Array1::from_elem(64, 0.3);
    assert!((&tv.prox(c.view(), 5.0).unwrap() - &c)
        .iter()
        .all(|e| e.abs() < 1e-9));
    // A too-small iteration budget is reported, not silently returned.
    let tight = TotalVariation::new(8, 8, 0.2, TvKind::Isotropic)
        .unwrap()
        .with_tolerance(1e-12, 3)
        .unwrap();
    assert!(matches!(
        tight.prox(v.view(), 1.0),
        Err(Error::NotConverged { .. })
    ));
}

#[test]
fn nuclear_norm_prox_thresholds_singular_values() {
    // diag(3, 1) embedded in a 3 × 2 matrix, rotated: SVT at 1.5 keeps rank 1.
    let x = array![3.0, 0.0, 0.0, 1.0, 0.0, 0.0];
    let f = NuclearNorm::<f64>::new(3, 2, 1.0).unwrap();
    assert!((f.value(x.view()).unwrap() - 4.0).abs() < 1e-12);
    let p = f.prox(x.view(), 1.5).unwrap();
    assert!((&p - &array![1.5, 0.0, 0.0, 0.0, 0.0, 0.0])
        .iter()
        .all(|e| e.abs() < 1e-12));
}

#[test]
fn projections_land_in_their_sets() {
    let x = random_point::<f64>(7, 3.0, 4);
    let p = IndSimplex::new(2.0).unwrap().prox(x.view(), 1.0).unwrap();
    assert!((p.sum() - 2.0).abs() < 1e-12 && p.iter().all(|&v| v >= 0.0));
    let p = IndBallL1::new(1.0).unwrap().prox(x.view(), 1.0).unwrap();
    assert!((p.mapv(f64::abs).sum() - 1.0).abs() < 1e-12);
    let p = IndBallL2::new(1.0).unwrap().prox(x.view(), 1.0).unwrap();
    assert!((p.dot(&p).sqrt() - 1.0).abs() < 1e-12);
}

#[test]
fn bad_inputs_are_errors_with_fix_hints() {
    let l1 = NormL1::new(1.0).unwrap();
    let e = l1.prox(array![1.0].view(), 0.0).unwrap_err();
    assert!(
        matches!(e, Error::InvalidParameter { .. }) && e.to_string().contains("> 0"),
        "{e}"
    );
    assert!(l1.prox(array![1.0].view(), -1.0).is_err());
    assert!(l1.prox(array![1.0].view(), f64::NAN).is_err());
    let e = l1.prox(array![1.0, f64::NAN].view(), 1.0).unwrap_err();
    assert!(matches!(e, Error::NonFinite { index: 1, .. }), "{e}");
    assert!(l1.value(array![f64::INFINITY].view()).is_err());
    assert!(NormL1::new(-1.0).is_err());
    assert!(NormLq::new(1.0, 0.3).is_err());
    assert!(GeneralizedGaussian::new(1.0, 2.5).is_err());
    assert!(GeneralizedGaussian::new(1.0, 0.0).is_err());
    assert!(ElasticNet::new(1.0, 1.5).is_err());
    assert!(Huber::new(1.0, 0.0).is_err());
    assert!(IndBox::new(1.0, -1.0).is_err());
    assert!(Cel0::with_column_norms(1.0, array![1.0, 0.0]).is_err());
    let e = Groups::new(3, vec![vec![0, 1], vec![], vec![2]]).unwrap_err();
    assert!(e.to_string().contains("non-empty"), "{e}");
    assert!(Groups::new(3, vec![vec![0, 1], vec![1, 2]]).is_err());
    assert!(Groups::new(3, vec![vec![0, 1]]).is_err());
    assert!(Groups::new(3, vec![vec![0, 5], vec![1, 2]]).is_err());
    let w = NormL1::weighted(array![1.0, 2.0]).unwrap();
    assert!(matches!(
        w.prox(array![1.0].view(), 1.0),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(Wgsef::new(
        Groups::contiguous(&[1, 1]).unwrap(),
        0,
        array![1.0, 1.0],
        1.0
    )
    .is_err());
    assert!(IndSimplex::new(0.0).is_err());
    assert!(TotalVariation::new(4, 4, 1.0, TvKind::Isotropic)
        .unwrap()
        .prox(Array1::zeros(15).view(), 1.0)
        .is_err());
    assert!(SmoothedTv::new(4, 4, 1.0, 0.0, TvKind::Isotropic).is_err());
    let ls = LeastSquares::new(
        DenseMatrix::<f64>::gaussian(3, 2, 0).unwrap(),
        array![1.0, 2.0],
    );
    assert!(matches!(ls, Err(Error::ShapeMismatch { .. })));
    assert!(Logistic::new(
        DenseMatrix::<f64>::gaussian(2, 2, 0).unwrap(),
        array![1.0, 0.0]
    )
    .is_err());
    assert!(MultinomialLogistic::new(Array2::<f64>::zeros((2, 2)), vec![0, 3], 3).is_err());
    let frame_bad = DenseMatrix::new(array![[1.0, 0.0], [1.0, 1.0]]).unwrap();
    assert!(Precompose::new(NormL1::new(1.0).unwrap(), frame_bad, 1.0).is_err());
    assert!(Conjugate::new(NormL0::new(1.0).unwrap()).is_err());
    assert!(NormL0::new(1.0)
        .unwrap()
        .prox_jvp_into(
            Array1::zeros(1).view_mut(),
            array![1.0].view(),
            1.0,
            array![1.0, 2.0].view()
        )
        .is_err());
    assert!(matches!(
        NuclearNorm::new(2, 2, 1.0).unwrap().prox_jvp_into(
            Array1::zeros(4).view_mut(),
            Array1::zeros(4).view(),
            1.0,
            Array1::zeros(4).view()
        ),
        Err(Error::Unsupported { .. })
    ));
}

#[test]
fn lipschitz_constants_bound_the_gradient_variation() {
    let a = DenseMatrix::<f64>::gaussian(10, 6, 3).unwrap();
    let ls = LeastSquares::new(a.clone(), Array1::ones(10)).unwrap();
    let lg = Logistic::new(
        a,
        (0..10)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect(),
    )
    .unwrap();
    let tv = SmoothedTv::new(4, 5, 0.5, 0.1, TvKind::Isotropic).unwrap();
    let ml = MultinomialLogistic::new(
        DenseMatrix::<f64>::gaussian(12, 3, 4)
            .unwrap()
            .matrix()
            .to_owned(),
        (0..12).map(|i| i % 4).collect(),
        4,
    )
    .unwrap();
    fn check<F: Smooth<f64>>(f: &F, n: usize) {
        let l = f.lipschitz().unwrap();
        for s in 0..20 {
            let x = random_point::<f64>(n, 1.0, s);
            let y = &x + &random_point::<f64>(n, 0.01, 100 + s);
            let d = &f.gradient(x.view()).unwrap() - &f.gradient(y.view()).unwrap();
            let dx = &x - &y;
            assert!(
                d.dot(&d).sqrt() <= l * dx.dot(&dx).sqrt() * (1.0 + 1e-9),
                "{}",
                f.name()
            );
        }
    }
    check(&ls, 6);
    check(&lg, 6);
    check(&tv, 20);
    check(&ml, 12);
}

mod echidna_oracle {
    //! Gradients against reverse-mode AD (echidna) of independent, plainly written formulas.
    use super::*;
    use num_traits::Float;

    fn close(a: &[f64], b: &[f64]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-10 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn logistic_gradient() {
        let a = DenseMatrix::<f64>::gaussian(7, 4, 5).unwrap();
        let am = a.matrix().to_owned();
        let y: Vec<f64> = (0..7)
            .map(|i| if i % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let f = Logistic::new(a, Array1::from(y.clone())).unwrap();
        let x = random_point::<f64>(4, 1.0, 1);
        let g_ad = echidna::grad(
            |w| {
                let mut s = w[0] * 0.0;
                for i in 0..7 {
                    let mut z = w[0] * 0.0;
                    for j in 0..4 {
                        z += w[j] * am[(i, j)];
                    }
                    s += (Float::exp(z * (-y[i])) + 1.0).ln();
                }
                s
            },
            x.as_slice().unwrap(),
        );
        close(f.gradient(x.view()).unwrap().as_slice().unwrap(), &g_ad);
    }

    #[test]
    fn smoothed_tv_gradient() {
        let (h, w, lam, nu) = (4usize, 5usize, 0.7, 0.2);
        let f = SmoothedTv::new(h, w, lam, nu, TvKind::Isotropic).unwrap();
        let x = random_point::<f64>(h * w, 1.0, 2);
        let g_ad = echidna::grad(
            |u| {
                let mut s = u[0] * 0.0;
                for i in 0..h {
                    for j in 0..w {
                        let dh = if j + 1 < w {
                            u[i * w + j + 1] - u[i * w + j]
                        } else {
                            u[0] * 0.0
                        };
                        let dv = if i + 1 < h {
                            u[(i + 1) * w + j] - u[i * w + j]
                        } else {
                            u[0] * 0.0
                        };
                        s += (dh * dh + dv * dv + nu * nu).sqrt() * lam;
                    }
                }
                s
            },
            x.as_slice().unwrap(),
        );
        close(f.gradient(x.view()).unwrap().as_slice().unwrap(), &g_ad);
    }

    #[test]
    fn sorsa_gradient() {
        let (m, r) = (5usize, 3usize);
        let f = SorsaOrthonormality::new(m, r, 0.5).unwrap();
        let x = random_point::<f64>(m * r, 1.0, 3);
        let g_ad = echidna::grad(
            |u| {
                let mut s = u[0] * 0.0;
                for a in 0..r {
                    for b in 0..r {
                        let mut g = u[0] * 0.0;
                        for i in 0..m {
                            g += u[i * r + a] * u[i * r + b];
                        }
                        if a == b {
                            g = g - 1.0;
                        }
                        s += g * g;
                    }
                }
                s * 0.5
            },
            x.as_slice().unwrap(),
        );
        close(f.gradient(x.view()).unwrap().as_slice().unwrap(), &g_ad);
    }

    #[test]
    fn multinomial_logistic_gradient() {
        let (n, d, k) = (6usize, 3usize, 3usize);
        let xm = DenseMatrix::<f64>::gaussian(n, d, 6)
            .unwrap()
            .matrix()
            .to_owned();
        let labels = vec![0, 2, 1, 1, 0, 2];
        let f = MultinomialLogistic::new(xm.clone(), labels.clone(), k).unwrap();
        let w0 = random_point::<f64>(d * k, 1.0, 4);
        let g_ad = echidna::grad(
            |w| {
                let mut s = w[0] * 0.0;
                for i in 0..n {
                    let z: Vec<_> = (0..k)
                        .map(|c| (0..d).fold(w[0] * 0.0, |acc, j| acc + w[j * k + c] * xm[(i, j)]))
                        .collect();
                    let lse = z.iter().fold(w[0] * 0.0, |acc, &zc| acc + zc.exp()).ln();
                    s = s + lse - z[labels[i]];
                }
                s / n as f64
            },
            w0.as_slice().unwrap(),
        );
        close(f.gradient(w0.view()).unwrap().as_slice().unwrap(), &g_ad);
    }
}

#[test]
fn smooth_proxes_satisfy_the_gradient_equation() {
    // For smooth f the prox optimality condition is the equation (x − p)/γ = ∇f(p).
    use hyperprox_core::testing::{check_prox_smooth_optimality, Tolerance};
    let tol = Tolerance::for_type::<f64>().identity;
    let x = random_point::<f64>(6, 2.0, 9);
    for gamma in [0.3, 1.0, 4.0] {
        check_prox_smooth_optimality(&SqrNormL2::new(0.8).unwrap(), x.view(), gamma, tol).unwrap();
        check_prox_smooth_optimality(&Huber::new(1.2, 0.5).unwrap(), x.view(), gamma, tol).unwrap();
        let ls = LeastSquares::new(
            DenseMatrix::<f64>::gaussian(4, 6, 2).unwrap(),
            array![1.0, 0.0, -1.0, 2.0],
        )
        .unwrap();
        check_prox_smooth_optimality(&ls, x.view(), gamma, tol).unwrap();
        let me = MoreauEnvelope::new(NormL1::new(0.8).unwrap(), 0.5).unwrap();
        check_prox_smooth_optimality(&me, x.view(), gamma, tol).unwrap();
    }
}

#[test]
fn tv_prox_banded_parallel_sweep_equals_the_sequential_one() {
    // 300 × 300 ≥ 2¹⁶ pixels: the FGP sweep runs in row bands on the rayon pool.
    let (h, w) = (300, 300);
    let v = random_point::<f64>(h * w, 0.3, 5)
        + Array1::from_shape_fn(h * w, |k| if (k % w) < 150 { 1.0 } else { 0.0 });
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let tv = TotalVariation::new(h, w, 0.1, TvKind::Isotropic).unwrap();
            tv.solve_rof(v.view(), 1e-3).unwrap()
        })
    };
    let (seq, par) = (run(1), run(3));
    assert_eq!(seq.iterations, par.iterations);
    assert!(
        seq.x.iter().zip(par.x.iter()).all(|(a, b)| a == b),
        "bands must reproduce the sequential sweep exactly"
    );
}

/// `solve_rof`'s relative stop `G ≤ rel_tol·(P(x) − G)` with `P(x) = ½‖x − v‖² + λTV(x)`
/// computed here from the returned point, and the FGP certificate checked every 5 iterations:
/// the run stops at the first check that passes (a fresh solver given 5 iterations fewer does
/// not converge), for both TV kinds.
#[test]
fn rof_stops_at_the_first_certified_relative_gap() {
    let v = Array1::from_shape_fn(100, |i| if (i / 10 + i % 10) % 3 == 0 { 1.0 } else { 0.2 })
        + random_point::<f64>(100, 0.2, 9);
    for kind in [TvKind::Isotropic, TvKind::Anisotropic] {
        let fresh = |iters| {
            TotalVariation::new(10, 10, 0.15, kind)
                .unwrap()
                .with_tolerance(1e-6, iters)
                .unwrap()
        };
        let rel = 1e-6;
        let r = fresh(100_000).solve_rof(v.view(), rel).unwrap();
        let p = 0.5 * (&r.x - &v).mapv(|e| e * e).sum() + fresh(1).value(r.x.view()).unwrap();
        assert!(
            r.gap <= rel * (p - r.gap),
            "{kind:?}: gap {:e}, P {p}",
            r.gap
        );
        assert!(
            r.iterations >= 10 && r.iterations % 5 == 0,
            "{}",
            r.iterations
        );
        assert!(
            fresh(r.iterations - 5).solve_rof(v.view(), rel).is_err(),
            "{kind:?}: already certified 5 iterations earlier"
        );
    }
}

/// The FGP certificate at an arbitrary feasible dual point `q` (‖q_p‖ ≤ μ): `x = v − ∇ᵀq`, the
/// gap `μ‖∇x‖ − ⟨q, ∇x⟩` and the primal value `½‖x − v‖² + μ·TV(x)`, written out here.
#[test]
fn fgp_certificate_follows_its_definition() {
    let tv = TotalVariation::new(6, 7, 1.0, TvKind::Isotropic).unwrap();
    let g = Gradient2d::new(6, 7).unwrap();
    let v = random_point::<f64>(42, 1.0, 21);
    let mu = 0.3;
    let mut q = random_point::<f64>(84, 1.0, 22);
    for p in 0..42 {
        let nrm = (q[p] * q[p] + q[42 + p] * q[42 + p]).sqrt();
        let s = 0.9 * mu / nrm.max(mu);
        q[p] *= s;
        q[42 + p] *= s;
    }
    let mut x = Array1::zeros(42);
    let mut k = CpuFgp::new(&tv);
    let (gap, primal) = k.certificate(&v, mu, &q, &mut x);
    let want_x = &v - &g.adjoint(q.view()).unwrap();
    assert!((&x - &want_x).iter().all(|e| e.abs() < 1e-14));
    let tvx = tv.value(x.view()).unwrap();
    let gx = g.apply(x.view()).unwrap();
    let want_gap = (mu * tvx - q.dot(&gx)).max(0.0);
    assert!(
        (gap - want_gap).abs() <= 1e-12 * tvx,
        "gap {gap} vs {want_gap}"
    );
    let want_p = 0.5 * (&x - &v).mapv(|e| e * e).sum() + mu * tvx;
    assert!(
        (primal - want_p).abs() <= 1e-12 * want_p,
        "primal {primal} vs {want_p}"
    );
}

/// With λ = 0 the ℓq prox is the identity, so its Jacobian is 1 everywhere, 0 included (where
/// for λ > 0 the prox is flat at 0 and its Jacobian 0).
#[test]
fn lq_prox_jacobian_is_the_identity_for_lambda_zero() {
    for q in [0.5, 2.0 / 3.0] {
        let x = ndarray::array![0.0, 0.7, -1.3];
        let v = ndarray::array![1.0, 2.0, -3.0];
        let mut out = ndarray::Array1::zeros(3);
        let id = NormLq::new(0.0, q).unwrap();
        id.prox_jvp_into(out.view_mut(), x.view(), 0.8, v.view())
            .unwrap();
        assert_eq!(out, v, "q = {q}");
        let lq = NormLq::new(0.5, q).unwrap();
        lq.prox_jvp_into(out.view_mut(), x.view(), 0.8, v.view())
            .unwrap();
        assert_eq!(out[0], 0.0, "q = {q}");
    }
}

/// `½‖Ax − b‖²` with a diagonal `A` such that `I + γAᵀA = diag(10^{κ·i/(n−1)})`: its prox and
/// prox Jacobian are solved by CG, which in floating point needs far more than `n` iterations
/// on such a spread of eigenvalues (201 for n = 20, κ = 14; 596 for n = 30).
fn ill_conditioned_least_squares(
    n: usize,
    kappa: f64,
) -> (LeastSquares<f64, Diagonal<f64>>, Array1<f64>) {
    let m: Array1<f64> =
        Array1::from_iter((0..n).map(|i| 10f64.powf(kappa * i as f64 / (n - 1) as f64)));
    let d = m.mapv(|mi| (mi - 1.0).sqrt());
    (
        LeastSquares::new(Diagonal::new(d).unwrap(), Array1::zeros(n)).unwrap(),
        m,
    )
}

#[test]
fn least_squares_prox_solves_systems_that_need_more_cg_iterations_than_unknowns() {
    // Its documented CG cap is 10n + 100 (300 for n = 20): the answer must be exact even when
    // CG takes 201 iterations, and the cap must stop the 596 that n = 30 needs (400 allowed)
    // with an error, not a silently inaccurate Jacobian.
    let (ls, m) = ill_conditioned_least_squares(20, 14.0);
    let v = Array1::from_elem(20, 1.0);
    let exact = m.mapv(|mi| 1.0 / mi);
    let jvp = |ls: &LeastSquares<f64, Diagonal<f64>>, v: &Array1<f64>| {
        let mut out = Array1::zeros(v.len());
        ls.prox_jvp_into(out.view_mut(), Array1::zeros(v.len()).view(), 1.0, v.view())
            .map(|()| out)
    };
    let jv = jvp(&ls, &v).unwrap();
    let p = ls.prox(v.view(), 1.0).unwrap();
    for (name, got) in [("prox_jvp", &jv), ("prox", &p)] {
        for i in 0..20 {
            // Each component to 1e-6 of itself (the residual is 1e-12·‖v‖ = 4.5e-12).
            assert!(
                (got[i] - exact[i]).abs() <= 1e-6 * exact[i] + 4.5e-12,
                "{name}[{i}] = {} vs {}",
                got[i],
                exact[i]
            );
        }
    }
    let (ls, _) = ill_conditioned_least_squares(30, 14.0);
    let v = Array1::from_elem(30, 1.0);
    for r in [jvp(&ls, &v), ls.prox(v.view(), 1.0)] {
        match r {
            Err(Error::NotConverged { iterations, .. }) => assert_eq!(iterations, 400),
            other => panic!("expected CG to stop at its cap of 400 iterations: {other:?}"),
        }
    }
}

/// Checks the flags a function sets where they can be seen numerically, at random points of
/// dimension `n`: an indicator takes only the values 0 and +∞; a separable `f` is the sum of
/// its coordinates' values, `f(x) + (n − 1)·f(0) = Σᵢ f(xᵢeᵢ)`; a convex `f` satisfies the
/// midpoint inequality `f((x + y)/2) ≤ (f(x) + f(y))/2`.
fn check_stated_properties(f: &dyn Function<f64>, n: usize) {
    let p = f.properties();
    let rel = |a: f64, b: f64| (a - b).abs() <= 1e-10 * (1.0 + a.abs() + b.abs());
    for s in 0..20u64 {
        let scale = [0.1, 1.0, 3.0][s as usize % 3];
        let x = random_point::<f64>(n, scale, 900 + s);
        let y = random_point::<f64>(n, scale, 950 + s);
        let fx = f.value(x.view()).unwrap();
        if p.indicator {
            assert!(fx == 0.0 || fx == f64::INFINITY, "{}: {fx}", f.name());
        }
        if p.separable {
            let f0 = f.value(Array1::zeros(n).view()).unwrap();
            let sum: f64 = (0..n)
                .map(|i| {
                    let mut e = Array1::zeros(n);
                    e[i] = x[i];
                    f.value(e.view()).unwrap()
                })
                .sum();
            if fx.is_finite() && sum.is_finite() {
                assert!(
                    rel(fx + (n as f64 - 1.0) * f0, sum),
                    "{}: not separable",
                    f.name()
                );
            }
        }
        if p.convex {
            let fy = f.value(y.view()).unwrap();
            let fm = f.value(((&x + &y) / 2.0).view()).unwrap();
            if fx.is_finite() && fy.is_finite() {
                assert!(
                    fm <= 0.5 * (fx + fy) + 1e-10 * (1.0 + fx.abs() + fy.abs()),
                    "{}: midpoint inequality fails",
                    f.name()
                );
            }
        }
    }
}

#[test]
fn functions_state_the_properties_of_their_mathematics() {
    // The flags are the documented facts (convex, separable, an indicator, smooth with a
    // Lipschitz gradient, a prox in closed form); `Conjugate::new` refuses a function that does
    // not state convexity, `MoreauEnvelope` derives its smoothness from it, and the test kit
    // runs the subgradient check only for convex functions.
    let props = |convex, separable, indicator, smooth, exact_prox| Properties {
        convex,
        separable,
        indicator,
        smooth,
        exact_prox,
    };
    let (t, f) = (true, false);
    let a = DenseMatrix::<f64>::gaussian(8, 5, 3).unwrap();
    let labels: Array1<f64> = (0..8)
        .map(|i| if i % 3 == 0 { 1.0 } else { -1.0 })
        .collect();
    let feats = DenseMatrix::<f64>::gaussian(9, 3, 4)
        .unwrap()
        .matrix()
        .to_owned();
    let groups = || Groups::contiguous(&[2, 1, 2]).unwrap();
    let cases: Vec<(Box<dyn Function<f64>>, usize, Properties)> = vec![
        (
            Box::new(TotalVariation::new(3, 4, 0.7, TvKind::Isotropic).unwrap()),
            12,
            props(t, f, f, f, f),
        ),
        (
            Box::new(TotalVariation::new(4, 3, 0.7, TvKind::Anisotropic).unwrap()),
            12,
            props(t, f, f, f, f),
        ),
        (
            Box::new(SmoothedTv::new(3, 4, 0.7, 0.1, TvKind::Isotropic).unwrap()),
            12,
            props(t, f, f, t, f),
        ),
        (
            Box::new(SmoothedTv::new(4, 3, 0.7, 0.1, TvKind::Anisotropic).unwrap()),
            12,
            props(t, f, f, t, f),
        ),
        (
            Box::new(LeastSquares::new(a.clone(), Array1::ones(8)).unwrap()),
            5,
            props(t, f, f, t, f),
        ),
        (
            Box::new(Logistic::new(a, labels).unwrap()),
            5,
            props(t, f, f, t, f),
        ),
        (
            Box::new(MultinomialLogistic::new(feats, (0..9).map(|i| i % 3).collect(), 3).unwrap()),
            9,
            props(t, f, f, t, f),
        ),
        (
            Box::new(SmoothedTv::new(3, 4, 0.5, 0.1, TvKind::Isotropic).unwrap()),
            12,
            props(t, f, f, t, f),
        ),
        (
            Box::new(TotalVariation::new(3, 4, 0.5, TvKind::Anisotropic).unwrap()),
            12,
            props(t, f, f, f, f),
        ),
        (
            Box::new(NormL21::new(groups(), 0.5).unwrap()),
            5,
            props(t, f, f, f, t),
        ),
        (
            Box::new(Wgsef::new(groups(), 2, Array1::ones(3), 0.7).unwrap()),
            5,
            props(t, f, f, f, t),
        ),
        (
            Box::new(NuclearNorm::new(3, 2, 0.5).unwrap()),
            6,
            props(t, f, f, f, t),
        ),
        (
            Box::new(SorsaOrthonormality::new(4, 2, 0.5).unwrap()),
            8,
            props(f, f, f, t, f),
        ),
        (
            Box::new(IndBallL2::new(1.5).unwrap()),
            4,
            props(t, f, t, f, t),
        ),
        (
            Box::new(IndBallL1::new(1.5).unwrap()),
            4,
            props(t, f, t, f, t),
        ),
        (
            Box::new(IndSimplex::new(1.0).unwrap()),
            4,
            props(t, f, t, f, t),
        ),
        (
            Box::new(IndBox::new(-0.5, 1.0).unwrap()),
            4,
            props(t, t, t, f, t),
        ),
        (Box::new(NormL1::new(0.7).unwrap()), 4, props(t, t, f, f, t)),
        (Box::new(NormL0::new(0.7).unwrap()), 4, props(f, t, f, f, t)),
        (
            Box::new(Conjugate::new(NormL1::new(0.7).unwrap()).unwrap()),
            4,
            props(t, t, f, f, t),
        ),
        (
            Box::new(Conjugate::new(IndBallL2::new(1.0).unwrap()).unwrap()),
            4,
            props(t, f, f, f, t),
        ),
        (
            Box::new(MoreauEnvelope::new(NormL1::new(0.8).unwrap(), 0.5).unwrap()),
            4,
            props(t, t, f, t, t),
        ),
        (
            Box::new(MoreauEnvelope::new(NormL0::new(0.8).unwrap(), 0.5).unwrap()),
            4,
            props(f, t, f, f, t),
        ),
        (
            Box::new(
                MoreauEnvelope::new(
                    LeastSquares::new(
                        DenseMatrix::<f64>::gaussian(3, 4, 5).unwrap(),
                        Array1::ones(3),
                    )
                    .unwrap(),
                    0.5,
                )
                .unwrap(),
            ),
            4,
            props(t, f, f, t, f),
        ),
        (
            Box::new(Precompose::new(IndBallL2::new(1.0).unwrap(), frame_2(2), 2.0).unwrap()),
            4,
            props(t, f, t, f, t),
        ),
        (
            Box::new(Precompose::new(NormL0::new(1.0).unwrap(), frame_2(2), 2.0).unwrap()),
            4,
            props(f, f, f, f, t),
        ),
        (
            Box::new(Translate::new(NormL1::new(0.7).unwrap(), Array1::ones(4)).unwrap()),
            4,
            props(t, t, f, f, t),
        ),
        (
            Box::new(
                SeparableSum::new(vec![
                    (2, Box::new(NormL1::new(0.7).unwrap()) as Box<dyn Prox<f64>>),
                    (2, Box::new(IndBox::new(-1.0, 1.0).unwrap())),
                ])
                .unwrap(),
            ),
            4,
            props(t, t, f, f, t),
        ),
        (
            Box::new(
                SeparableSum::new(vec![
                    (2, Box::new(IndNonnegative::new()) as Box<dyn Prox<f64>>),
                    (2, Box::new(IndBox::new(-1.0, 1.0).unwrap())),
                ])
                .unwrap(),
            ),
            4,
            props(t, t, t, f, t),
        ),
        (
            Box::new(
                SeparableSum::new(vec![
                    (2, Box::new(NormL0::new(0.7).unwrap()) as Box<dyn Prox<f64>>),
                    (
                        2,
                        Box::new(
                            LeastSquares::new(
                                DenseMatrix::<f64>::gaussian(3, 2, 7).unwrap(),
                                Array1::ones(3),
                            )
                            .unwrap(),
                        ),
                    ),
                ])
                .unwrap(),
            ),
            4,
            props(f, f, f, f, f),
        ),
    ];
    for (fun, n, want) in &cases {
        assert_eq!(fun.properties(), *want, "{}", fun.name());
        check_stated_properties(&**fun, *n);
    }
}

/// `[I I]` (`n × 2n`): a tight frame with `L Lᵀ = 2I`.
fn frame_2(n: usize) -> DenseMatrix<f64> {
    let mut a = Array2::zeros((n, 2 * n));
    for i in 0..n {
        a[(i, i)] = 1.0;
        a[(i, n + i)] = 1.0;
    }
    DenseMatrix::new(a).unwrap()
}
