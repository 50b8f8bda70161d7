//! End-to-end checks of `hyperprox tune …` and `hyperprox demo` (reduced sizes).

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hyperprox"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hyperprox-tune-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_ok(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn assert_outputs(dir: &Path) {
    for f in ["report.json", "history.json", "figure.png"] {
        let m = std::fs::metadata(dir.join(f)).unwrap_or_else(|_| panic!("{f} missing"));
        assert!(m.len() > 100, "{f} is too small");
    }
    let png = std::fs::read(dir.join("figure.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}

#[test]
fn tune_tv_with_maid_and_hoag_improves_psnr() {
    for method in ["maid", "hoag-geometric"] {
        let d = tmpdir(&format!("tv-{method}"));
        run_ok(&[
            "tune",
            "tv",
            "--images",
            "3",
            "--size",
            "32",
            "--max-iters",
            "15",
            "--method",
            method,
            "--out",
            d.to_str().unwrap(),
        ]);
        assert_outputs(&d);
        let r = report(&d);
        let (pn, pd) = (
            r["train"]["psnr_noisy"].as_f64().unwrap(),
            r["train"]["psnr_denoised"].as_f64().unwrap(),
        );
        assert!(pd > pn + 3.0, "{method}: PSNR {pd} vs noisy {pn}");
        assert_eq!(r["theta"].as_array().unwrap().len(), 2);
        assert!(r["iterations_total"].as_u64().unwrap() > 0);
        assert!(r["time_s"].as_f64().unwrap() > 0.0);
        assert!(r["upper_loss"].as_f64().unwrap() > 0.0);
        let h: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("history.json")).unwrap())
                .unwrap();
        let h = h.as_array().unwrap();
        assert_eq!(h.len(), 15);
        assert!(
            h.iter()
                .all(|e| e["eps"].as_f64().unwrap() > 0.0
                    && e["theta"].as_array().unwrap().len() == 2)
        );
        if method == "maid" {
            assert_eq!(r["certified"], serde_json::Value::Bool(true));
        }
    }
}

#[test]
fn tune_tv_compare_and_the_maid_constants_from_the_command_line() {
    let d = tmpdir("tv-compare");
    run_ok(&[
        "tune",
        "tv-compare",
        "--images",
        "3",
        "--size",
        "24",
        "--max-iters",
        "8",
        "--alpha0",
        "0.01",
        "--reference-convention",
        "--methods",
        "maid,hoag-cubic",
        "--out",
        d.to_str().unwrap(),
    ]);
    assert_outputs(&d);
    let r = report(&d);
    assert_eq!(r["convention"], "reference");
    let runs = r["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|x| x["method"].as_str().unwrap()).collect();
    assert_eq!(names, ["maid", "hoag-cubic"]);
    let works: Vec<u64> = runs.iter().map(|x| x["work"].as_u64().unwrap()).collect();
    assert_eq!(r["common_work"].as_u64(), works.iter().min().copied());
    let f: Vec<f64> = runs
        .iter()
        .map(|x| x["f_at_common_work"].as_f64().unwrap())
        .collect();
    assert_eq!(r["maid_below_hoag"].as_bool().unwrap(), f[0] < f[1]);
    // MAID's constants from the command line: with ρ = 0.3 and ρ̄ = 1.5 every accepted step
    // is the previous one times 1.5·0.3ᵏ (k backtracks).
    let d = tmpdir("tv-constants");
    run_ok(&[
        "tune",
        "tv",
        "--images",
        "2",
        "--size",
        "24",
        "--max-iters",
        "4",
        "--alpha0",
        "1",
        "--rho",
        "0.3",
        "--rho-bar",
        "1.5",
        "--out",
        d.to_str().unwrap(),
    ]);
    let h: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("history.json")).unwrap()).unwrap();
    let steps: Vec<f64> = h
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["accepted"].as_bool().unwrap())
        .map(|e| e["step"].as_f64().unwrap())
        .collect();
    assert!(steps.len() >= 3, "{steps:?}");
    let mut backtracked = false;
    for w in steps.windows(2) {
        let k = ((w[1] / (1.5 * w[0])).ln() / 0.3f64.ln()).round();
        let want = 1.5 * w[0] * 0.3f64.powf(k);
        assert!(k >= 0.0 && (w[1] - want).abs() < 1e-12 * want, "{steps:?}");
        backtracked |= k >= 1.0;
    }
    assert!(backtracked, "no backtracking seen: {steps:?}");
    // A bad constant is an error with its name, not a panic.
    let out = bin()
        .args([
            "tune", "tv", "--images", "2", "--size", "24", "--rho", "1.5", "--out",
        ])
        .arg(d.to_str().unwrap())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rho") && !err.contains("panicked"), "{err}");
}

#[test]
fn tune_foe_and_logreg_run_and_reduce_the_upper_loss() {
    let d = tmpdir("foe");
    run_ok(&[
        "tune",
        "foe",
        "--images",
        "1",
        "--size",
        "24",
        "--filters",
        "4",
        "--filter-size",
        "3",
        "--max-iters",
        "5",
        "--out",
        d.to_str().unwrap(),
    ]);
    assert_outputs(&d);
    let r = report(&d);
    assert_eq!(r["n_hyperparameters"].as_u64().unwrap(), 1 + 8 + 4 * 9);
    assert!(r["psnr_denoised"].as_f64().unwrap() > r["psnr_noisy"].as_f64().unwrap());

    let d = tmpdir("logreg");
    run_ok(&[
        "tune",
        "logreg",
        "--n-train",
        "300",
        "--max-iters",
        "8",
        "--out",
        d.to_str().unwrap(),
    ]);
    assert_outputs(&d);
    let r = report(&d);
    assert_eq!(r["n_hyperparameters"].as_u64().unwrap(), 640);
    assert!(r["upper_loss"].as_f64().unwrap() < r["upper_loss_start"].as_f64().unwrap());
}

#[test]
fn tune_lasso_matches_or_beats_the_grid() {
    use hyperprox::prelude::*;
    let d = tmpdir("lasso");
    let w = ndarray::Array1::from_shape_fn(80, |j| if j % 9 == 0 { 1.0 } else { 0.0 });
    for (name, seed) in [("train", 1u64), ("val", 2)] {
        let a = DenseMatrix::<f64>::gaussian(50, 80, seed).unwrap();
        let noise = DenseMatrix::<f64>::gaussian(50, 1, seed + 10)
            .unwrap()
            .matrix()
            .column(0)
            .to_owned();
        let b = a.apply(w.view()).unwrap() + noise * 0.3;
        hyperprox::core::io::write_npy(d.join(format!("A_{name}.npy")), &a.matrix().to_owned())
            .unwrap();
        hyperprox::core::io::write_npy(d.join(format!("b_{name}.npy")), &b).unwrap();
    }
    let p = |f: &str| d.join(f).to_str().unwrap().to_string();
    let out = d.join("out");
    run_ok(&[
        "tune",
        "lasso",
        "--a-train",
        &p("A_train.npy"),
        "--b-train",
        &p("b_train.npy"),
        "--a-val",
        &p("A_val.npy"),
        "--b-val",
        &p("b_val.npy"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_outputs(&out);
    let r = report(&out);
    let (mse, grid) = (
        r["val_mse"].as_f64().unwrap(),
        r["grid"]["best_val_mse"].as_f64().unwrap(),
    );
    assert!(mse <= grid * 1.01, "tuned {mse} vs grid {grid}");
    assert!(r["lambda"].as_f64().unwrap() > 0.0);
    // Wrong length of b: one-line error, no report.
    let bad = d.join("bad");
    let o = bin()
        .args([
            "tune",
            "lasso",
            "--a-train",
            &p("A_train.npy"),
            "--b-train",
            &p("b_val.npy"),
            "--a-val",
            &p("A_train.npy"),
            "--b-val",
            &p("A_val.npy"),
            "--out",
            bad.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("error: "));
    assert!(!bad.join("report.json").exists());
}

#[test]
fn tune_rejects_bad_input_with_one_line_errors() {
    let d = tmpdir("bad");
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "tune",
            "tv",
            "--data",
            "/nonexistent/folder",
            "--out",
            d.to_str().unwrap(),
        ],
        vec![
            "tune",
            "tv",
            "--images",
            "99",
            "--size",
            "16",
            "--out",
            d.to_str().unwrap(),
        ],
        vec![
            "tune",
            "tv",
            "--images",
            "2",
            "--size",
            "16",
            "--sigma=-1",
            "--out",
            d.to_str().unwrap(),
        ],
        vec![
            "tune",
            "tv",
            "--images",
            "2",
            "--size",
            "16",
            "--eps0",
            "0",
            "--out",
            d.to_str().unwrap(),
        ],
        vec![
            "tune",
            "logreg",
            "--data",
            "/nonexistent.csv",
            "--out",
            d.to_str().unwrap(),
        ],
        vec![
            "tune",
            "foe",
            "--images",
            "1",
            "--size",
            "8",
            "--filter-size",
            "9",
            "--out",
            d.to_str().unwrap(),
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
        assert!(!d.join("report.json").exists(), "{c:?} wrote a report");
    }
}

#[test]
fn demo_learns_tv_parameters_and_reports_test_psnr() {
    let d = tmpdir("demo");
    let text = run_ok(&["demo", "--max-iters", "12", "--out", d.to_str().unwrap()]);
    assert!(text.contains("test PSNR"), "{text}");
    assert_outputs(&d);
    let r = report(&d);
    let (pn, pd) = (
        r["psnr_test_noisy"].as_f64().unwrap(),
        r["psnr_test_denoised"].as_f64().unwrap(),
    );
    assert!(pd > pn + 5.0, "test PSNR {pd} vs noisy {pn}");
}

/// `tune tv` killed with SIGKILL after its first checkpoint and resumed with `--resume` ends
/// with the same θ (bit for bit) and the same history as an uninterrupted run; `--resume` with
/// other options or without a checkpoint is a one-line error.
#[test]
fn tune_killed_after_a_checkpoint_resumes_bit_for_bit() {
    let d = tmpdir("resume");
    let (full, cut) = (d.join("full"), d.join("cut"));
    let base = [
        "tune",
        "tv",
        "--images",
        "3",
        "--size",
        "24",
        "--max-iters",
        "10",
    ];
    let with_out = |out: &Path, extra: &[&str]| {
        let mut a: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        a.extend(["--out".to_string(), out.display().to_string()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let args = with_out(&full, &[]);
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // The interrupted run: killed as soon as its first checkpoint is on disk.
    let mut child = bin()
        .args(with_out(&cut, &[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ckpt = cut.join("checkpoint.json");
    let t0 = std::time::Instant::now();
    while !ckpt.exists() {
        assert!(t0.elapsed().as_secs() < 120, "no checkpoint written");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !cut.join("report.json").exists(),
        "the run finished before it was killed"
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ckpt).unwrap()).unwrap();
    let done = state["state"]["history"].as_array().unwrap().len();
    assert!(
        (1..10).contains(&done),
        "{done} iterations in the checkpoint"
    );
    // Resumed with other options: refused; with the same ones: the uninterrupted result.
    let other = bin()
        .args(with_out(&cut, &["--resume", "--eps0", "0.2"]))
        .output()
        .unwrap();
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("other options"));
    let args = with_out(&cut, &["--resume"]);
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (a, b) = (report(&full), report(&cut));
    assert_eq!(
        a["theta"], b["theta"],
        "θ after resuming from iteration {done}"
    );
    assert_eq!(a["iterations_total"], b["iterations_total"]);
    let history = |dir: &Path| std::fs::read_to_string(dir.join("history.json")).unwrap();
    assert_eq!(history(&full), history(&cut));
    // No checkpoint to resume from.
    let none = bin()
        .args(with_out(&d.join("empty"), &["--resume"]))
        .output()
        .unwrap();
    assert!(!none.status.success());
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(
        err.starts_with("error: ") && err.trim().lines().count() == 1,
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// A user's own pairs (`.npy` stacks): isotropic TV with `ν` fixed, one pair held out; the
/// report scores both splits; `denoise tv --params report.json` applies the learned λ and ν and
/// gives the library's answer; bad pairs and options fail with one line and leave no folder.
#[test]
fn tune_tv_on_users_pairs_then_denoise_with_the_learned_params() {
    use hyperprox::bilevel::experiments::denoise_learned_tv;
    use hyperprox::core::func::TvKind;
    use hyperprox::core::io::{
        add_noise_all, load_images, read_npy_2d, shipped_data_dir, write_npy,
    };
    let d = tmpdir("byod");
    let clean = load_images(&shipped_data_dir().join("kodak/gray96"), 3, 16).unwrap();
    let noisy = add_noise_all(&clean, 0.1, 4);
    let to3 = |v: &[ndarray::Array2<f64>]| {
        let views: Vec<_> = v.iter().map(|a| a.view()).collect();
        ndarray::stack(ndarray::Axis(0), &views).unwrap()
    };
    write_npy(d.join("c.npy"), &to3(&clean)).unwrap();
    write_npy(d.join("y.npy"), &to3(&noisy)).unwrap();
    write_npy(d.join("y2.npy"), &noisy[2]).unwrap();
    let s = |p: &str| d.join(p).to_str().unwrap().to_string();
    let out = s("out");
    let base = [
        "tune",
        "tv",
        "--clean",
        &s("c.npy"),
        "--noisy",
        &s("y.npy"),
        "--tv",
        "isotropic",
        "--smoothing",
        "0.05",
        "--fix-smoothing",
        "--val-fraction",
        "0.34",
        "--stationarity-tol",
        "1e-6",
        "--max-iters",
        "60",
        "--out",
        &out,
    ];
    run_ok(&base);
    assert_outputs(&d.join("out"));
    let r = report(&d.join("out"));
    assert_eq!(r["tv"], "isotropic");
    assert_eq!(r["boundary"], "neumann");
    assert_eq!(r["smoothing"].as_f64(), Some(0.05));
    assert_eq!(r["smoothing_fixed"], true);
    assert!(r["sigma"].is_null());
    assert_eq!(r["theta"].as_array().unwrap().len(), 1);
    assert_eq!(
        (
            r["train"]["images"].as_u64(),
            r["validation"]["images"].as_u64()
        ),
        (Some(2), Some(1))
    );
    for split in ["train", "validation"] {
        let (pn, pd) = (
            r[split]["psnr_noisy"].as_f64().unwrap(),
            r[split]["psnr_denoised"].as_f64().unwrap(),
        );
        assert!(pd > pn + 3.0, "{split}: PSNR {pd} vs noisy {pn}");
        assert!(r[split]["upper_loss"].as_f64().unwrap() > 0.0);
    }
    let lambda = r["lambda"].as_f64().unwrap();
    assert_eq!(lambda, r["theta"][0].as_f64().unwrap().exp());
    // The held-out pair, denoised with the report: the library's answer, bit for bit.
    run_ok(&[
        "denoise",
        "tv",
        "--input",
        &s("y2.npy"),
        "--params",
        &s("out/report.json"),
        "--tol",
        "1e-8",
        "--out",
        &s("x2.npy"),
        "--report",
        &s("x2.json"),
    ]);
    let x2 = read_npy_2d(d.join("x2.npy")).unwrap();
    let (want, rep) =
        denoise_learned_tv(noisy[2].view(), TvKind::Isotropic, lambda, 0.05, 1e-8).unwrap();
    assert_eq!(x2, want);
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("x2.json")).unwrap()).unwrap();
    assert_eq!(j["problem"], "smoothed-tv");
    assert_eq!(j["error_bound"].as_f64(), Some(rep.error_bound));
    // Validation upper loss = ½‖x̂ − c‖² of the held-out pair (N = 1), to the solves' accuracy.
    let v = r["validation"]["upper_loss"].as_f64().unwrap();
    let direct = 0.5 * (&x2 - &clean[2]).mapv(|e| e * e).sum();
    assert!((v - direct).abs() <= 1e-6 * direct, "{v} vs {direct}");

    // Failures: one line on stderr, no output folder.
    write_npy(d.join("y_short.npy"), &to3(&noisy[..2])).unwrap();
    std::fs::write(d.join("garbage.json"), "{\"problem\": \"lasso\"}").unwrap();
    let bad = s("bad");
    let (c, y, ys, y2) = (s("c.npy"), s("y.npy"), s("y_short.npy"), s("y2.npy"));
    let (outd, garbage, missing, rep, bnpy) = (
        s("out"),
        s("garbage.json"),
        s("missing.json"),
        s("out/report.json"),
        s("bad.npy"),
    );
    // `tune tv` on the pairs (c, y) with the given options, into `bad`.
    let pairs = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["tune", "tv", "--clean", &c, "--noisy", &y]
            .iter()
            .map(|v| v.to_string())
            .collect();
        a.extend(extra.iter().map(|v| v.to_string()));
        a.extend(["--out".to_string(), bad.clone()]);
        a
    };
    let owned = [
        pairs(&["--val-fraction", "1"]),
        pairs(&["--val-fraction", "0.1"]),
        pairs(&["--smoothing", "0", "--fix-smoothing"]),
    ];
    let mut cases: Vec<Vec<&str>> = owned
        .iter()
        .map(|a| a.iter().map(String::as_str).collect())
        .collect();
    cases.extend(vec![
        vec!["tune", "tv", "--clean", &c, "--noisy", &ys, "--out", &bad],
        vec!["tune", "tv", "--clean", &c, "--noisy", &outd, "--out", &bad],
        vec![
            "tune",
            "tv",
            "--images",
            "2",
            "--size",
            "16",
            "--tv",
            "isotropic",
            "--reference-convention",
            "--out",
            &bad,
        ],
        vec![
            "denoise", "tv", "--input", &y2, "--params", &garbage, "--out", &bnpy,
        ],
        vec![
            "denoise", "tv", "--input", &y2, "--params", &missing, "--out", &bnpy,
        ],
        vec![
            "denoise", "tv", "--input", &y2, "--params", &rep, "--tol", "0", "--out", &bnpy,
        ],
    ]);
    for c in cases {
        let o = bin().args(&c).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{c:?} should fail");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.starts_with("error: ") && e.trim().lines().count() == 1,
            "{c:?}: {e}"
        );
        assert!(
            !d.join("bad").exists() && !d.join("bad.npy").exists(),
            "{c:?} wrote output"
        );
    }
    // Usage errors from the parser: --fix-smoothing needs --smoothing, --clean needs --noisy.
    for c in [
        vec!["tune", "tv", "--fix-smoothing", "--out", &bad],
        vec!["tune", "tv", "--clean", &c, "--out", &bad],
        vec![
            "tune", "tv", "--clean", &c, "--noisy", &y, "--images", "2", "--out", &bad,
        ],
    ] {
        let o = bin().args(&c).output().unwrap();
        assert!(!o.status.success(), "{c:?} should fail");
        assert!(!d.join("bad").exists());
    }
    std::fs::remove_dir_all(&d).unwrap();
}

fn history_upper(dir: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(dir.join("history.json")).unwrap();
    let h: serde_json::Value = serde_json::from_str(&text).unwrap();
    h.as_array()
        .unwrap()
        .iter()
        .map(|r| r["upper_loss"].as_f64().unwrap())
        .collect()
}

/// `tune variational` with the shipped example spec (blur, TV with learned ν, Huber on the
/// gradient, fixed Tikhonov) on shipped Kodak crops: the upper loss falls, the restoration
/// beats the degraded images, and the report names every term and hyperparameter. Huber's
/// Hessian is not Lipschitz, so the run is reported as estimated, not certified.
#[test]
fn tune_variational_learns_the_example_spec_on_kodak() {
    let d = tmpdir("variational");
    let spec = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/deblur_tv_huber.json");
    run_ok(&[
        "tune",
        "variational",
        "--spec",
        spec.to_str().unwrap(),
        "--images",
        "2",
        "--size",
        "32",
        "--max-iters",
        "8",
        "--out",
        d.to_str().unwrap(),
    ]);
    assert_outputs(&d);
    let r = report(&d);
    assert_eq!(r["problem"], "variational");
    assert_eq!(r["terms"].as_array().unwrap().len(), 3);
    assert_eq!(r["hyperparameters"].as_array().unwrap().len(), 3);
    assert_eq!(r["certified"], false);
    let (pd, pr) = (
        r["psnr_degraded"].as_f64().unwrap(),
        r["psnr_restored"].as_f64().unwrap(),
    );
    assert!(pr > pd + 1.0, "restored {pr} dB vs degraded {pd} dB");
    let h = history_upper(&d);
    assert!(h.last().unwrap() < &h[0], "upper loss {h:?}");
}

/// The user's own pairs (.npy stacks) and an inpainting spec (mask, isotropic TV with learned
/// ν, a learned Tikhonov weight, PSNR-scaled loss): every bound is proven, so every
/// hypergradient is certified.
#[test]
fn tune_variational_on_users_pairs_is_certified() {
    use ndarray::{Array2, Array3};
    let d = tmpdir("variational-users");
    let clean = hyperprox::bilevel::data::load_images(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/kodak/gray96"),
        2,
        24,
    )
    .unwrap();
    let keep = Array2::from_shape_fn((24, 24), |(i, j)| ((i * 7 + j * 3) % 4 != 0) as u8 as f64);
    let noisy = hyperprox::bilevel::data::add_noise(&clean, 0.05, 3);
    let stack =
        |v: &[Array2<f64>]| Array3::from_shape_fn((v.len(), 24, 24), |(k, i, j)| v[k][[i, j]]);
    let degraded: Vec<Array2<f64>> = noisy.iter().map(|y| y * &keep).collect();
    hyperprox::core::io::write_npy(d.join("clean.npy"), &stack(&clean)).unwrap();
    hyperprox::core::io::write_npy(d.join("degraded.npy"), &stack(&degraded)).unwrap();
    hyperprox::core::io::write_npy(d.join("mask.npy"), &keep).unwrap();
    std::fs::write(
        d.join("model.json"),
        r#"{ "forward": { "operator": "mask", "mask": "mask.npy" }, "upper": "mse",
             "regularizers": [
               { "penalty": "tv", "tv": "isotropic", "smoothing": 0.05, "learn_smoothing": true, "weight": 0.05 },
               { "penalty": "squared-l2", "weight": 0.01 } ] }"#,
    )
    .unwrap();
    let out = d.join("out");
    run_ok(&[
        "tune",
        "variational",
        "--spec",
        d.join("model.json").to_str().unwrap(),
        "--clean",
        d.join("clean.npy").to_str().unwrap(),
        "--noisy",
        d.join("degraded.npy").to_str().unwrap(),
        "--max-iters",
        "6",
        "--out",
        out.to_str().unwrap(),
    ]);
    let r = report(&out);
    assert_eq!(r["certified"], true);
    assert!(r["sigma"].is_null());
    assert!(r["psnr_restored"].as_f64().unwrap() > r["psnr_degraded"].as_f64().unwrap() + 3.0);
    let h = history_upper(&out);
    assert!(h.last().unwrap() < &h[0], "upper loss {h:?}");
}

#[test]
fn tune_variational_rejects_bad_specs_with_one_line_errors() {
    let d = tmpdir("variational-bad");
    let cases = [
        (
            r#"{ "forward": { "operator": "identity" }, "regularizers": [], "colour": 1 }"#,
            "unknown field",
        ),
        (
            r#"{ "forward": { "operator": "blur", "kernel": "nope.npy" }, "regularizers": [ { "penalty": "squared-l2", "weight": 0.1 } ] }"#,
            "nope.npy",
        ),
        (
            r#"{ "forward": { "operator": "identity" }, "regularizers": [] }"#,
            "at least one regularizer",
        ),
        (
            r#"{ "forward": { "operator": "identity" }, "regularizers": [ { "penalty": "huber", "weight": 0.1 } ] }"#,
            "delta",
        ),
        (
            r#"{ "forward": { "operator": "identity" }, "regularizers": [ { "penalty": "squared-l2", "weight": 0.1, "learn": false } ] }"#,
            "nothing to learn",
        ),
    ];
    for (i, (spec, want)) in cases.iter().enumerate() {
        let path = d.join(format!("spec{i}.json"));
        std::fs::write(&path, spec).unwrap();
        let out = d.join(format!("out{i}"));
        let o = bin()
            .args([
                "tune",
                "variational",
                "--spec",
                path.to_str().unwrap(),
                "--images",
                "1",
                "--size",
                "16",
            ])
            .args(["--max-iters", "2", "--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{spec}: {err}");
        assert!(err.contains(want), "{spec}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "{spec}: output folder created");
    }
}
