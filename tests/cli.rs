//! End-to-end checks of the `hyperprox` command as a user runs it.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hyperprox"))
}

#[test]
fn help_and_version() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Usage") && text.contains("opnorm"), "{text}");
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hyperprox "));
}

#[test]
fn opnorm_reports_json_close_to_the_exact_norm() {
    let out = bin()
        .args(["opnorm", "--height", "32", "--width", "32"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let est: f64 = text
        .split("\"opnorm_estimate\": ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no estimate in {text}"));
    // ‖∇‖ on a 32 × 32 grid is 2√2·sin(31π/64).
    let exact = 2.0 * 2f64.sqrt() * (31.0 * std::f64::consts::PI / 64.0).sin();
    assert!(
        est <= exact + 1e-9 && est > exact - 1e-4,
        "{est} vs {exact}"
    );
}

#[test]
fn bad_input_is_a_one_line_error() {
    let out = bin().args(["opnorm", "--height", "0"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.trim().lines().count() == 1,
        "{err}"
    );
    let out = bin().args(["opnorm", "--height", "abc"]).output().unwrap();
    assert!(!out.status.success());
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hyperprox-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn lasso_files(d: &std::path::Path) {
    use hyperprox::prelude::*;
    let a = DenseMatrix::<f64>::gaussian(40, 60, 3)
        .unwrap()
        .normalize_columns();
    let xt = ndarray::Array1::from_shape_fn(60, |j| if j % 10 == 0 { 1.0 } else { 0.0 });
    let b = a.apply(xt.view()).unwrap();
    hyperprox::core::io::write_npy(d.join("A.npy"), &a.matrix().to_owned()).unwrap();
    hyperprox::core::io::write_npy(d.join("b.npy"), &b).unwrap();
}

/// A failed run whose error is one line containing `what`.
fn assert_one_line_error(out: &std::process::Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.starts_with("error: ")
            && err.contains(what)
            && err.trim().lines().count() == 1,
        "{err}"
    );
}

fn field(json: &str, key: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v[key].to_string()
}

#[test]
fn solve_lasso_writes_solution_and_certified_report() {
    let d = tmpdir("lasso");
    lasso_files(&d);
    for solver in ["cd", "fista"] {
        let out = bin()
            .args(["solve", "lasso", "--a"])
            .arg(d.join("A.npy"))
            .arg("--b")
            .arg(d.join("b.npy"))
            .args([
                "--lambda-ratio",
                "0.1",
                "--tol",
                "1e-10",
                "--solver",
                solver,
                "--out",
            ])
            .arg(d.join(format!("x_{solver}.npy")))
            .arg("--report")
            .arg(d.join(format!("r_{solver}.json")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rep = std::fs::read_to_string(d.join(format!("r_{solver}.json"))).unwrap();
        assert_eq!(field(&rep, "converged"), "true");
        let gap: f64 = field(&rep, "gap").parse().unwrap();
        assert!((0.0..=1e-10).contains(&gap), "{rep}");
        let x = hyperprox::core::io::read_npy_1d(d.join(format!("x_{solver}.npy"))).unwrap();
        assert_eq!(x.len(), 60);
    }
    // Both solvers agree on the objective to the certified accuracy.
    let o1: f64 = field(
        &std::fs::read_to_string(d.join("r_cd.json")).unwrap(),
        "objective",
    )
    .parse()
    .unwrap();
    let o2: f64 = field(
        &std::fs::read_to_string(d.join("r_fista.json")).unwrap(),
        "objective",
    )
    .parse()
    .unwrap();
    assert!((o1 - o2).abs() <= 2e-10, "{o1} vs {o2}");
    std::fs::remove_dir_all(&d).ok();
}

/// `solve lasso --path N`: N rows of x from λ_max down, each certified, the last equal (to
/// the two gaps) to a single solve at the smallest λ; bad path options fail with one line.
#[test]
fn solve_lasso_path_writes_every_solution_certified() {
    let d = tmpdir("path");
    lasso_files(&d);
    let run = |extra: &[&str], out: &str| {
        bin()
            .args(["solve", "lasso", "--a"])
            .arg(d.join("A.npy"))
            .arg("--b")
            .arg(d.join("b.npy"))
            .args(["--tol", "1e-10", "--out"])
            .arg(d.join(format!("{out}.npy")))
            .arg("--report")
            .arg(d.join(format!("{out}.json")))
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&["--path", "8", "--lambda-min-ratio", "0.05"], "path");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("path.json")).unwrap()).unwrap();
    let pts = rep["path"].as_array().unwrap();
    assert_eq!(pts.len(), 8);
    assert_eq!(rep["converged"], true);
    let lmax = rep["lambda_max"].as_f64().unwrap();
    let last = pts[7]["lambda"].as_f64().unwrap();
    assert!((last / lmax - 0.05).abs() < 1e-12);
    for pt in pts {
        assert!(pt["gap"].as_f64().unwrap() <= 1e-10);
    }
    let xs = hyperprox::core::io::read_npy_2d(d.join("path.npy")).unwrap();
    assert_eq!(xs.dim(), (8, 60));
    assert!(xs.row(0).iter().all(|&v| v == 0.0));
    let o = run(&["--lambda", &format!("{last:e}")], "single");
    assert!(o.status.success());
    let single: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("single.json")).unwrap()).unwrap();
    let (p1, p2) = (
        pts[7]["objective"].as_f64().unwrap(),
        single["objective"].as_f64().unwrap(),
    );
    assert!((p1 - p2).abs() <= 2e-10, "{p1} vs {p2}");
    for bad in [
        vec!["--path", "0"],
        vec!["--path", "5", "--lambda-min-ratio", "1.5"],
        vec!["--path", "5", "--lambda", "0.1"],
        vec!["--path", "5", "--solver", "fista"],
    ] {
        let o = run(&bad, "bad");
        assert!(!o.status.success(), "{bad:?}");
        assert!(!d.join("bad.npy").exists(), "{bad:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("error:"), "{bad:?}: {err}");
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn solve_rejects_bad_input_without_writing_output() {
    let d = tmpdir("bad");
    lasso_files(&d);
    let nan = ndarray::Array1::from_vec(vec![f64::NAN; 40]);
    hyperprox::core::io::write_npy(d.join("nan.npy"), &nan).unwrap();
    let short = ndarray::Array1::<f64>::zeros(7);
    hyperprox::core::io::write_npy(d.join("short.npy"), &short).unwrap();
    for (b, lam) in [
        ("missing.npy", "0.1"),
        ("nan.npy", "0.1"),
        ("short.npy", "0.1"),
        ("b.npy", "-0.5"),
    ] {
        let out = bin()
            .args(["solve", "lasso", "--a"])
            .arg(d.join("A.npy"))
            .arg("--b")
            .arg(d.join(b))
            .args(["--lambda", lam, "--out"])
            .arg(d.join("x.npy"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{b} {lam}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: ") && err.trim().lines().count() == 1,
            "{err}"
        );
        assert!(!d.join("x.npy").exists());
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn denoise_tv_on_a_shipped_kodak_image() {
    let d = tmpdir("tv");
    let clean = hyperprox::core::io::read_png_gray(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/kodak/gray96/kodim05.png"
    ))
    .unwrap();
    let noise = hyperprox::core::testing::random_point::<f64>(96 * 96, 0.1, 1);
    let noisy = &clean + &noise.into_shape_with_order((96, 96)).unwrap();
    hyperprox::core::io::write_npy(d.join("noisy.npy"), &noisy).unwrap();
    let out = bin()
        .args(["denoise", "tv", "--input"])
        .arg(d.join("noisy.npy"))
        .args(["--lambda", "0.08", "--tol", "1e-5", "--out"])
        .arg(d.join("x.npy"))
        .arg("--report")
        .arg(d.join("r.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep = std::fs::read_to_string(d.join("r.json")).unwrap();
    let rel: f64 = field(&rep, "relative_gap").parse().unwrap();
    assert!(rel <= 1e-5, "{rep}");
    let x = hyperprox::core::io::read_npy_2d(d.join("x.npy")).unwrap();
    let mse = |a: &ndarray::Array2<f64>| (a - &clean).mapv(|v| v * v).mean().unwrap();
    assert!(
        mse(&x) < 0.6 * mse(&noisy),
        "TV denoising must reduce the error: {} vs {}",
        mse(&x),
        mse(&noisy)
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn admm_and_logistic_and_deblur_commands() {
    let d = tmpdir("more");
    lasso_files(&d);
    let out = bin()
        .args([
            "solve",
            "lasso",
            "--solver",
            "admm",
            "--lambda-ratio",
            "0.1",
            "--tol",
            "1e-9",
            "--a",
        ])
        .arg(d.join("A.npy"))
        .arg("--b")
        .arg(d.join("b.npy"))
        .arg("--out")
        .arg(d.join("x.npy"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(field(&rep, "converged"), "true");
    // Logistic with {0, 1} labels (mapped to ±1).
    let a = hyperprox::core::io::read_npy_2d(d.join("A.npy")).unwrap();
    let y = ndarray::Array1::from_shape_fn(40, |i| {
        if a[(i, 0)] + a[(i, 10)] > 0.0 {
            1.0
        } else {
            0.0
        }
    });
    hyperprox::core::io::write_npy(d.join("y.npy"), &y).unwrap();
    let out = bin()
        .args([
            "solve",
            "logistic-l1",
            "--lambda-ratio",
            "0.2",
            "--tol",
            "1e-9",
            "--a",
        ])
        .arg(d.join("A.npy"))
        .arg("--b")
        .arg(d.join("y.npy"))
        .arg("--out")
        .arg(d.join("w.npy"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(field(&rep, "labels_mapped_from_01"), "true");
    assert!(field(&rep, "gap").parse::<f64>().unwrap() <= 1e-9);
    // Deblurring a shipped image blurred by the same operator.
    use hyperprox::prelude::*;
    let clean = hyperprox::core::io::read_png_gray(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/kodak/gray96/kodim05.png"
    ))
    .unwrap();
    let small = clean.slice(ndarray::s![20..52, 30..62]).to_owned();
    let k = Conv2d::<f64>::gaussian_kernel(5, 1.0).unwrap();
    let blur = Conv2d::new(32, 32, k.clone(), Boundary::Reflect, ConvMethod::Auto).unwrap();
    let b = blur
        .apply(ndarray::Array1::from_iter(small.iter().copied()).view())
        .unwrap();
    hyperprox::core::io::write_npy(
        d.join("blur.npy"),
        &b.into_shape_with_order((32, 32)).unwrap(),
    )
    .unwrap();
    hyperprox::core::io::write_npy(d.join("k.npy"), &k).unwrap();
    let out = bin()
        .args([
            "deblur", "tv", "--lambda", "0.001", "--tol", "1e-4", "--input",
        ])
        .arg(d.join("blur.npy"))
        .arg("--kernel")
        .arg(d.join("k.npy"))
        .arg("--out")
        .arg(d.join("x.npy"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(field(&rep, "certificate"), "\"duality_gap\"");
    assert!(field(&rep, "relative_gap").parse::<f64>().unwrap() <= 1e-4);
    let x = hyperprox::core::io::read_npy_2d(d.join("x.npy")).unwrap();
    let bl = hyperprox::core::io::read_npy_2d(d.join("blur.npy")).unwrap();
    let err = |z: &ndarray::Array2<f64>| (z - &small).mapv(|v| v * v).sum();
    assert!(err(&x) < err(&bl), "deblurring must reduce the error");
    std::fs::remove_dir_all(&d).ok();
}

/// `--threads 1` and `--threads 2` give the same bits on the long commands: TV denoising of a
/// 256² image (the FGP sweep runs in row bands, one per thread), bilevel TV learning, unfolded
/// and LPN training (their checkpoints hold every parameter and optimizer moment).
#[test]
fn results_are_the_same_bits_for_any_thread_count() {
    let d = tmpdir("threads");
    let y = ndarray::Array2::from_shape_fn((256, 256), |(i, j)| {
        (((i * 13 + j * 7) % 17) as f64 / 17.0 + ((i / 32 + j / 32) % 2) as f64) / 2.0
    });
    hyperprox::core::io::write_npy(d.join("y.npy"), &y).unwrap();
    let runs: [(&str, &[&str], &str); 6] = [
        (
            "denoise",
            &[
                "denoise", "tv", "--input", "y.npy", "--lambda", "0.1", "--tol", "1e-5",
            ],
            "x.npy",
        ),
        (
            "tune",
            &[
                "tune",
                "tv",
                "--images",
                "3",
                "--size",
                "64",
                "--max-iters",
                "2",
            ],
            "history.json",
        ),
        // FoE sums over its filters in parallel; logistic regression over samples.
        (
            "foe",
            &[
                "tune",
                "foe",
                "--images",
                "2",
                "--size",
                "24",
                "--filters",
                "24",
                "--max-iters",
                "2",
            ],
            "history.json",
        ),
        (
            "logreg",
            &["tune", "logreg", "--max-iters", "2"],
            "history.json",
        ),
        (
            "unfold",
            &[
                "unfold",
                "train",
                "--model",
                "lista",
                "--quick",
                "--max-steps",
                "10",
            ],
            "checkpoint.json",
        ),
        (
            "lpn",
            &[
                "lpn",
                "train",
                "--data",
                "digits",
                "--quick",
                "--max-steps",
                "4",
            ],
            "checkpoint.json",
        ),
    ];
    for (name, args, file) in runs {
        let mut outs = Vec::new();
        for t in ["1", "2"] {
            let out = format!("{name}-{t}");
            let mut a: Vec<&str> = args.to_vec();
            let target = if name == "denoise" {
                format!("{out}.npy")
            } else {
                out.clone()
            };
            a.extend(["--out", &target, "--threads", t]);
            let o = bin().args(&a).current_dir(&d).output().unwrap();
            assert!(
                o.status.success(),
                "{a:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let path = if name == "denoise" {
                d.join(&target)
            } else {
                d.join(&out).join(file)
            };
            outs.push(std::fs::read(path).unwrap());
        }
        assert!(outs[0] == outs[1], "{name}: --threads 1 and 2 differ");
    }
    let o = bin().args(["opnorm", "--threads", "0"]).output().unwrap();
    assert!(!o.status.success());
    let _ = std::fs::remove_dir_all(&d);
}

/// `solve lasso|logistic-l1 --a A.npz` (a scipy sparse file) gives the dense run's answer;
/// ADMM, which factors a dense matrix, refuses with one line saying what to use.
#[test]
fn solve_reads_sparse_npz_designs() {
    use hyperprox::prelude::*;
    let d = tmpdir("sparse");
    lasso_files(&d);
    let a = hyperprox::core::io::read_npy_2d(d.join("A.npy")).unwrap();
    // Keep about a third of the entries.
    let a = ndarray::Array2::from_shape_fn(a.dim(), |(i, j)| {
        if (i * 7 + j * 3) % 3 == 0 {
            a[(i, j)]
        } else {
            0.0
        }
    });
    hyperprox::core::io::write_npy(d.join("As.npy"), &a).unwrap();
    let csr = CsrMatrix::from_dense(a.view(), 0.0).unwrap();
    hyperprox::core::io::write_csr_npz(d.join("As.npz"), &csr).unwrap();
    let labels = hyperprox::core::io::read_npy_1d(d.join("b.npy"))
        .unwrap()
        .mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
    hyperprox::core::io::write_npy(d.join("y.npy"), &labels).unwrap();
    for (problem, b) in [("lasso", "b.npy"), ("logistic-l1", "y.npy")] {
        let mut objective = Vec::new();
        for file in ["As.npy", "As.npz"] {
            let rep = d.join(format!("r_{problem}_{file}.json"));
            let out = bin()
                .args(["solve", problem, "--a"])
                .arg(d.join(file))
                .arg("--b")
                .arg(d.join(b))
                .args(["--lambda-ratio", "0.1", "--tol", "1e-11", "--out"])
                .arg(d.join(format!("x_{problem}_{file}.npy")))
                .arg("--report")
                .arg(&rep)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let rep = std::fs::read_to_string(&rep).unwrap();
            assert_eq!(field(&rep, "converged"), "true", "{rep}");
            objective.push(field(&rep, "objective").parse::<f64>().unwrap());
        }
        assert!(
            (objective[0] - objective[1]).abs() <= 2e-11,
            "{problem}: dense {} vs sparse {}",
            objective[0],
            objective[1]
        );
    }
    let out = bin()
        .args(["solve", "lasso", "--a"])
        .arg(d.join("As.npz"))
        .arg("--b")
        .arg(d.join("b.npy"))
        .args(["--lambda-ratio", "0.1", "--solver", "admm", "--out"])
        .arg(d.join("x_admm.npy"))
        .output()
        .unwrap();
    assert_one_line_error(&out, "dense");
    assert!(!d.join("x_admm.npy").exists());
    std::fs::remove_dir_all(&d).ok();
}

/// float32 `.npy` inputs run in float32 and write float32 results: `solve lasso` (at a
/// tolerance float32 can certify) and `denoise tv`; the objectives match the float64 runs to
/// the tolerance, and a tolerance float32 cannot certify is refused with one line.
#[test]
fn float32_inputs_run_in_float32() {
    use hyperprox::core::io;
    let d = tmpdir("f32");
    lasso_files(&d);
    let a = io::read_npy_2d(d.join("A.npy")).unwrap();
    let b = io::read_npy_1d(d.join("b.npy")).unwrap();
    io::write_npy(d.join("A32.npy"), &a.mapv(|v| v as f32)).unwrap();
    io::write_npy(d.join("b32.npy"), &b.mapv(|v| v as f32)).unwrap();
    let run = |a: &str, b: &str, extra: &[&str], out: &str| {
        bin()
            .args(["solve", "lasso", "--a"])
            .arg(d.join(a))
            .arg("--b")
            .arg(d.join(b))
            .args(["--lambda-ratio", "0.1"])
            .args(extra)
            .arg("--out")
            .arg(d.join(out))
            .arg("--report")
            .arg(d.join(format!("{out}.json")))
            .output()
            .unwrap()
    };
    let mut obj = Vec::new();
    for (a, b, out) in [
        ("A.npy", "b.npy", "x64.npy"),
        ("A32.npy", "b32.npy", "x32.npy"),
    ] {
        let o = run(a, b, &["--relative", "--tol", "1e-5"], out);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let rep = std::fs::read_to_string(d.join(format!("{out}.json"))).unwrap();
        assert_eq!(field(&rep, "converged"), "true");
        let want = if a == "A.npy" {
            "\"float64\""
        } else {
            "\"float32\""
        };
        assert_eq!(field(&rep, "precision"), want, "{rep}");
        obj.push(field(&rep, "objective").parse::<f64>().unwrap());
    }
    let p0 = 0.5 * b.dot(&b) / b.len() as f64;
    assert!((obj[0] - obj[1]).abs() <= 2e-5 * p0, "{obj:?}");
    assert!(io::read_npy_native(d.join("x32.npy")).unwrap().is_f32());
    assert!(!io::read_npy_native(d.join("x64.npy")).unwrap().is_f32());
    let o = run("A32.npy", "b32.npy", &["--tol", "1e-12"], "bad.npy");
    assert_one_line_error(&o, "float32");
    assert!(!d.join("bad.npy").exists());
    // denoise tv on a float32 image.
    let y = ndarray::Array2::from_shape_fn((20, 24), |(i, j)| ((i + 2 * j) % 9) as f32 / 9.0);
    io::write_npy(d.join("y32.npy"), &y).unwrap();
    let o = bin()
        .args(["denoise", "tv", "--input"])
        .arg(d.join("y32.npy"))
        .args(["--lambda", "0.1", "--tol", "1e-4", "--out"])
        .arg(d.join("xd.npy"))
        .arg("--report")
        .arg(d.join("xd.json"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep = std::fs::read_to_string(d.join("xd.json")).unwrap();
    assert_eq!(field(&rep, "precision"), "\"float32\"", "{rep}");
    assert!(io::read_npy_native(d.join("xd.npy")).unwrap().is_f32());
    std::fs::remove_dir_all(&d).ok();
}
