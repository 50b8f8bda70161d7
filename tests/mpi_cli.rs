//! The command line under `mpirun -np 2` (feature `mpi`; `.ci/run` runs these with MPICH):
//! the same results as one process, one writer, every rank stopping on a failure, and
//! checkpoints resuming on another number of ranks. Without the feature, only the check that
//! a binary without MPI refuses to run under a launcher.

#[cfg(feature = "mpi")]
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
#[cfg(feature = "mpi")]
use std::process::Output;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hyperprox")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hyperprox-mpi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[cfg(not(feature = "mpi"))]
#[test]
fn a_binary_without_mpi_refuses_to_run_under_a_launcher() {
    // What mpirun (MPICH's Hydra) sets for each of 2 processes.
    let out = Command::new(bin())
        .args(["tune", "tv", "--images", "2", "--size", "16", "--out"])
        .arg(tmp("nompi"))
        .env("PMI_SIZE", "2")
        .env("PMI_RANK", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("built without MPI") && err.contains("--features mpi"),
        "{err}"
    );
    assert!(!tmp("nompi").exists());
}

#[cfg(feature = "mpi")]
fn mpirun(np: usize, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("mpirun");
    c.arg("-np").arg(np.to_string()).arg(bin()).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output()
        .expect("mpirun (install MPICH: apt-get install mpich libmpich-dev)")
}

#[cfg(feature = "mpi")]
fn serial(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

#[cfg(feature = "mpi")]
fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[cfg(feature = "mpi")]
fn floats(v: &serde_json::Value) -> Vec<f64> {
    match v {
        serde_json::Value::Array(a) => a.iter().flat_map(floats).collect(),
        serde_json::Value::Number(n) => vec![n.as_f64().unwrap()],
        _ => vec![],
    }
}

#[cfg(feature = "mpi")]
fn rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let n: f64 = b.iter().map(|y| y * y).sum();
    (d / n.max(1e-300)).sqrt()
}

#[cfg(feature = "mpi")]
fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[cfg(feature = "mpi")]
const TV: [&str; 8] = [
    "tune",
    "tv",
    "--images",
    "4",
    "--size",
    "32",
    "--max-iters",
    "10",
];

#[cfg(feature = "mpi")]
#[test]
fn tune_tv_on_two_ranks_learns_the_one_process_theta_and_only_rank_0_writes() {
    let (d1, d2) = (tmp("tv1"), tmp("tv2"));
    let a = |d: &Path| {
        let mut v: Vec<String> = TV.iter().map(|s| s.to_string()).collect();
        v.extend(["--out".into(), d.display().to_string()]);
        v
    };
    let (a1, a2) = (a(&d1), a(&d2));
    let o1 = serial(&a1.iter().map(String::as_str).collect::<Vec<_>>());
    ok(&o1);
    let o2 = mpirun(2, &a2.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    ok(&o2);
    // One report line: rank 1 prints nothing on stdout.
    let lines = String::from_utf8_lossy(&o2.stdout);
    assert_eq!(lines.lines().count(), 1, "{lines}");
    let (r1, r2) = (json(&d1.join("report.json")), json(&d2.join("report.json")));
    let (t1, t2) = (floats(&r1["theta"]), floats(&r2["theta"]));
    assert!(rel(&t2, &t1) <= 1e-10, "{t1:?} vs {t2:?}");
    assert_eq!(r2["iterations_outer"], 10);
    assert_eq!(r2["certified"], true);
    // Both ranks report their communication.
    let err = String::from_utf8_lossy(&o2.stderr);
    assert!(
        err.contains("rank 0 of 2:") && err.contains("rank 1 of 2:"),
        "{err}"
    );
    for d in [d1, d2] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[cfg(feature = "mpi")]
#[test]
fn unfold_train_quick_on_two_ranks_gives_the_one_process_parameters() {
    let (d1, d2) = (tmp("u1"), tmp("u2"));
    let args = |d: &Path| {
        vec![
            "unfold".to_string(),
            "train".into(),
            "--model".into(),
            "lista-cp".into(),
            "--quick".into(),
            "--out".into(),
            d.display().to_string(),
        ]
    };
    let (a1, a2) = (args(&d1), args(&d2));
    ok(&serial(&a1.iter().map(String::as_str).collect::<Vec<_>>()));
    ok(&mpirun(
        2,
        &a2.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    ));
    let (p1, p2) = (
        floats(&json(&d1.join("model.json"))["params"]),
        floats(&json(&d2.join("model.json"))["params"]),
    );
    assert!(p1.len() > 1000);
    assert!(rel(&p2, &p1) <= 1e-10, "{}", rel(&p2, &p1));
    for d in [d1, d2] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[cfg(feature = "mpi")]
#[test]
fn a_rank_failing_mid_run_stops_every_rank_and_the_checkpoint_resumes_on_one_or_three() {
    let (d, full) = (tmp("fail"), tmp("full"));
    let with = |dir: &Path, extra: &[&str]| {
        let mut v: Vec<String> = TV.iter().map(|s| s.to_string()).collect();
        v.extend(["--out".into(), dir.display().to_string()]);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let a = with(&d, &[]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    // Rank 1 fails at outer iteration 5.
    let o = mpirun(2, &a, &[("HYPERPROX_TEST_FAIL", "1:5")]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    for r in 0..2 {
        assert!(
            err.contains(&format!(
                "error (rank {r} of 2): rank 1 of 2 failed: invalid parameter HYPERPROX_TEST_FAIL"
            )),
            "{err}"
        );
    }
    // No report; the last checkpoint is whole (iteration 5 written by rank 0).
    assert!(!d.join("report.json").exists());
    let ck = json(&d.join("checkpoint.json"));
    assert_eq!(ck["state"]["iter"], 5);
    // Resumed on 3 ranks, and on one process: the uninterrupted run's θ.
    let f = with(&full, &[]);
    ok(&serial(&f.iter().map(String::as_str).collect::<Vec<_>>()));
    let t_full = floats(&json(&full.join("report.json"))["theta"]);
    // The options (the output folder among them) must be the same to resume: keep the
    // checkpoint, resume on 3 ranks, put it back and resume on one process.
    let r = with(&d, &["--resume"]);
    let r: Vec<&str> = r.iter().map(String::as_str).collect();
    let saved = std::fs::read(d.join("checkpoint.json")).unwrap();
    ok(&mpirun(3, &r, &[]));
    let t3 = floats(&json(&d.join("report.json"))["theta"]);
    assert!(rel(&t3, &t_full) <= 1e-10, "{t3:?} vs {t_full:?}");
    std::fs::remove_file(d.join("report.json")).unwrap();
    std::fs::write(d.join("checkpoint.json"), saved).unwrap();
    ok(&serial(&r));
    let t1 = floats(&json(&d.join("report.json"))["theta"]);
    assert!(rel(&t1, &t_full) <= 1e-10, "{t1:?} vs {t_full:?}");
    // Rank 0 cannot write its checkpoint (a folder is in the way): both ranks stop.
    let d2 = tmp("blocked");
    std::fs::create_dir_all(d2.join("checkpoint.json")).unwrap();
    let b = with(&d2, &[]);
    let o = mpirun(2, &b.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.matches("rank 0 of 2 failed: I/O error").count(),
        2,
        "{err}"
    );
    assert!(!d2.join("report.json").exists());
    for x in [d, d2, full] {
        let _ = std::fs::remove_dir_all(x);
    }
}

#[cfg(feature = "mpi")]
#[test]
fn commands_that_do_not_run_data_parallel_refuse_several_ranks() {
    let d = tmp("demo");
    let o = mpirun(2, &["demo", "--out", &d.display().to_string()], &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("does not run on several ranks"), "{err}");
    assert!(!d.exists());
}
