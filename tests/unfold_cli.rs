//! End-to-end checks of `hyperprox unfold …` at reduced size (N = 100, M = 50 with --quick).

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hyperprox"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hyperprox-unfold-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> std::process::Output {
    bin().args(args).output().unwrap()
}

fn run_ok(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const SMALL: [&str; 10] = [
    "--quick",
    "--layers",
    "5",
    "--steps-per-layer",
    "8",
    "--final-steps",
    "6",
    "--val-size",
    "50",
    "--test-size",
];

fn train_args<'a>(model: &'a str, loss: &'a str, out: &'a str) -> Vec<&'a str> {
    let mut v = vec!["unfold", "train", "--model", model, "--loss", loss];
    v.extend(SMALL);
    v.extend(["100", "--out", out]);
    v
}

#[test]
fn train_writes_the_report_and_resume_is_exact() {
    let d = tmpdir("train");
    let full = d.join("full");
    let fs = full.to_str().unwrap();
    run_ok(&train_args("du-ista", "unsupervised", fs));
    let r = json(&full.join("report.json"));
    assert_eq!(r["model"], "du-ista");
    assert_eq!(r["loss"], "unsupervised");
    assert_eq!(r["layers"], 5);
    assert_eq!(r["lambda"], 0.1);
    for key in ["nmse_db", "objective"] {
        assert_eq!(r[key].as_array().unwrap().len(), 6, "{key}");
        for b in ["ista", "fista", "iht"] {
            assert_eq!(
                r["baselines"][b][key].as_array().unwrap().len(),
                6,
                "{b} {key}"
            );
        }
    }
    assert_eq!(r["params"]["alpha"].as_array().unwrap().len(), 5);
    let fstar = r["lasso_objective_optimum"].as_f64().unwrap();
    // The LASSO optimum is below every iterate's objective (up to the FISTA tolerance).
    for o in r["objective"]
        .as_array()
        .unwrap()
        .iter()
        .chain(r["baselines"]["ista"]["objective"].as_array().unwrap())
    {
        assert!(o.as_f64().unwrap() >= fstar * (1.0 - 1e-8));
    }
    assert!(full.join("figure.png").metadata().unwrap().len() > 10_000);
    // Stop after 17 minibatches, resume: the same model as the uninterrupted run.
    let part = d.join("part");
    let ps = part.to_str().unwrap();
    let mut a = train_args("du-ista", "unsupervised", ps);
    a.extend(["--max-steps", "17"]);
    run_ok(&a);
    assert_eq!(
        json(&part.join("report.json"))["training"]["finished"],
        false
    );
    let mut a = train_args("du-ista", "unsupervised", ps);
    a.push("--resume");
    run_ok(&a);
    assert_eq!(
        json(&part.join("model.json"))["params"],
        json(&full.join("model.json"))["params"]
    );
    // Evaluation on a mismatched test distribution.
    let ev = d.join("eval");
    run_ok(&[
        "unfold",
        "eval",
        "--model",
        full.join("model.json").to_str().unwrap(),
        "--test-p",
        "0.15",
        "--test-size",
        "100",
        "--out",
        ev.to_str().unwrap(),
    ]);
    let e = json(&ev.join("report.json"));
    assert_eq!(e["setting"]["test_p"], 0.15);
    assert_eq!(e["loss"], "unsupervised");
    assert_eq!(e["params"], r["params"]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn every_model_trains_from_the_command_line() {
    let d = tmpdir("models");
    for m in [
        "du-iht",
        "lista",
        "lista-cp",
        "lista-cpss",
        "alista",
        "tista",
    ] {
        let o = d.join(m);
        run_ok(&train_args(m, "supervised", o.to_str().unwrap()));
        let r = json(&o.join("report.json"));
        assert_eq!(r["model"], m);
        let nm = r["nmse_db"].as_array().unwrap();
        assert!(nm.iter().all(|v| v.as_f64().unwrap().is_finite()), "{m}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_inputs_give_one_line_errors_and_no_report() {
    let d = tmpdir("bad");
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "unfold",
            "eval",
            "--model",
            "/nonexistent/model.json",
            "--out",
        ],
        vec![
            "unfold", "train", "--model", "du-ista", "--n", "50", "--m", "80", "--out",
        ],
        vec![
            "unfold", "train", "--model", "du-ista", "--quick", "--test-p", "2", "--out",
        ],
        vec![
            "unfold", "train", "--model", "du-ista", "--quick", "--layers", "0", "--out",
        ],
        vec![
            "unfold",
            "train",
            "--model",
            "du-ista",
            "--quick",
            "--lambda=-1",
            "--out",
        ],
        vec![
            "unfold", "train", "--model", "du-ista", "--quick", "--resume", "--out",
        ],
    ];
    for (i, c) in cases.iter().enumerate() {
        let o = d.join(format!("c{i}"));
        let mut a = c.clone();
        a.push(o.to_str().unwrap());
        let out = run(&a);
        assert!(!out.status.success(), "{a:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1,
            "{a:?}: {err}"
        );
        assert!(!o.join("report.json").exists());
    }
    let _ = std::fs::remove_dir_all(&d);
}
