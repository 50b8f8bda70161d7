//! Fuzzed readers: random and mutated bytes fed to the `.npy` and PNG readers return `Ok` (with
//! finite data of a consistent shape) or `Err`, never panic or abort. The number of cases per
//! property is `HYPERPROX_FUZZ_CASES` (default 500; the full run is 10 000).

use hyperprox_core::io::{
    read_image, read_npy, read_npy_1d, read_npy_2d, write_npy, write_png_gray,
};
use ndarray::{Array1, Array2};
use proptest::prelude::*;
use std::path::PathBuf;

fn cases() -> u32 {
    hyperprox_core::testing::fuzz_cases()
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("hp-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A valid file of each kind, as bytes.
fn valid(ext: &str) -> Vec<u8> {
    let p = dir().join(format!(
        "valid-{}.{ext}",
        std::thread::current()
            .name()
            .unwrap_or("t")
            .replace(':', "_")
    ));
    let img = Array2::from_shape_fn((5, 4), |(i, j)| (i * 4 + j) as f64 / 20.0);
    match ext {
        "npy" => write_npy(&p, &img).unwrap(),
        _ => write_png_gray(&p, &img).unwrap(),
    }
    std::fs::read(p).unwrap()
}

/// Applies edits (position, byte, kind) to `bytes`: overwrite, insert, delete, or truncate.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(pos, b, kind) in edits {
        if bytes.is_empty() {
            bytes.push(b);
            continue;
        }
        let i = pos % bytes.len();
        match kind % 4 {
            0 => bytes[i] = b,
            1 => bytes.insert(i, b),
            2 => {
                bytes.remove(i);
            }
            _ => bytes.truncate(i),
        }
    }
    bytes
}

/// Reads `bytes` as a file named `name` with every reader; none may panic, and what they
/// accept is finite and of the shape they promise.
fn read_all(name: &str, bytes: &[u8]) {
    let p = dir().join(name);
    std::fs::write(&p, bytes).unwrap();
    if let Ok(a) = read_npy(&p) {
        assert!(a.iter().all(|v| v.is_finite()));
    }
    if let Ok(a) = read_npy_1d(&p) {
        assert!(a.iter().all(|v| v.is_finite()));
    }
    if let Ok(a) = read_npy_2d(&p) {
        assert_eq!(a.len(), a.nrows() * a.ncols());
    }
    if let Ok(a) = read_image(&p) {
        assert!(a
            .iter()
            .all(|v| v.is_finite() && (0.0..=1.0).contains(v) || name.ends_with(".npy")));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn mutated_npy_files_are_read_or_refused(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)) {
        read_all("m.npy", &mutate(valid("npy"), &edits));
    }

    #[test]
    fn mutated_png_files_are_read_or_refused(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)) {
        read_all("m.png", &mutate(valid("png"), &edits));
    }

    #[test]
    fn random_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        read_all("r.npy", &bytes);
        read_all("r.png", &bytes);
    }

    /// Headers that promise more data than the file holds (or absurd shapes) must not make
    /// the reader allocate what they promise.
    #[test]
    fn npy_headers_with_any_shape_are_refused_without_allocating(
        dims in prop::collection::vec(prop_oneof![0u64..5, any::<u64>()], 0..4),
        descr in prop::sample::select(vec!["<f8", "<f4", ">f8", "<i8", "|u1", "<c16"]),
        order in any::<bool>(),
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let shape = dims.iter().map(|d| format!("{d}, ")).collect::<String>();
        let dict = format!(
            "'descr': '{descr}', 'fortran_order': {}, 'shape': ({shape}), ",
            if order { "True" } else { "False" }
        );
        read_all("h.npy", &npy_with_header(&dict, &payload));
    }
}

/// A header built from `dict` (the text between the braces) followed by `payload`.
fn npy_with_header(dict: &str, payload: &[u8]) -> Vec<u8> {
    let mut header = format!("{{{dict}}}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn hostile_headers_are_refused() {
    // A repeated key (the first one honest), keys hidden in other keys, a huge shape.
    let eight = 1.5f64.to_le_bytes();
    for dict in [
        "'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'shape': (1000000000000000000,), ",
        "'descr': '<f8', 'descr': '<c16', 'fortran_order': False, 'shape': (1,), ",
        "'xshape': (1,), 'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000000000,), ",
        "'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), ",
        // Empty, yet ndarray cannot represent it (the non-zero dims overflow isize).
        "'descr': '<f8', 'fortran_order': False, 'shape': (0, 9223372036854775808), ",
    ] {
        let p = dir().join("hostile.npy");
        std::fs::write(&p, npy_with_header(dict, &eight)).unwrap();
        assert!(read_npy(&p).is_err(), "{dict}");
    }
    // The honest one is read.
    let p = dir().join("honest.npy");
    let dict = "'descr': '<f8', 'fortran_order': False, 'shape': (1,), ";
    std::fs::write(&p, npy_with_header(dict, &eight)).unwrap();
    assert_eq!(read_npy_1d(&p).unwrap().to_vec(), vec![1.5]);
}

#[test]
fn the_valid_files_are_read_back() {
    let p = dir().join("ok.npy");
    std::fs::write(&p, valid("npy")).unwrap();
    assert_eq!(read_npy_2d(&p).unwrap().dim(), (5, 4));
    let p = dir().join("ok.png");
    std::fs::write(&p, valid("png")).unwrap();
    assert_eq!(read_image(&p).unwrap().dim(), (5, 4));
    let v = Array1::from_vec(vec![1.0, 2.0]);
    write_npy(dir().join("v.npy"), &v).unwrap();
    assert_eq!(read_npy_1d(dir().join("v.npy")).unwrap(), v);
}
