//! Every numeric option of the commands, given awkward values (0, −1, NaN, ±∞, 10³⁰⁰, 10⁻³⁰⁰,
//! 2⁶⁴ − 1, 10¹²), ends the command normally or with a one-line error: no panic (exit 101), no
//! abort (an allocation of what a huge size asks for), no hang, and a failed run leaves no output
//! folder behind. The bases keep every run small (16×16 images, N = 20, a few steps).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FLOATS: [&str; 8] = ["0", "-1", "nan", "inf", "-inf", "1e300", "1e-300", "0.5"];
const INTS: [&str; 4] = ["0", "1", "18446744073709551615", "1000000000000"];

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("hyperprox-cli-options-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The inputs the bases read.
fn inputs(d: &Path) {
    use hyperprox::prelude::*;
    let a = DenseMatrix::<f64>::gaussian(20, 30, 3).unwrap();
    let b = a
        .apply(ndarray::Array1::linspace(-1.0, 1.0, 30).view())
        .unwrap();
    hyperprox::core::io::write_npy(d.join("A.npy"), &a.matrix().to_owned()).unwrap();
    hyperprox::core::io::write_npy(d.join("b.npy"), &b).unwrap();
    hyperprox::core::io::write_npy(
        d.join("lab.npy"),
        &b.mapv(|v| if v > 0.0 { 1.0 } else { -1.0 }),
    )
    .unwrap();
    let y = ndarray::Array2::from_shape_fn((16, 16), |(i, j)| ((i * 7 + j * 3) % 5) as f64 / 5.0);
    hyperprox::core::io::write_npy(d.join("y.npy"), &y).unwrap();
    let k = ndarray::Array2::from_elem((3, 3), 1.0 / 9.0);
    hyperprox::core::io::write_npy(d.join("k.npy"), &k).unwrap();
}

/// Runs `args` (with `{d}` replaced by the folder) and checks how it ended.
fn run(d: &Path, args: &[String]) -> Result<(), String> {
    let out = d.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hyperprox"))
        .args(args)
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            return Err(format!("{args:?}: still running after 120 s"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    match status.code() {
        Some(0) => Ok(()),
        Some(1) if err.starts_with("error: ") && err.trim().lines().count() == 1 => {
            // A refused run writes nothing.
            if out.exists() && std::fs::read_dir(&out).map(|r| r.count()).unwrap_or(0) == 0 {
                return Err(format!("{args:?}: left an empty output folder ({err})"));
            }
            Ok(())
        }
        c => Err(format!(
            "{args:?}: exit {c:?}: {}",
            err.lines().take(3).collect::<Vec<_>>().join(" | ")
        )),
    }
}

/// A command's base arguments and its numeric options (`true`: floating point).
struct Case {
    base: &'static str,
    options: &'static [(&'static str, bool)],
}

const CASES: &[Case] = &[
    Case {
        base: "solve lasso --a A.npy --b b.npy --out x.npy --lambda 0.1",
        options: &[("--lambda", true), ("--tol", true), ("--max-iters", false)],
    },
    Case {
        base: "solve lasso --a A.npy --b b.npy --out x.npy",
        options: &[("--lambda-ratio", true)],
    },
    Case {
        base: "solve elastic-net --a A.npy --b b.npy --out x.npy --lambda 0.1",
        options: &[("--alpha", true)],
    },
    Case {
        base: "solve logistic-l1 --a A.npy --b lab.npy --out x.npy --lambda 0.01 --max-iters 2000",
        options: &[("--lambda", true), ("--tol", true)],
    },
    Case {
        base: "denoise tv --input y.npy --out x.npy --lambda 0.1 --max-iters 5000",
        options: &[("--lambda", true), ("--tol", true), ("--max-iters", false)],
    },
    Case {
        base: "deblur tv --input y.npy --kernel k.npy --out x.npy --lambda 0.05 --max-iters 3000",
        options: &[("--lambda", true), ("--tol", true), ("--max-iters", false)],
    },
    Case {
        base: "opnorm --height 8 --width 8",
        options: &[("--height", false), ("--width", false)],
    },
    Case {
        base: "tune tv --images 2 --size 16 --max-iters 2 --out out",
        options: &[
            ("--images", false),
            ("--size", false),
            ("--sigma", true),
            ("--seed", false),
            ("--max-iters", false),
            ("--budget", false),
            ("--eps0", true),
            ("--alpha0", true),
            ("--rho", true),
            ("--rho-bar", true),
            ("--nu", true),
            ("--nu-bar", true),
            ("--eta", true),
            ("--armijo", true),
            ("--max-backtracks", false),
            ("--max-retries", false),
            ("--stationarity-tol", true),
            ("--smoothing", true),
            ("--lambda0", true),
            ("--val-fraction", true),
        ],
    },
    Case {
        base: "tune foe --images 1 --size 16 --filters 2 --filter-size 3 --max-iters 1 --out out",
        options: &[
            ("--filters", false),
            ("--filter-size", false),
            ("--skip", false),
        ],
    },
    Case {
        base: "unfold train --model du-ista --n 20 --m 10 --layers 2 --steps-per-layer 2 \
               --final-steps 1 --batch 8 --val-size 8 --test-size 8 --max-steps 2 --out out",
        options: &[
            ("--layers", false),
            ("--lambda", true),
            ("--n", false),
            ("--m", false),
            ("--p", true),
            ("--snr", true),
            ("--batch", false),
            ("--steps-per-layer", false),
            ("--final-steps", false),
            ("--lr", true),
            ("--sgd-momentum", true),
            ("--seed", false),
            ("--val-size", false),
            ("--max-steps", false),
            ("--test-p", true),
            ("--test-snr", true),
            ("--test-size", false),
        ],
    },
    Case {
        base: "lpn train --data laplacian --quick --max-steps 2 --out out",
        options: &[
            ("--batch", false),
            ("--seed", false),
            ("--max-steps", false),
            ("--checkpoint-every", false),
        ],
    },
];

#[test]
fn awkward_values_of_every_numeric_option_end_cleanly() {
    let d = dir();
    inputs(&d);
    let mut runs = Vec::new();
    for case in CASES {
        let base: Vec<String> = case.base.split_whitespace().map(String::from).collect();
        for &(opt, float) in case.options {
            let values: &[&str] = if float { &FLOATS } else { &INTS };
            for v in values {
                // The option replaces the base's value if the base sets it.
                let mut args = base.clone();
                if let Some(i) = args.iter().position(|a| a == opt) {
                    args.drain(i..i + 2);
                }
                args.push(format!("{opt}={v}"));
                runs.push(args);
            }
        }
    }
    // Two workers (CI has 2 cores).
    let runs = std::sync::Mutex::new(runs.into_iter());
    let failures = std::sync::Mutex::new(Vec::new());
    let count = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for w in 0..2 {
            let (runs, failures, count) = (&runs, &failures, &count);
            let wd = d.join(format!("w{w}"));
            std::fs::create_dir_all(&wd).unwrap();
            inputs(&wd);
            s.spawn(move || loop {
                let Some(args) = runs.lock().unwrap().next() else {
                    break;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Err(e) = run(&wd, &args) {
                    failures.lock().unwrap().push(e);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    let n = count.into_inner();
    assert!(n > 300, "{n} runs");
    assert!(
        failures.is_empty(),
        "{} of {n} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let _ = std::fs::remove_dir_all(&d);
}
