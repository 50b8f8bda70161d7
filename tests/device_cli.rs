//! `--device cuda` as a user meets it: on a machine without a usable GPU (no `cuda` feature in
//! the build, or no driver), one clear line and exit code 1, and no file written; with a GPU
//! (feature `cuda` on a GPU machine), the device's result equals the CPU's.

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hyperprox"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hyperprox-device-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gpu_usable() -> bool {
    let out = bin()
        .args(["bench", "--device", "cuda", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // A run that fails only for want of a GPU says so in its first line.
    let d = tmp("probe");
    let img = d.join("y.png");
    image::GrayImage::from_fn(8, 8, |i, j| image::Luma([((i * 31 + j * 17) % 256) as u8]))
        .save(&img)
        .unwrap();
    let o = bin()
        .args([
            "denoise", "tv", "--lambda", "0.1", "--device", "cuda", "--input",
        ])
        .arg(&img)
        .arg("--out")
        .arg(d.join("x.png"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&d);
    o.status.success()
}

#[test]
fn without_a_gpu_device_cuda_is_one_clear_error_and_writes_nothing() {
    if gpu_usable() {
        eprintln!("skipped: this machine has a usable GPU");
        return;
    }
    let d = tmp("nogpu");
    let img = d.join("y.png");
    image::GrayImage::from_fn(16, 12, |i, j| image::Luma([((i * 13 + j * 7) % 256) as u8]))
        .save(&img)
        .unwrap();
    let out = d.join("x.png");
    let report = d.join("r.json");
    let o = bin()
        .args([
            "denoise", "tv", "--lambda", "0.1", "--device", "cuda", "--input",
        ])
        .arg(&img)
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("--features cuda") || err.contains("NVIDIA driver") || err.contains("CUDA"),
        "{err}"
    );
    assert!(err.contains("--device cpu"), "{err}");
    assert!(!out.exists() && !report.exists());
    // The same for the Lasso and the bench.
    let o = bin()
        .args(["bench", "--quick", "--device", "cuda"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).is_empty());
    // A device name that does not exist is a usage error naming the choices.
    let o = bin()
        .args([
            "denoise", "tv", "--lambda", "0.1", "--device", "tpu", "--input",
        ])
        .arg(&img)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cuda:N"));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn on_a_gpu_denoising_gives_the_cpu_image() {
    if !gpu_usable() {
        eprintln!("skipped: no usable GPU (build with --features cuda on a GPU machine)");
        return;
    }
    let d = tmp("gpu");
    let img = d.join("y.png");
    image::GrayImage::from_fn(64, 48, |i, j| image::Luma([((i * 13 + j * 7) % 256) as u8]))
        .save(&img)
        .unwrap();
    let mut xs = vec![];
    for dev in ["cpu", "cuda"] {
        let out = d.join(format!("x-{dev}.npy"));
        let o = bin()
            .args([
                "denoise", "tv", "--lambda", "0.1", "--tol", "1e-8", "--device", dev,
            ])
            .arg("--input")
            .arg(&img)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let x: ndarray::Array2<f64> = ndarray_npy::read_npy(&out).unwrap();
        xs.push(x);
    }
    let diff = (&xs[0] - &xs[1]).mapv(|v| v * v).sum().sqrt() / xs[0].mapv(|v| v * v).sum().sqrt();
    assert!(diff <= 1e-4, "{diff}");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn unfold_train_on_cuda_without_a_gpu_fails_before_writing_and_names_the_models() {
    if gpu_usable() {
        eprintln!("skipped: this machine has a usable GPU");
        return;
    }
    let d = tmp("unfold-nogpu");
    let out = d.join("run");
    let o = bin()
        .args([
            "unfold", "train", "--model", "du-ista", "--quick", "--layers", "2", "--device",
            "cuda", "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--device cpu"), "{err}");
    assert!(!out.exists(), "the output folder was created");
    // A model without device layers is refused by name, whatever the machine.
    let o = bin()
        .args([
            "unfold", "train", "--model", "lista", "--quick", "--layers", "2", "--device", "cuda",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("du-ista and du-iht"), "{err}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn on_a_gpu_unfold_train_gives_the_cpu_step_sizes() {
    if !gpu_usable() {
        eprintln!("skipped: no usable GPU (build with --features cuda on a GPU machine)");
        return;
    }
    let d = tmp("unfold-gpu");
    let mut alphas = vec![];
    for dev in ["cpu", "cuda"] {
        let out = d.join(dev);
        let o = bin()
            .args([
                "unfold",
                "train",
                "--model",
                "du-ista",
                "--quick",
                "--layers",
                "4",
                "--steps-per-layer",
                "20",
                "--final-steps",
                "20",
                "--test-size",
                "50",
                "--val-size",
                "100",
                "--device",
                dev,
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap())
                .unwrap();
        let p: Vec<f64> = m["params"]
            .as_array()
            .expect("params in model.json")
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        alphas.push(p);
    }
    assert_eq!(alphas[0].len(), 4);
    for (a, b) in alphas[0].iter().zip(&alphas[1]) {
        assert!((a - b).abs() <= 1e-9 * a.abs(), "cpu {a} vs cuda {b}");
    }
    let _ = std::fs::remove_dir_all(d);
}
