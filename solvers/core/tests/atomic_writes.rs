//! Atomic outputs: a writer killed at any instant leaves the old file or the new one, never a
//! torn one (`io::write_atomic`, used by every writer of the library and the CLI).

use hyperprox_core::io::{read_npy, write_atomic, write_npy};
use ndarray::Array1;
use std::process::Command;
use std::time::Duration;

/// Set in the child process: the path it rewrites until it is killed.
const CHILD: &str = "HYPERPROX_ATOMIC_WRITER_PATH";
/// 2¹⁹ values (4 MiB): a write takes long enough to be killed in the middle of it.
const LEN: usize = 1 << 19;

/// The child's job (a no-op in a normal test run): rewrite the file with all-1 and all-2
/// arrays, alternately, until killed.
#[test]
fn writer_child() {
    let Ok(path) = std::env::var(CHILD) else {
        return;
    };
    let arrays = [Array1::from_elem(LEN, 1.0), Array1::from_elem(LEN, 2.0)];
    for k in 0.. {
        write_npy(&path, &arrays[k % 2]).unwrap();
    }
}

/// `Some(v)` if the file holds a whole array of `LEN` copies of `v`.
fn whole(path: &std::path::Path) -> Option<f64> {
    let x = read_npy(path).ok()?;
    let v = *x.iter().next()?;
    (x.len() == LEN && x.iter().all(|&e| e == v)).then_some(v)
}

#[test]
fn a_writer_killed_at_any_instant_leaves_a_whole_file() {
    let dir = std::env::temp_dir().join(format!("hp-atomic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("x.npy");
    write_npy(&path, &Array1::from_elem(LEN, 0.0)).unwrap();
    // The check can fail: a file cut in the middle (what a plain `File::create` + write leaves
    // when killed) is not whole.
    let bytes = std::fs::read(&path).unwrap();
    let torn = dir.join("torn.npy");
    std::fs::write(&torn, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(whole(&torn), None);
    assert_eq!(whole(&path), Some(0.0));

    let exe = std::env::current_exe().unwrap();
    let mut seen = Vec::new();
    for round in 0..12u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "writer_child", "--test-threads=1", "--nocapture"])
            .env(CHILD, &path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill times spread over 30..300 ms (the writes take a few ms each).
        std::thread::sleep(Duration::from_millis(30 + (round * 97) % 270));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let v = whole(&path);
        assert!(
            matches!(v, Some(x) if x == 0.0 || x == 1.0 || x == 2.0),
            "round {round}: the file is torn ({v:?})"
        );
        seen.push(v.unwrap());
    }
    // The children did write (the kill did not always land before the first write).
    assert!(seen.iter().any(|&v| v != 0.0), "{seen:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn atomic_writes_replace_the_file_and_report_a_missing_folder() {
    let dir = std::env::temp_dir().join(format!("hp-atomic-b-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("r.json");
    write_atomic(&p, b"old").unwrap();
    write_atomic(&p, b"new").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"new");
    // No temporary file is left behind after a successful write.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("r.json")]);
    let e = write_atomic(dir.join("no/such/folder/r.json"), b"x").unwrap_err();
    assert!(e.to_string().contains("cannot write"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
