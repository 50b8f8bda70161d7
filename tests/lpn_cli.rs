//! End-to-end checks of `hyperprox lpn …` (short runs; the full schedules are in the README).

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hyperprox"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hyperprox-lpn-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_ok(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn laplacian_train_resume_apply_and_prior() {
    let d = tmpdir("lap");
    let ds = d.to_str().unwrap();
    run_ok(&[
        "lpn",
        "train",
        "--data",
        "laplacian",
        "--loss",
        "l1",
        "--quick",
        "--batch",
        "128",
        "--max-steps",
        "60",
        "--checkpoint-every",
        "25",
        "--out",
        ds,
    ]);
    for f in ["model.json", "checkpoint.json", "report.json", "figure.png"] {
        assert!(d.join(f).exists(), "{f} missing");
    }
    assert_eq!(report(&d)["steps"].as_u64().unwrap(), 60);
    run_ok(&[
        "lpn",
        "train",
        "--data",
        "laplacian",
        "--loss",
        "l1",
        "--quick",
        "--batch",
        "128",
        "--max-steps",
        "90",
        "--resume",
        "--out",
        ds,
    ]);
    let r = report(&d);
    assert_eq!(r["steps"].as_u64().unwrap(), 90);
    for k in [
        "max_dev_soft_threshold",
        "max_dev_mmse",
        "max_dev_prior_from_abs_x",
        "f_at_0_5",
    ] {
        assert!(r[k].as_f64().unwrap().is_finite(), "{k}");
    }
    assert!(r["max_inversion_residual"].as_f64().unwrap() < 1e-6);

    // apply: 1-D input → 1-D output of f; prior: R at each entry.
    let x = ndarray::Array1::linspace(-2.0, 2.0, 9);
    hyperprox::core::io::write_npy(d.join("x.npy"), &x).unwrap();
    let model = d.join("model.json");
    let (xs, ms) = (d.join("x.npy"), model.to_str().unwrap().to_string());
    run_ok(&[
        "lpn",
        "apply",
        "--model",
        &ms,
        "--input",
        xs.to_str().unwrap(),
        "--out",
        d.join("y.npy").to_str().unwrap(),
    ]);
    let y = hyperprox::core::io::read_npy_1d(d.join("y.npy")).unwrap();
    let net = hyperprox::lpn::Icnn::from_json(&std::fs::read_to_string(&model).unwrap()).unwrap();
    assert_eq!(y, net.prox_scalar(x.view()).unwrap());
    run_ok(&[
        "lpn",
        "prior",
        "--model",
        &ms,
        "--input",
        xs.to_str().unwrap(),
        "--out",
        d.join("r.npy").to_str().unwrap(),
    ]);
    let r = hyperprox::core::io::read_npy_1d(d.join("r.npy")).unwrap();
    assert_eq!(r.len(), 9);
    // f = prox_R: R(f(y)) + ½(f(y) − y)² ≤ R(p) + ½(p − y)² for p = f(y') (p in the range).
    let fy = net.prox_scalar(x.view()).unwrap();
    let (rf, _) = hyperprox::lpn::regularizer_rows(
        &net,
        fy.clone().insert_axis(ndarray::Axis(1)).view(),
        Default::default(),
    )
    .unwrap();
    for i in 0..9 {
        for j in 0..9 {
            let lhs = rf[i] + 0.5 * (fy[i] - x[i]).powi(2);
            let rhs = rf[j] + 0.5 * (fy[j] - x[i]).powi(2);
            assert!(
                lhs <= rhs + 1e-8,
                "prox optimality of the recovered prior fails at {i},{j}"
            );
        }
    }
}

#[test]
fn digits_train_and_pnp_report_psnr_table() {
    let d = tmpdir("dig");
    let ds = d.to_str().unwrap();
    run_ok(&[
        "lpn",
        "train",
        "--data",
        "digits",
        "--quick",
        "--max-steps",
        "150",
        "--out",
        ds,
    ]);
    let r = report(&d);
    assert_eq!(r["prior_vs_noise"].as_array().unwrap().len(), 5);
    assert!(
        r["psnr_denoised"].as_f64().unwrap() > r["psnr_noisy"].as_f64().unwrap(),
        "{r}"
    );
    let out = d.join("pnp");
    run_ok(&[
        "lpn",
        "pnp",
        "--model",
        d.join("model.json").to_str().unwrap(),
        "--images",
        "3",
        "--iters",
        "15",
        "--out",
        out.to_str().unwrap(),
    ]);
    let r = report(&out);
    let t = r["table"].as_array().unwrap();
    assert_eq!(t.len(), 4);
    assert!(t
        .iter()
        .all(|row| row["psnr"].as_f64().unwrap().is_finite()));
    assert!(out.join("figure.png").exists());
}

#[test]
fn lpn_bad_input_is_a_one_line_error() {
    let d = tmpdir("bad");
    let m = d.join("model.json");
    std::fs::write(&m, "{\"format\": \"something else\"}").unwrap();
    let x = d.join("x.npy");
    hyperprox::core::io::write_npy(&x, &ndarray::Array1::<f64>::zeros(3)).unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec![
            "lpn".into(),
            "apply".into(),
            "--model".into(),
            "/nonexistent.json".into(),
            "--input".into(),
            x.display().to_string(),
            "--out".into(),
            d.join("y.npy").display().to_string(),
        ],
        vec![
            "lpn".into(),
            "apply".into(),
            "--model".into(),
            m.display().to_string(),
            "--input".into(),
            x.display().to_string(),
            "--out".into(),
            d.join("y.npy").display().to_string(),
        ],
        vec![
            "lpn".into(),
            "train".into(),
            "--data".into(),
            "laplacian".into(),
            "--resume".into(),
            "--out".into(),
            d.join("fresh").display().to_string(),
        ],
    ];
    for c in cases {
        let o = bin().args(&c).output().unwrap();
        assert!(!o.status.success(), "{c:?} should fail");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.starts_with("error: ") && e.trim().lines().count() == 1,
            "{c:?}: {e}"
        );
    }
    assert!(!d.join("y.npy").exists());
}
