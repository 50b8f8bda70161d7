//! End-to-end checks of `hyperprox node spiral`: the error regularizer (ERNODE) makes the fitted
//! neural ODE cheaper to solve at a small cost in test error, resumption continues a run
//! exactly, and bad options fail with a message.

use std::path::{Path, PathBuf};
use std::process::Command;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hyperprox-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hyperprox"))
        .args(args)
        .output()
        .unwrap()
}

fn report(args: &[&str], out: &Path) -> serde_json::Value {
    let mut a = vec!["node", "spiral", "--out", out.to_str().unwrap()];
    a.extend(args);
    let o = run(&a);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for f in [
        "report.json",
        "history.json",
        "checkpoint.json",
        "figure.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

/// The acceptance check at full size (1000 iterations, about 2 s each): with ERNODE's
/// error regularizer (mean of EEst·h, weight decayed 1 → 0.1), the test solve needs at most
/// 0.8× the function evaluations of the unregularized model, with at most 2× its test MSE.
#[test]
fn error_regularizer_cuts_test_nfe_at_small_cost() {
    let dir = tmpdir("ratio");
    let none = report(&["--reg", "none"], &dir.join("none"));
    let err = report(
        &["--reg", "error", "--weight", "1", "--weight-end", "0.1"],
        &dir.join("error"),
    );
    let f = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap();
    let (nfe0, nfe1) = (f(&none, "nfe_test"), f(&err, "nfe_test"));
    let (mse0, mse1) = (f(&none, "test_loss"), f(&err, "test_loss"));
    eprintln!("nfe {nfe0} -> {nfe1}, test mse {mse0:.3e} -> {mse1:.3e}");
    // The unregularized model must have learned the spiral (its test MSE at initialization is
    // of order 1), so that the ratio compares two fits.
    assert!(mse0 < 1e-2, "unregularized test mse {mse0}");
    assert!(nfe1 <= 0.8 * nfe0, "nfe {nfe0} -> {nfe1}");
    assert!(mse1 <= 2.0 * mse0, "test mse {mse0} -> {mse1}");
    assert_eq!(err["reg"], "error");
    assert_eq!(err["config"]["reg"]["weight"]["kind"], "exponential");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn spiral_resumes_exactly() {
    let dir = tmpdir("resume");
    let args = ["--reg", "stiffness", "--local", "--weight", "0.01"];
    let with = |extra: &[&'static str]| [&args[..], extra].concat();
    let full = report(&with(&["--iters", "120"]), &dir.join("full"));
    // A 100-iteration run, its checkpoint relabelled as a 120-iteration run (only
    // `config.iters` differs), then resumed to 120: the same model as the uninterrupted run.
    let part = dir.join("part");
    report(&with(&["--iters", "100"]), &part);
    let ckpt = part.join("checkpoint.json");
    let mut st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ckpt).unwrap()).unwrap();
    assert_eq!(st["iter"], 100);
    st["config"]["iters"] = 120.into();
    std::fs::write(&ckpt, serde_json::to_string(&st).unwrap()).unwrap();
    let resumed = report(&with(&["--iters", "120", "--resume"]), &part);
    assert_eq!(resumed["iterations"], 120);
    assert_eq!(resumed["test_loss"], full["test_loss"]);
    assert_eq!(resumed["nfe_test"], full["nfe_test"]);
    // Other options than the checkpoint's are refused.
    let o = run(&[
        "node",
        "spiral",
        "--reg",
        "error",
        "--iters",
        "120",
        "--resume",
        "--out",
        part.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("made with other options"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_options_fail_with_a_message() {
    let dir = tmpdir("bad");
    let out = dir.join("o");
    let o = out.to_str().unwrap();
    for (args, needle) in [
        (vec!["--reg", "taylor"], "expected none, error or stiffness"),
        (vec!["--reg", "none", "--local"], "--local needs"),
        (vec!["--reg", "error", "--weight=-1"], "≥ 0"),
        (vec!["--tol", "0"], "tolerances must be positive"),
        (vec!["--iters", "0"], "--iters 0"),
        (vec!["--resume"], "run without --resume first"),
    ] {
        let mut a = vec!["node", "spiral", "--out", o];
        a.extend(&args);
        let r = run(&a);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // A file where the output folder should go.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("f"), "x").unwrap();
    let r = run(&["node", "spiral", "--out", dir.join("f/o").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&r.stderr).contains("is a file"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `node digits` at CI size (4 epochs, about 3 s each): the model learns (test accuracy above
/// 80 %), ERNODE's error regularizer (100 → 10, the reference's MNIST schedule) lowers the NFE
/// of the test solves, and the run resumes from its checkpoint.
#[test]
fn digits_classifier_learns_and_the_error_regularizer_cuts_its_nfe() {
    let dir = tmpdir("digits");
    let go = |args: &[&str], out: &Path| {
        let mut a = vec![
            "node",
            "digits",
            "--epochs",
            "4",
            "--out",
            out.to_str().unwrap(),
        ];
        a.extend(args);
        let o = run(&a);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        r
    };
    let none = go(&["--reg", "none"], &dir.join("none"));
    let err = go(
        &["--reg", "error", "--weight", "100", "--weight-end", "10"],
        &dir.join("error"),
    );
    let f = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap();
    eprintln!(
        "acc {} -> {}, nfe {} -> {}",
        f(&none, "test_accuracy"),
        f(&err, "test_accuracy"),
        f(&none, "nfe_test"),
        f(&err, "nfe_test")
    );
    assert!(f(&none, "test_accuracy") > 0.8, "{none}");
    assert!(f(&err, "test_accuracy") > 0.8, "{err}");
    assert!(f(&err, "nfe_test") < f(&none, "nfe_test"), "{none} {err}");
    for k in ["history.json", "checkpoint.json", "figure.png"] {
        assert!(dir.join("none").join(k).is_file());
    }
    // Resume: a 2-epoch run's checkpoint relabelled as a 4-epoch run (only `config.epochs`
    // differs) and resumed gives the uninterrupted run's model.
    let part = dir.join("part");
    let o = run(&[
        "node",
        "digits",
        "--epochs",
        "2",
        "--reg",
        "none",
        "--out",
        part.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let ckpt = part.join("checkpoint.json");
    let mut st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ckpt).unwrap()).unwrap();
    assert_eq!(st["epoch"], 2);
    st["config"]["epochs"] = 4.into();
    std::fs::write(&ckpt, serde_json::to_string(&st).unwrap()).unwrap();
    let resumed = go(&["--reg", "none", "--resume"], &part);
    assert_eq!(resumed["test_loss"], none["test_loss"]);
    assert_eq!(resumed["nfe_test"], none["nfe_test"]);
    let _ = std::fs::remove_dir_all(&dir);
}
