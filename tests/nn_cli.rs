//! End-to-end checks of `hyperprox nn train` on the shipped digits.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hyperprox"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hyperprox-nn-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(args: &[&str]) -> std::process::Output {
    bin().args(args).output().unwrap()
}

fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn json(dir: &Path, f: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap()
}

#[test]
fn train_writes_its_files_and_a_resumed_run_equals_an_uninterrupted_one() {
    let full = tmpdir("full");
    let part = tmpdir("part");
    let common = [
        "nn",
        "train",
        "--arch",
        "mlp:32",
        "--dropout",
        "0.1",
        "--loss",
        "elr",
        "--optimizer",
        "adamw",
        "--weight-decay",
        "1e-3",
        "--lr",
        "0.005",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        common.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let args = with(&["--epochs", "4", "--out", full.to_str().unwrap()]);
    run_ok(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    for f in ["model.json", "checkpoint.json", "report.json", "figure.png"] {
        assert!(full.join(f).exists(), "{f} missing");
    }
    let r = json(&full, "report.json");
    let epochs = r["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 4);
    for e in epochs {
        for k in ["train_loss", "val_loss", "test_accuracy", "seconds"] {
            assert!(e[k].as_f64().unwrap().is_finite(), "{k}");
        }
    }
    assert!(r["final_test_accuracy"].as_f64().unwrap() > 0.8);
    // Two epochs, then two more with --resume: the same parameters, bit for bit.
    let args = with(&["--epochs", "2", "--out", part.to_str().unwrap()]);
    run_ok(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let args = with(&["--epochs", "4", "--resume", "--out", part.to_str().unwrap()]);
    run_ok(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert_eq!(
        json(&full, "model.json")["params"],
        json(&part, "model.json")["params"]
    );
    // Resuming with other options is refused and leaves the files as they were.
    let before = std::fs::read(part.join("checkpoint.json")).unwrap();
    let out = run(&[
        "nn",
        "train",
        "--arch",
        "mlp:64",
        "--resume",
        "--out",
        part.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("other options"));
    assert_eq!(std::fs::read(part.join("checkpoint.json")).unwrap(), before);
    let _ = std::fs::remove_dir_all(&full);
    let _ = std::fs::remove_dir_all(&part);
}

#[test]
fn the_cnn_and_f64_run() {
    let d = tmpdir("cnn");
    let line = run_ok(&[
        "nn",
        "train",
        "--arch",
        "cnn:8",
        "--quick",
        "--epochs",
        "3",
        "--precision",
        "f64",
        "--loss",
        "stablemax",
        "--orthogonal",
        "--out",
        d.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["precision"], "f64");
    assert!(v["final_test_accuracy"].as_f64().unwrap() > 0.7, "{line}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_options_are_one_line_errors_without_output() {
    let d = tmpdir("bad");
    let ds = d.to_str().unwrap();
    for (args, what) in [
        (vec!["--arch", "rnn:3"], "architecture"),
        (vec!["--arch", "mlp:0"], "architecture"),
        (vec!["--loss", "hinge"], "loss"),
        (vec!["--optimizer", "lbfgs"], "optimizer"),
        (vec!["--dropout", "1.5"], "--dropout"),
        (vec!["--lr=0"], "--lr"),
        (vec!["--batch", "0"], "--batch"),
        (vec!["--epochs", "0"], "--epochs"),
        (vec!["--prune", "1.0"], "--prune"),
        (vec!["--resume"], "checkpoint.json"),
    ] {
        let mut all = vec!["nn", "train", "--out", ds];
        all.extend(&args);
        let out = run(&all);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(what), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(!d.exists(), "{args:?} created the output folder");
    }
}
