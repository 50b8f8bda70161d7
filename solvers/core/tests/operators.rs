//! Operator-specific checks beyond the adjoint conformance suite.

use hyperprox_core::linalg::Real;
use hyperprox_core::ops::*;
use hyperprox_core::Error;
use ndarray::{array, Array1, Array2};

/// The gradient's norm is exact: the largest singular value of its matrix (built column by
/// column, SVD by faer) on square, wide, tall and degenerate grids; on 256² it is
/// `2√2·sin(255π/512)`, within 1e-3 of √8.
#[test]
fn gradient_norm_is_the_largest_singular_value() {
    for (h, w) in [(1usize, 1usize), (1, 6), (5, 1), (4, 4), (5, 7), (9, 3)] {
        let g = Gradient2d::new(h, w).unwrap();
        let n = h * w;
        let mut m = Array2::<f64>::zeros((2 * n, n));
        for j in 0..n {
            let mut e = Array1::zeros(n);
            e[j] = 1.0;
            m.column_mut(j).assign(&g.apply(e.view()).unwrap());
        }
        let (_, s, _) = f64::thin_svd(m.view()).unwrap();
        let got: f64 = g.opnorm_estimate(PowerIteration::default()).unwrap();
        assert!(
            (got - s[0]).abs() <= 1e-12 * s[0].max(1.0),
            "{h}x{w}: {got} vs {}",
            s[0]
        );
    }
    let grad = Gradient2d::new(256, 256).unwrap();
    let est: f64 = grad.opnorm_estimate(PowerIteration::default()).unwrap();
    let exact = (8.0 * (std::f64::consts::PI * 255.0 / 512.0).sin().powi(2)).sqrt();
    assert!((est - exact).abs() <= 1e-14 * exact, "{est} vs {exact}");
    assert!((est - 8f64.sqrt()).abs() < 1e-3, "estimate {est}");
}

#[test]
fn opnorm_of_diagonal_is_max_entry() {
    let d = Diagonal::new(array![1.0, -3.0, 2.0, 0.5]).unwrap();
    let est: f64 = d.opnorm_estimate(PowerIteration::default()).unwrap();
    assert!((est - 3.0).abs() < 1e-8, "{est}");
}

#[test]
fn gradient_values_forward_neumann() {
    let g = Gradient2d::new(2, 3).unwrap();
    let x = array![1.0, 2.0, 4.0, 0.0, 0.0, 1.0];
    let y = g.apply(x.view()).unwrap();
    // horizontal: [1, 2, 0, 0, 1, 0], vertical: [-1, -2, -3, 0, 0, 0]
    assert_eq!(
        y,
        array![1.0, 2.0, 0.0, 0.0, 1.0, 0.0, -1.0, -2.0, -3.0, 0.0, 0.0, 0.0]
    );
}

fn conv_pair<T: Real + FftNum>(b: Boundary, kh: usize, kw: usize) -> (Conv2d<T>, Conv2d<T>) {
    let k = DenseMatrix::<T>::gaussian(kh, kw, 5)
        .unwrap()
        .matrix()
        .to_owned();
    let d = Conv2d::new(10, 8, k.clone(), b, ConvMethod::Direct).unwrap();
    let f = Conv2d::new(10, 8, k, b, ConvMethod::Fft).unwrap();
    (d, f)
}

#[test]
fn conv_fft_equals_direct_for_all_boundaries() {
    for b in [Boundary::Zero, Boundary::Reflect, Boundary::Periodic] {
        for (kh, kw) in [(3, 3), (4, 5), (7, 2), (13, 11)] {
            let (d, f) = conv_pair::<f64>(b, kh, kw);
            let x = Array1::from_shape_fn(80, |i| ((i * 37) % 11) as f64 - 5.0);
            let yd = d.apply(x.view()).unwrap();
            let yf = f.apply(x.view()).unwrap();
            let err = (&yd - &yf).mapv(f64::abs).fold(0.0f64, |a, &b| a.max(b));
            assert!(
                err < 1e-12 * (1.0 + yd.mapv(f64::abs).sum()),
                "{b:?} {kh}x{kw}: {err}"
            );
            let ad = d.adjoint(x.view()).unwrap();
            let af = f.adjoint(x.view()).unwrap();
            let err = (&ad - &af).mapv(f64::abs).fold(0.0f64, |a, &b| a.max(b));
            assert!(
                err < 1e-12 * (1.0 + ad.mapv(f64::abs).sum()),
                "{b:?} adjoint {kh}x{kw}: {err}"
            );
        }
    }
}

#[test]
fn normalized_blur_preserves_constants_with_reflect_and_periodic() {
    let k = Conv2d::<f64>::gaussian_kernel(5, 1.2).unwrap();
    assert!((k.sum() - 1.0).abs() < 1e-14);
    for b in [Boundary::Reflect, Boundary::Periodic] {
        let c = Conv2d::new(6, 7, k.clone(), b, ConvMethod::Auto).unwrap();
        let y = c.apply(Array1::from_elem(42, 3.0).view()).unwrap();
        assert!(y.iter().all(|v| (v - 3.0).abs() < 1e-13), "{b:?}");
    }
    // Zero boundary loses mass at the border.
    let c = Conv2d::new(6, 7, k, Boundary::Zero, ConvMethod::Auto).unwrap();
    let y = c.apply(Array1::from_elem(42, 3.0).view()).unwrap();
    assert!(y[0] < 3.0 - 0.1);
}

#[test]
fn conv_delta_kernel_is_identity_and_shift_is_a_shift() {
    let mut k = Array2::zeros((3, 3));
    k[(1, 1)] = 1.0;
    let c = Conv2d::new(4, 4, k, Boundary::Zero, ConvMethod::Direct).unwrap();
    let x = Array1::from_shape_fn(16, |i| i as f64);
    assert_eq!(c.apply(x.view()).unwrap(), x);
    // k[1, 0] = 1: y[i, j] = x[i, j + 1] (convolution flips the kernel).
    let mut k = Array2::zeros((3, 3));
    k[(1, 0)] = 1.0;
    let c = Conv2d::new(4, 4, k, Boundary::Zero, ConvMethod::Fft).unwrap();
    let y = c.apply(x.view()).unwrap();
    assert!((y[0] - 1.0).abs() < 1e-12 && y[3].abs() < 1e-12);
}

#[test]
fn csr_matches_dense_and_sums_duplicates() {
    let a = DenseMatrix::<f64>::gaussian(6, 9, 1).unwrap();
    let s = CsrMatrix::from_dense(a.matrix(), 0.0).unwrap();
    let x = Array1::from_shape_fn(9, |i| i as f64 - 4.0);
    let e = &a.apply(x.view()).unwrap() - &s.apply(x.view()).unwrap();
    assert!(e.iter().all(|v| v.abs() < 1e-12));
    let d = CsrMatrix::from_triplets(2, 2, &[(0, 1, 1.0), (0, 1, 2.0), (1, 0, -1.0)]).unwrap();
    assert_eq!(d.nnz(), 2);
    assert_eq!(d.apply(array![1.0, 1.0].view()).unwrap(), array![3.0, -1.0]);
    assert!(CsrMatrix::from_triplets(2, 2, &[(2, 0, 1.0)]).is_err());
    assert!(CsrMatrix::from_triplets(2, 2, &[(0, 0, f64::NAN)]).is_err());
}

#[test]
fn gaussian_matrix_is_seeded_and_scaled() {
    let a = DenseMatrix::<f64>::gaussian(400, 50, 9).unwrap();
    let b = DenseMatrix::<f64>::gaussian(400, 50, 9).unwrap();
    assert_eq!(a.matrix(), b.matrix());
    // E‖column‖² = 1 for N(0, 1/m) entries.
    let mean_sq: f64 = a.matrix().iter().map(|v| v * v).sum::<f64>() / 50.0;
    assert!((mean_sq - 1.0).abs() < 0.05, "{mean_sq}");
    let n = a.normalize_columns();
    for c in n.matrix().columns() {
        assert!((c.dot(&c) - 1.0).abs() < 1e-12);
    }
}

#[test]
fn masks_and_subsampling() {
    let m = Mask::new(vec![true, false, true]);
    assert_eq!(
        m.apply(array![1.0, 2.0, 3.0].view()).unwrap(),
        array![1.0, 0.0, 3.0]
    );
    let s = Subsample::new(4, vec![3, 1]).unwrap();
    assert_eq!(
        s.apply(array![1.0, 2.0, 3.0, 4.0].view()).unwrap(),
        array![4.0, 2.0]
    );
    assert_eq!(
        s.adjoint(array![1.0, 2.0].view()).unwrap(),
        array![0.0, 2.0, 0.0, 1.0]
    );
    assert!(Subsample::new(4, vec![4]).is_err());
    assert!(Subsample::random(4, 5, 0).is_err());
    assert!(Mask::random(4, 1.5, 0).is_err());
}

#[test]
fn shape_mismatch_is_an_error_not_a_panic() {
    let g = Gradient2d::new(3, 3).unwrap();
    let err = LinearOperator::<f64>::apply(&g, Array1::zeros(8).view()).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("expected length 9") && msg.contains("got length 8"),
        "{msg}"
    );
    let mut out = Array1::<f64>::zeros(5);
    assert!(g
        .adjoint_into(out.view_mut(), Array1::zeros(18).view())
        .is_err());
    assert!(Compose::<f64, _, _>::new(Gradient2d::new(3, 3).unwrap(), Identity::new(8)).is_err());
    assert!(Sum::<f64, _, _>::new(Identity::new(3), Identity::new(4)).is_err());
    assert!(Stack::<f64, _, _>::new(Identity::new(3), Identity::new(4)).is_err());
    let a = DenseMatrix::<f64>::gaussian(3, 2, 0).unwrap();
    let mut out = Array2::zeros((3, 4));
    assert!(a
        .apply_batch_into(out.view_mut(), Array2::zeros((2, 5)).view())
        .is_err());
    assert!(DenseMatrix::new(array![[1.0, f64::INFINITY]]).is_err());
    assert!(Gradient2d::new(0, 3).is_err());
    assert!(Conv2d::<f64>::new(
        3,
        3,
        Array2::zeros((0, 3)),
        Boundary::Zero,
        ConvMethod::Auto
    )
    .is_err());
}

#[test]
fn auto_method_picks_fft_for_large_kernels() {
    let small = Conv2d::<f64>::new(
        16,
        16,
        Array2::ones((5, 5)),
        Boundary::Zero,
        ConvMethod::Auto,
    )
    .unwrap();
    let large = Conv2d::<f64>::new(
        16,
        16,
        Array2::ones((15, 15)),
        Boundary::Zero,
        ConvMethod::Auto,
    )
    .unwrap();
    assert!(!small.uses_fft() && large.uses_fft());
}

/// A dense matrix's operator norm is its largest singular value (from faer's SVD, computed
/// independently) to rounding, for tall, wide and square shapes; the power iteration only
/// approaches it from below.
#[test]
fn dense_opnorm_is_the_largest_singular_value() {
    for (m, n, seed) in [
        (40usize, 130usize, 1u64),
        (130, 40, 2),
        (64, 64, 3),
        (1, 9, 4),
    ] {
        let d = DenseMatrix::<f64>::gaussian(m, n, seed).unwrap();
        let got = d.opnorm_estimate(PowerIteration::default()).unwrap();
        let (_, s, _) = <f64 as hyperprox_core::linalg::Real>::thin_svd(d.matrix()).unwrap();
        assert!(
            (got - s[0]).abs() <= 1e-12 * s[0],
            "{m}x{n}: {got} vs {}",
            s[0]
        );
        let x = hyperprox_core::testing::random_point::<f64>(n, 1.0, seed + 10);
        let ax = d.apply(x.view()).unwrap();
        assert!(ax.dot(&ax).sqrt() <= got * x.dot(&x).sqrt() * (1.0 + 1e-12));
    }
}

/// An operator seen only through its products (no norm override), counting them.
struct Products<'a, O> {
    op: &'a O,
    count: std::sync::atomic::AtomicUsize,
}

impl<O: LinearOperator<f64>> LinearOperator<f64> for Products<'_, O> {
    fn shape(&self) -> (usize, usize) {
        self.op.shape()
    }
    fn name(&self) -> String {
        "Products".into()
    }
    fn apply_unchecked(
        &self,
        out: ndarray::ArrayViewMut1<'_, f64>,
        x: ndarray::ArrayView1<'_, f64>,
    ) {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.op.apply_unchecked(out, x)
    }
    fn adjoint_unchecked(
        &self,
        out: ndarray::ArrayViewMut1<'_, f64>,
        y: ndarray::ArrayView1<'_, f64>,
    ) {
        self.op.adjoint_unchecked(out, y)
    }
}

/// The default norm estimate (Lanczos on AᵀA) is the largest singular value to 1e-9 on a
/// deblurring operator `[blur; ∇]` (matrix built column by column, SVD by faer) and on a
/// dense matrix seen only through its products, never above it beyond rounding, and in far
/// fewer products than the power iteration with the same settings needs.
#[test]
fn lanczos_norm_estimate_is_the_largest_singular_value() {
    let (h, w) = (12, 10);
    let k = Array2::from_shape_fn((5, 5), |(a, b)| {
        (-((a as f64 - 2.0).powi(2) + (b as f64 - 2.0).powi(2)) / 3.0).exp()
    });
    let blur = Conv2d::new(h, w, k, Boundary::Reflect, ConvMethod::Direct).unwrap();
    let stack = Stack::new(&blur, Gradient2d::new(h, w).unwrap()).unwrap();
    let dense = DenseMatrix::<f64>::gaussian(90, 70, 5).unwrap();
    for (name, m) in [
        ("stack", {
            let (mm, n) = LinearOperator::<f64>::shape(&stack);
            let mut a = Array2::<f64>::zeros((mm, n));
            for j in 0..n {
                let mut e = Array1::zeros(n);
                e[j] = 1.0;
                a.column_mut(j).assign(&stack.apply(e.view()).unwrap());
            }
            a
        }),
        ("dense", dense.matrix().to_owned()),
    ] {
        let (_, s, _) = f64::thin_svd(m.view()).unwrap();
        let params = PowerIteration::default();
        let lz = Products {
            op: &DenseMatrix::new(m.clone()).unwrap(),
            count: 0.into(),
        };
        let est = lz.opnorm_estimate(params).unwrap();
        assert!(
            (est - s[0]).abs() <= 1e-9 * s[0],
            "{name}: {est} vs {}",
            s[0]
        );
        assert!(est <= s[0] * (1.0 + 1e-12), "{name}: above σ_max");
        let n_lanczos = lz.count.load(std::sync::atomic::Ordering::Relaxed);
        let pw = Products {
            op: &DenseMatrix::new(m.clone()).unwrap(),
            count: 0.into(),
        };
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(params.seed);
        let x: Array1<f64> = hyperprox_core::linalg::randn(m.ncols(), &mut rng);
        let est_pw = power_iteration_on(&pw, x, Array1::zeros(m.nrows()), params).unwrap();
        let n_power = pw.count.load(std::sync::atomic::Ordering::Relaxed);
        assert!(est_pw <= s[0] * (1.0 + 1e-12));
        eprintln!("{name}: {n_lanczos} Lanczos products, {n_power} power-iteration products");
        assert!(
            n_lanczos * 3 < n_power,
            "{name}: {n_lanczos} Lanczos vs {n_power} power products"
        );
    }
}
