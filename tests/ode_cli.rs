//! End-to-end checks of `hyperprox ode`: fitting Lotka–Volterra to synthetic and to the shipped
//! lynx–hare data, solving Robertson, and clear errors on bad input.

use hyperprox::core::io::write_npy;
use hyperprox::node::ode::{LotkaVolterra, Method, OdeOptions, OdeSolve};
use ndarray::{Array1, Array2};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hyperprox-ode-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hyperprox"))
        .args(args)
        .output()
        .unwrap()
}

fn ok_json(args: &[&str], file: &Path) -> serde_json::Value {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

fn params(r: &serde_json::Value) -> Vec<f64> {
    r["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// Data from known parameters (1 % deterministic pseudo-noise), written as .npy: the CLI
/// recovers the parameters within 2 %.
#[test]
fn fit_recovers_known_parameters_from_files() {
    let dir = tmpdir("synthetic");
    let truth = [1.5, 1.0, 3.0, 1.0];
    let t: Vec<f64> = (0..=40).map(|i| i as f64 * 0.25).collect();
    let ode = OdeSolve::new(
        Arc::new(LotkaVolterra),
        OdeOptions {
            method: Method::Tsit45,
            rtol: 1e-10,
            atol: 1e-10,
            ..Default::default()
        },
    )
    .unwrap();
    let y = ode.solve(&truth, &[1.0, 1.0], &t).unwrap().states;
    let noisy = Array2::from_shape_fn(y.dim(), |(i, j)| {
        y[[i, j]] * (1.0 + 0.01 * ((i * 7 + j * 3) as f64).sin())
    });
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    write_npy(p("t.npy"), &Array1::from(t)).unwrap();
    write_npy(p("y.npy"), &noisy).unwrap();
    let out = dir.join("fit");
    let r = ok_json(
        &[
            "ode",
            "fit",
            "lotka-volterra",
            "--times",
            &p("t.npy"),
            "--observations",
            &p("y.npy"),
            "--u0",
            "1,1",
            "--init",
            "1.2,0.8,2.4,0.75",
            "--out",
            out.to_str().unwrap(),
        ],
        &out.join("report.json"),
    );
    for (a, b) in params(&r).iter().zip(truth) {
        assert!((a - b).abs() < 0.02 * b, "{:?}", params(&r));
    }
    assert!(r["rhs_evals"].as_u64().unwrap() > 0 && r["iterations"].as_u64().unwrap() > 0);
    assert!(out.join("figure.png").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The shipped Hudson's Bay lynx–hare pelts (1900–1920), u₀ = the 1900 counts: the fit from
/// a rough guess cuts the loss 40-fold to a stationary point near the published estimates
/// (Carpenter's Stan case study, which also fits u₀: a ≈ 0.55, b ≈ 0.028, c ≈ 0.80,
/// d ≈ 0.024).
#[test]
fn fit_on_the_lynx_hare_data() {
    let dir = tmpdir("lynx");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/lynx-hare");
    let out = dir.join("fit");
    let r = ok_json(
        &[
            "ode",
            "fit",
            "lotka-volterra",
            "--times",
            data.join("t.npy").to_str().unwrap(),
            "--observations",
            data.join("y.npy").to_str().unwrap(),
            "--u0",
            "30,4",
            "--init",
            "0.5,0.02,1,0.02",
            "--out",
            out.to_str().unwrap(),
        ],
        &out.join("report.json"),
    );
    let (l0, l) = (
        r["initial_loss"].as_f64().unwrap(),
        r["loss"].as_f64().unwrap(),
    );
    assert!(l < l0 / 40.0, "{l0} -> {l}");
    assert!(r["grad_norm"].as_f64().unwrap() < 1e-4 * l, "{r}");
    let p = params(&r);
    let published = [0.55, 0.028, 0.80, 0.024];
    for (a, b) in p.iter().zip(published) {
        assert!((a - b).abs() < 0.15 * b, "{p:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn robertson_from_the_command_line() {
    let dir = tmpdir("rob");
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    write_npy(p("t.npy"), &Array1::from(vec![0.0, 0.4, 4.0, 40.0, 4e5])).unwrap();
    let r = ok_json(
        &[
            "ode",
            "solve",
            "robertson",
            "--rtol",
            "1e-6",
            "--atol",
            "1e-10",
            "--times",
            &p("t.npy"),
            "--out",
            &p("y.npy"),
            "--report",
            &p("r.json"),
        ],
        &dir.join("r.json"),
    );
    let y = hyperprox::core::io::read_npy_2d(p("y.npy")).unwrap();
    assert_eq!(y.dim(), (5, 3));
    let want = [0.715_827_1, 9.185_535e-6, 0.284_163_7];
    for j in 0..3 {
        assert!(
            (y[[3, j]] - want[j]).abs() < 1e-4 * want[j],
            "{:?}",
            y.row(3)
        );
    }
    assert!(r["steps"].as_u64().unwrap() > 10 && r["rhs_evals"].as_u64().unwrap() > 10);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_ode_input_fails_with_a_message() {
    let dir = tmpdir("bad");
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    write_npy(p("t.npy"), &Array1::from(vec![0.0, 1.0, 2.0])).unwrap();
    write_npy(p("t1.npy"), &Array1::from(vec![1.0, 2.0])).unwrap();
    write_npy(p("y.npy"), &Array2::<f64>::ones((2, 2))).unwrap();
    write_npy(p("y3.npy"), &Array2::<f64>::ones((3, 2))).unwrap();
    let out = p("o");
    let fit = |extra: &[&str]| {
        let mut a = vec!["ode", "fit", "lotka-volterra", "--out", &out];
        a.extend(extra);
        run(&a)
    };
    let cases: Vec<(std::process::Output, &str)> = vec![
        (
            fit(&[
                "--times",
                &p("t.npy"),
                "--observations",
                &p("y.npy"),
                "--u0",
                "1,1",
                "--init",
                "1,1,1,1",
            ]),
            "one observation row per time",
        ),
        (
            fit(&[
                "--times",
                &p("t.npy"),
                "--observations",
                &p("y3.npy"),
                "--u0",
                "1",
                "--init",
                "1,1,1,1",
            ]),
            "give 2 finite numbers",
        ),
        (
            fit(&[
                "--times",
                &p("t.npy"),
                "--observations",
                &p("y3.npy"),
                "--u0",
                "1,1",
                "--init",
                "1,-1,1,1",
            ]),
            "must be positive",
        ),
        (
            fit(&[
                "--times",
                &p("nope.npy"),
                "--observations",
                &p("y3.npy"),
                "--u0",
                "1,1",
                "--init",
                "1,1,1,1",
            ]),
            "nope.npy",
        ),
        (
            fit(&[
                "--times",
                &p("t.npy"),
                "--times",
                &p("t.npy"),
                "--observations",
                &p("y3.npy"),
                "--u0",
                "1,1",
                "--init",
                "1,1,1,1",
            ]),
            "one --observations and one --u0 per --times",
        ),
        (
            run(&[
                "ode",
                "solve",
                "robertson",
                "--times",
                &p("t1.npy"),
                "--out",
                &p("y.npy"),
            ]),
            "the first time must be 0",
        ),
        (
            run(&[
                "ode",
                "solve",
                "robertson",
                "--times",
                &p("t.npy"),
                "--out",
                &p("y.txt"),
            ]),
            "must end in .npy",
        ),
        (
            run(&[
                "ode",
                "solve",
                "robertson",
                "--times",
                &p("t.npy"),
                "--rtol",
                "0",
                "--out",
                &p("r.npy"),
            ]),
            "tolerances must be positive",
        ),
    ];
    for (o, needle) in cases {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{needle}: succeeded");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ode solve lotka-volterra` writes what the library computes, and its report counts the work.
#[test]
fn lotka_volterra_solve_from_the_command_line() {
    let dir = tmpdir("lvsolve");
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let t: Vec<f64> = (0..=20).map(|i| i as f64 * 0.5).collect();
    write_npy(p("t.npy"), &Array1::from(t.clone())).unwrap();
    let r = ok_json(
        &[
            "ode",
            "solve",
            "lotka-volterra",
            "--params",
            "1.5,1,3,1",
            "--u0",
            "1,1",
            "--rtol",
            "1e-8",
            "--atol",
            "1e-8",
            "--times",
            &p("t.npy"),
            "--out",
            &p("y.npy"),
            "--report",
            &p("r.json"),
        ],
        &dir.join("r.json"),
    );
    let y = hyperprox::core::io::read_npy_2d(p("y.npy")).unwrap();
    let o = OdeOptions {
        method: Method::Tsit45,
        rtol: 1e-8,
        atol: 1e-8,
        ..Default::default()
    };
    let want = OdeSolve::new(Arc::new(LotkaVolterra), o)
        .unwrap()
        .solve(&[1.5, 1.0, 3.0, 1.0], &[1.0, 1.0], &t)
        .unwrap();
    assert_eq!(y, want.states);
    assert_eq!(
        r["rhs_evals"].as_u64().unwrap() as usize,
        want.stats.rhs_evals
    );
    let _ = std::fs::remove_dir_all(&dir);
}
