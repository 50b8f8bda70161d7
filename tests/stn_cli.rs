//! End-to-end checks of `hyperprox stn ridge`: the synthetic default and user `.npy` files,
//! resumption, and clear errors on bad input.

use hyperprox::core::io::write_npy;
use hyperprox::stn::ridge::RidgeData;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hyperprox-stn-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hyperprox"))
        .args(args)
        .output()
        .unwrap()
}

fn json(dir: &Path, f: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap()
}

#[test]
fn ridge_on_user_files_tunes_lambda_and_resumes_exactly() {
    let dir = tmpdir("files");
    std::fs::create_dir_all(&dir).unwrap();
    let d = RidgeData::synthetic(80, 150, 20, 0.8, 11).unwrap();
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    write_npy(p("xt.npy"), &d.x_train).unwrap();
    write_npy(p("yt.npy"), &d.y_train).unwrap();
    write_npy(p("xv.npy"), &d.x_val).unwrap();
    write_npy(p("yv.npy"), &d.y_val).unwrap();
    let files = [
        "--x-train",
        &p("xt.npy"),
        "--y-train",
        &p("yt.npy"),
        "--x-val",
        &p("xv.npy"),
        "--y-val",
        &p("yv.npy"),
    ];
    let (full, part) = (dir.join("full"), dir.join("part"));
    let go = |out: &Path, steps: &str, resume: bool| {
        let mut a: Vec<&str> = vec![
            "stn",
            "ridge",
            "--steps",
            steps,
            "--out",
            out.to_str().unwrap(),
        ];
        a.extend(files);
        if resume {
            a.push("--resume");
        }
        let o = run(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    go(&full, "3000", false);
    for f in [
        "report.json",
        "history.json",
        "checkpoint.json",
        "figure.png",
    ] {
        assert!(full.join(f).exists(), "{f}");
    }
    let r = json(&full, "report.json");
    let (lam, exact) = (
        r["lambda"].as_f64().unwrap(),
        r["exact_optimum"]["lambda"].as_f64().unwrap(),
    );
    let (lstar, _) = d.exact_optimum().unwrap();
    assert!((exact - lstar).abs() < 1e-9 * lstar);
    println!("CLI: λ = {lam}, exact {exact}");
    assert!(
        (lam.log10() - exact.log10()).abs() < 0.15,
        "{lam} vs {exact}"
    );
    // Interrupted after its first checkpoint (1000 steps), then resumed: the same run.
    go(&part, "1000", false);
    let mut ck = json(&part, "checkpoint.json");
    ck["config"]["steps"] = serde_json::json!(3000);
    std::fs::write(part.join("checkpoint.json"), ck.to_string()).unwrap();
    go(&part, "3000", true);
    assert_eq!(json(&part, "report.json")["lambda"], r["lambda"]);
    assert_eq!(json(&part, "history.json"), json(&full, "history.json"));
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tmpdir("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    let o = dir.to_str().unwrap();
    // Only some of the four files.
    let e = run(&[
        "stn",
        "ridge",
        "--x-train",
        "x.npy",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!e.status.success());
    // A missing file.
    let miss = format!("{o}/none.npy");
    let e = run(&[
        "stn",
        "ridge",
        "--x-train",
        &miss,
        "--y-train",
        &miss,
        "--x-val",
        &miss,
        "--y-val",
        &miss,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("none.npy"));
    // NaN in the data.
    let mut d = RidgeData::synthetic(10, 10, 3, 1.0, 1).unwrap();
    d.x_val[[2, 1]] = f64::NAN;
    let p = |f: &str| format!("{o}/{f}");
    write_npy(p("xt.npy"), &d.x_train).unwrap();
    write_npy(p("yt.npy"), &d.y_train).unwrap();
    write_npy(p("xv.npy"), &d.x_val).unwrap();
    write_npy(p("yv.npy"), &d.y_val).unwrap();
    let e = run(&[
        "stn",
        "ridge",
        "--x-train",
        &p("xt.npy"),
        "--y-train",
        &p("yt.npy"),
        "--x-val",
        &p("xv.npy"),
        "--y-val",
        &p("yv.npy"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!e.status.success());
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(msg.contains("xv.npy") && msg.contains("NaN"), "{msg}");
    assert!(!out.join("report.json").exists());
    // A negative initial λ.
    let e = run(&[
        "stn",
        "ridge",
        "--lambda0",
        "-1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!e.status.success());
}

#[test]
fn digits_reports_every_method() {
    let out = tmpdir("digits");
    let o = run(&[
        "stn",
        "digits",
        "--steps",
        "300",
        "--delta",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "report.json",
        "history.json",
        "figure.png",
        "checkpoint.json",
        "checkpoint-delta.json",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let r = json(&out, "report.json");
    let methods = r["methods"].as_array().unwrap();
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["stn", "delta_stn", "grid", "random"]);
    for m in methods {
        for k in ["val_loss", "test_loss", "test_accuracy", "time_s"] {
            assert!(m[k].as_f64().unwrap().is_finite(), "{k}");
        }
        let steps = m["train_steps_total"].as_u64().unwrap();
        assert!((200..=300).contains(&steps), "{steps}");
        assert_eq!(m["hyperparameters"].as_array().unwrap().len(), 7);
    }
    let e = run(&[
        "stn",
        "digits",
        "--steps",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!e.status.success());
    // Resuming the finished run changes nothing in the STN row; other options are refused.
    let dir = out.to_str().unwrap();
    let o = run(&[
        "stn", "digits", "--steps", "300", "--delta", "--resume", "--out", dir,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again = json(&out, "report.json");
    for k in 0..2 {
        assert_eq!(again["methods"][k]["val_loss"], r["methods"][k]["val_loss"]);
    }
    let o = run(&[
        "stn", "digits", "--steps", "300", "--tau", "0.1", "--resume", "--out", dir,
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("other options"));
}
