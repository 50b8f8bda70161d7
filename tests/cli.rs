//! End-to-end checks of the `hyperprox` command as a user runs it.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hyperprox"))
}

#[test]
fn help_and_version() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Usage") && text.contains("opnorm"), "{text}");
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hyperprox "));
}

#[test]
fn opnorm_reports_json_close_to_the_exact_norm() {
    let out = bin()
        .args(["opnorm", "--height", "32", "--width", "32"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let est: f64 = text
        .split("\"opnorm_estimate\": ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no estimate in {text}"));
    // ‖∇‖ on a 32 × 32 grid is 2√2·sin(31π/64).
    let exact = 2.0 * 2f64.sqrt() * (31.0 * std::f64::consts::PI / 64.0).sin();
    assert!(
        est <= exact + 1e-9 && est > exact - 1e-4,
        "{est} vs {exact}"
    );
}

#[test]
fn bad_input_is_a_one_line_error() {
    let out = bin().args(["opnorm", "--height", "0"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.trim().lines().count() == 1,
        "{err}"
    );
    let out = bin().args(["opnorm", "--height", "abc"]).output().unwrap();
    assert!(!out.status.success());
}
