//! Reading and writing arrays (`.npy`, f64 or f32) and grayscale images (PNG, values in [0, 1]).
//!
//! Every function returns an [`Error`] naming the file and what to fix; nothing panics on bad
//! files.

use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayD};
use std::path::Path;

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

fn check_finite_nd(path: &Path, a: &ArrayD<f64>) -> Result<()> {
    if let Some((i, v)) = a.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: format!("array in {}", path.display()),
            index: i,
            value: format!("{v}"),
        });
    }
    Ok(())
}

/// Reads a `.npy` file of `f64` (or `f32`, converted) values of any dimension; rejects NaN/Inf.
pub fn read_npy(path: impl AsRef<Path>) -> Result<ArrayD<f64>> {
    let path = path.as_ref();
    if !path.exists() {
        return Err(Error::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    let a: ArrayD<f64> = match ndarray_npy::read_npy::<_, ArrayD<f64>>(path) {
        Ok(a) => a,
        Err(e64) => match ndarray_npy::read_npy::<_, ArrayD<f32>>(path) {
            Ok(a) => a.mapv(f64::from),
            Err(_) => {
                return Err(io_err(
                    path,
                    format!("not a float64/float32 .npy array ({e64})"),
                ))
            }
        },
    };
    check_finite_nd(path, &a)?;
    Ok(a)
}

/// Reads a 1-D `.npy` array (a column or row vector of shape `(n, 1)` / `(1, n)` is accepted).
pub fn read_npy_1d(path: impl AsRef<Path>) -> Result<Array1<f64>> {
    let path = path.as_ref();
    let a = read_npy(path)?;
    let shape = a.shape().to_vec();
    let ok = shape.len() == 1 || (shape.len() == 2 && (shape[0] == 1 || shape[1] == 1));
    if !ok {
        return Err(Error::shape(
            path.display().to_string(),
            "a 1-D array",
            "shape (n,)",
            format!("shape {shape:?}"),
        ));
    }
    Ok(Array1::from_iter(a.iter().copied()))
}

/// Reads a 2-D `.npy` array.
pub fn read_npy_2d(path: impl AsRef<Path>) -> Result<Array2<f64>> {
    let path = path.as_ref();
    let a = read_npy(path)?;
    let shape = a.shape().to_vec();
    a.into_dimensionality::<ndarray::Ix2>().map_err(|_| {
        Error::shape(
            path.display().to_string(),
            "a 2-D array",
            "shape (m, n)",
            format!("shape {shape:?}"),
        )
    })
}

/// Writes an `f64` array as `.npy`.
pub fn write_npy<D: ndarray::Dimension>(
    path: impl AsRef<Path>,
    a: &ndarray::Array<f64, D>,
) -> Result<()> {
    let path = path.as_ref();
    ndarray_npy::write_npy(path, a).map_err(|e| io_err(path, e))
}

/// Reads a PNG (any color type, converted to 8-bit luma) as an `h × w` array in `[0, 1]`.
pub fn read_png_gray(path: impl AsRef<Path>) -> Result<Array2<f64>> {
    let path = path.as_ref();
    let img = image::open(path).map_err(|e| io_err(path, e))?.to_luma8();
    let (w, h) = img.dimensions();
    Ok(Array2::from_shape_fn((h as usize, w as usize), |(i, j)| {
        f64::from(img.get_pixel(j as u32, i as u32)[0]) / 255.0
    }))
}

/// Writes an `h × w` array as an 8-bit grayscale PNG (values clipped to `[0, 1]`).
pub fn write_png_gray(path: impl AsRef<Path>, a: &Array2<f64>) -> Result<()> {
    let path = path.as_ref();
    let (h, w) = a.dim();
    let img = image::GrayImage::from_fn(w as u32, h as u32, |j, i| {
        let v = a[(i as usize, j as usize)].clamp(0.0, 1.0);
        image::Luma([(v * 255.0).round() as u8])
    });
    img.save(path).map_err(|e| io_err(path, e))
}

/// Reads an image from `.npy` (2-D) or `.png` by extension.
pub fn read_image(path: impl AsRef<Path>) -> Result<Array2<f64>> {
    let path = path.as_ref();
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
    {
        Some(e) if e == "npy" => read_npy_2d(path),
        Some(e) if e == "png" => read_png_gray(path),
        _ => Err(io_err(
            path,
            "unknown image format: use a .npy (2-D float array) or .png file",
        )),
    }
}

/// Writes an image as `.npy` or `.png` by extension.
pub fn write_image(path: impl AsRef<Path>, a: &Array2<f64>) -> Result<()> {
    let path = path.as_ref();
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
    {
        Some(e) if e == "npy" => write_npy(path, a),
        Some(e) if e == "png" => write_png_gray(path, a),
        _ => Err(io_err(
            path,
            "unknown image format: use a .npy or .png output file",
        )),
    }
}

/// Reads the handwritten-digits CSV (header, then `label,p0..p63` per row, grey levels
/// 0..16): returns the features scaled to `[0, 1]` (`n × 64`) and the labels. `Err` for a
/// missing file, a malformed row or no data.
pub fn read_digits_csv(path: &Path) -> Result<(Array2<f64>, Vec<usize>)> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        io_err(
            path,
            format!("{e}; pass the digits CSV (data/digits/digits.csv)"),
        )
    })?;
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    let mut width = None;
    for (ln, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let vals: std::result::Result<Vec<f64>, _> =
            line.split(',').map(|s| s.trim().parse::<f64>()).collect();
        let vals = vals.map_err(|e| io_err(path, format!("line {}: {e}", ln + 1)))?;
        if vals.len() < 2 || width.is_some_and(|w| w != vals.len()) {
            return Err(io_err(
                path,
                format!("line {}: wrong number of columns", ln + 1),
            ));
        }
        width = Some(vals.len());
        if vals[0] < 0.0 || vals[0].fract() != 0.0 {
            return Err(io_err(
                path,
                format!("line {}: label must be a non-negative integer", ln + 1),
            ));
        }
        labels.push(vals[0] as usize);
        rows.extend(vals[1..].iter().map(|v| v / 16.0));
    }
    let w = width.ok_or_else(|| io_err(path, "no data rows"))? - 1;
    let n = labels.len();
    Ok((Array2::from_shape_vec((n, w), rows).expect("shape"), labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_and_png_round_trip_and_errors() {
        let dir = std::env::temp_dir().join(format!("hyperprox-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f64 / 11.0);
        write_npy(dir.join("a.npy"), &a).unwrap();
        assert_eq!(read_npy_2d(dir.join("a.npy")).unwrap(), a);
        assert!(read_npy_1d(dir.join("a.npy")).is_err());
        write_png_gray(dir.join("a.png"), &a).unwrap();
        let b = read_image(dir.join("a.png")).unwrap();
        assert!((&b - &a).iter().all(|e| e.abs() <= 0.5 / 255.0 + 1e-12));
        let e = read_npy(dir.join("missing.npy")).unwrap_err();
        assert!(e.to_string().contains("missing.npy"));
        let mut nan = a.clone();
        nan[(1, 1)] = f64::NAN;
        write_npy(dir.join("nan.npy"), &nan).unwrap();
        assert!(matches!(
            read_npy_2d(dir.join("nan.npy")),
            Err(Error::NonFinite { index: 5, .. })
        ));
        assert!(read_image(dir.join("a.txt")).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
