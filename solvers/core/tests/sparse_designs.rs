//! Sparse (CSR) designs: every coordinate-descent family, FISTA and the path give the solutions
//! of the same problem with the dense matrix; scipy's `.npz` files are read exactly.

use hyperprox_core::func::Groups;
use hyperprox_core::io;
use hyperprox_core::ops::CsrMatrix;
use hyperprox_core::solve::{
    lasso_path, CoordinateDescent, CoordinateDescentParams, Design, Fista, FistaParams,
    LassoPenalty, LassoProblem, LogisticCd, LogisticL1Problem, NoObserver,
};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// A random `n × p` matrix with about `density·n·p` Gaussian entries (the others exactly 0),
/// its CSR form, and a response from 8 true features plus noise.
fn instance(
    n: usize,
    p: usize,
    density: f64,
    seed: u64,
) -> (Array2<f64>, CsrMatrix<f64>, Array1<f64>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let a = Array2::from_shape_fn((n, p), |_| {
        if rng.random::<f64>() < density {
            rng.sample::<f64, _>(StandardNormal)
        } else {
            0.0
        }
    });
    let csr = CsrMatrix::from_dense(a.view(), 0.0).unwrap();
    let xt = Array1::from_shape_fn(p, |j| {
        if j % (p / 8) == 0 {
            1.0 + j as f64 / p as f64
        } else {
            0.0
        }
    });
    let b = a.dot(&xt) + Array1::from_shape_fn(n, |_| 0.05 * rng.sample::<f64, _>(StandardNormal));
    (a, csr, b)
}

fn penalties(p: usize) -> Vec<(&'static str, LassoPenalty<f64>)> {
    let mut w = Array1::ones(p);
    w[1] = 0.0; // an unpenalized feature (its own certification path)
    w[5] = 2.5;
    vec![
        ("lasso", LassoPenalty::L1 { weights: None }),
        ("weighted", LassoPenalty::L1 { weights: Some(w) }),
        ("elastic net", LassoPenalty::ElasticNet { alpha: 0.6 }),
        (
            "group",
            LassoPenalty::Group {
                groups: Groups::contiguous(&vec![3; p / 3]).unwrap(),
                weights: None,
            },
        ),
    ]
}

/// Working sets and plain epochs on the sparse design reach the dense problem's optimum: the
/// dense problem's certified gap at the sparse solution is below the tolerance (up to
/// rounding), and the objectives agree to 1e-12 relative.
#[test]
fn coordinate_descent_on_csr_solves_the_dense_problem() {
    let (a, csr, b) = instance(80, 150, 0.08, 1);
    for (name, pen) in penalties(150) {
        let lmax = LassoProblem::lambda_max(a.view(), b.view(), &pen).unwrap();
        let lmax_s = LassoProblem::lambda_max(&csr, b.view(), &pen).unwrap();
        assert!(
            (lmax - lmax_s).abs() <= 1e-13 * lmax,
            "{name}: λ_max {lmax} vs {lmax_s}"
        );
        let dense = LassoProblem::new(a.clone(), b.clone(), 0.1 * lmax, pen.clone()).unwrap();
        let sparse = LassoProblem::with_design(
            Design::from(csr.clone()),
            b.clone(),
            0.1 * lmax,
            pen.clone(),
        )
        .unwrap();
        assert!(sparse.a().is_none() && sparse.design().is_sparse());
        // Working sets on the columns, on the Gram matrix (the sparse Gram), plain epochs.
        for (ws, gram) in [(true, false), (true, true), (false, false)] {
            let params = CoordinateDescentParams::default()
                .with_tol(1e-12)
                .with_working_sets(ws)
                .with_gram(Some(gram));
            let zero = Array1::zeros(150);
            let sd = CoordinateDescent::new(&dense, params)
                .unwrap()
                .run(zero.view(), NoObserver)
                .unwrap();
            let ss = CoordinateDescent::new(&sparse, params)
                .unwrap()
                .run(zero.view(), NoObserver)
                .unwrap();
            assert!(
                ss.certificate <= 1e-12,
                "{name} ws={ws} gram={gram}: sparse gap {}",
                ss.certificate
            );
            // The gap of the plain dual point (the residual, scaled) is the same number for
            // both storages at any x (the working-set solver's extrapolated dual point is
            // tighter: its gap is what `certificate` reports).
            let (gd, gs) = (
                dense.duality_gap(ss.x.view()).unwrap(),
                sparse.duality_gap(ss.x.view()).unwrap(),
            );
            // (a difference of P and D, O(P): equal to rounding of P)
            assert!(
                (gd - gs).abs() <= 1e-13 * ss.objective,
                "{name} ws={ws} gram={gram}: gap {gd} vs {gs}"
            );
            let (od, os) = (sd.objective, dense.objective(ss.x.view()).unwrap());
            assert!(
                (od - os).abs() <= 1e-12 * od.abs().max(1.0),
                "{name} ws={ws} gram={gram}: {od} vs {os}"
            );
            assert!(
                (ss.objective - os).abs() <= 1e-13 * os.abs().max(1.0),
                "{name}: reported objective"
            );
        }
    }
}

#[test]
fn logistic_on_csr_solves_the_dense_problem() {
    let (a, csr, b) = instance(90, 120, 0.1, 2);
    let y = b.mapv(|v| if v > 0.0 { 1.0 } else { -1.0 });
    let lmax = LogisticL1Problem::lambda_max(a.view(), y.view());
    assert!((lmax - LogisticL1Problem::lambda_max(&csr, y.view())).abs() <= 1e-14);
    let dense = LogisticL1Problem::new(a, y.clone(), 0.1 * lmax).unwrap();
    let sparse = LogisticL1Problem::with_design(Design::from(csr), y, 0.1 * lmax).unwrap();
    for ws in [true, false] {
        let params = CoordinateDescentParams::default()
            .with_tol(1e-11)
            .with_working_sets(ws);
        let zero = Array1::zeros(120);
        let sd = LogisticCd::new(&dense, params)
            .unwrap()
            .run(zero.view(), NoObserver)
            .unwrap();
        let ss = LogisticCd::new(&sparse, params)
            .unwrap()
            .run(zero.view(), NoObserver)
            .unwrap();
        assert!(ss.certificate <= 1e-11, "ws={ws}: gap {}", ss.certificate);
        let (gd, gs) = (
            dense.duality_gap(ss.x.view()).unwrap(),
            sparse.duality_gap(ss.x.view()).unwrap(),
        );
        assert!(
            (gd - gs).abs() <= 1e-13 * ss.objective,
            "ws={ws}: gap {gd} vs {gs}"
        );
        let (od, os) = (sd.objective, dense.objective(ss.x.view()).unwrap());
        assert!((od - os).abs() <= 1e-12 * od, "ws={ws}: {od} vs {os}");
    }
}

/// FISTA on the sparse smooth part (`Design` as the operator) reaches the CD optimum.
#[test]
fn fista_on_csr_matches_coordinate_descent() {
    let (a, csr, b) = instance(60, 90, 0.1, 3);
    let pen = LassoPenalty::L1 { weights: None };
    let lmax = LassoProblem::lambda_max(&csr, b.view(), &pen).unwrap();
    let sparse =
        LassoProblem::with_design(Design::from(csr), b.clone(), 0.2 * lmax, pen.clone()).unwrap();
    let dense = LassoProblem::new(a, b, 0.2 * lmax, pen).unwrap();
    let f = sparse.smooth_part().unwrap();
    let g = sparse.penalty_function().unwrap();
    let params = FistaParams::default()
        .with_tol(1e-10)
        .with_max_iters(200_000)
        .with_certificate_every(10);
    let fs = Fista::new(&f, &*g, params)
        .with_certificate(hyperprox_core::solve::CertificateKind::DualityGap, |x| {
            sparse.duality_gap(x.view())
        })
        .run(Array1::zeros(90).view(), NoObserver)
        .unwrap();
    let cd = CoordinateDescent::new(&dense, CoordinateDescentParams::default().with_tol(1e-12))
        .unwrap()
        .run(Array1::zeros(90).view(), NoObserver)
        .unwrap();
    assert!(fs.certificate <= 1e-10, "FISTA gap {}", fs.certificate);
    let of = dense.objective(fs.x.view()).unwrap();
    assert!(
        (of - cd.objective).abs() <= 1e-10 + 1e-12,
        "{of} vs {}",
        cd.objective
    );
}

#[test]
fn path_on_csr_matches_the_dense_path() {
    let (a, csr, b) = instance(70, 140, 0.08, 4);
    let pen = LassoPenalty::L1 { weights: None };
    let lmax = LassoProblem::lambda_max(&csr, b.view(), &pen).unwrap();
    let lambdas = hyperprox_core::solve::lambda_grid(lmax, 12, 1e-2).unwrap();
    let params = CoordinateDescentParams::default().with_tol(1e-12);
    let pd = lasso_path(a, b.clone(), pen.clone(), &lambdas, params).unwrap();
    let ps = lasso_path(csr, b, pen, &lambdas, params).unwrap();
    for (d, s) in pd.iter().zip(&ps) {
        assert!(s.gap <= 1e-12 && s.converged);
        assert!(
            (d.objective - s.objective).abs() <= 2e-12 * d.objective.max(1.0),
            "λ {}: {} vs {}",
            d.lambda,
            d.objective,
            s.objective
        );
    }
}

fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Files written by scipy 1.17 (`save_npz` of a CSR matrix, compressed, int32 indices; of a
/// CSC matrix, uncompressed) hold exactly the dense array saved beside them.
#[test]
fn scipy_npz_files_are_read_exactly() {
    let dense = io::read_npy_2d(data("sparse_dense.npy")).unwrap();
    for f in ["sparse_csr.npz", "sparse_csc.npz"] {
        let d = io::read_design(data(f)).unwrap();
        let s = d.sparse().expect("an .npz is sparse");
        assert_eq!(s.nnz(), dense.iter().filter(|v| **v != 0.0).count(), "{f}");
        assert_eq!(s.to_dense(), dense, "{f}");
    }
    // A .npy is a dense design.
    assert!(!io::read_design(data("sparse_dense.npy"))
        .unwrap()
        .is_sparse());
}

#[test]
fn npz_round_trip_and_errors() {
    let dir = std::env::temp_dir().join(format!("hyperprox-npz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_, csr, _) = instance(9, 16, 0.3, 5);
    let p = dir.join("m.npz");
    io::write_csr_npz(&p, &csr).unwrap();
    let back = io::read_design(&p).unwrap();
    assert_eq!(back.sparse().unwrap().to_dense(), csr.to_dense());
    // Missing file, not a zip, a zip without the arrays: errors naming the file and the fix.
    let e = io::read_design(dir.join("none.npz"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("none.npz") && e.contains("not found"), "{e}");
    std::fs::write(dir.join("bad.npz"), b"not a zip").unwrap();
    let e = io::read_design(dir.join("bad.npz"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("save_npz"), "{e}");
    {
        use std::io::Write;
        let f = std::fs::File::create(dir.join("partial.npz")).unwrap();
        let mut z = zip::ZipWriter::new(f);
        z.start_file("data.npy", zip::write::SimpleFileOptions::default())
            .unwrap();
        let mut v = Vec::new();
        ndarray_npy::WriteNpyExt::write_npy(&Array1::from(vec![1.0f64]), &mut v).unwrap();
        z.write_all(&v).unwrap();
        z.finish().unwrap();
    }
    let e = io::read_design(dir.join("partial.npz"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("indices"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
