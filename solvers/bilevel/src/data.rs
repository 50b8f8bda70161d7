//! Data for the bilevel problems: grayscale image sets (the shipped Kodak images), noise,
//! PSNR, and the handwritten-digits CSV.

use hyperprox_core::error::{Error, Result};
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::Path;

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Loads the first `count` PNG images of `dir` (sorted by file name; `count = 0` means all),
/// as grayscale in `[0, 1]`, resized to `size × size` (triangle filter) when they differ.
/// `Err` for a missing folder, no PNG files, fewer than `count` images, or `size < 8`.
pub fn load_images(dir: &Path, count: usize, size: usize) -> Result<Vec<Array2<f64>>> {
    if size < 8 {
        return Err(Error::param("size", size, "images must be at least 8×8"));
    }
    let rd = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, format!("{e}; pass --data DIR with PNG images")))?;
    let mut files: Vec<_> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(io_err(dir, "no .png files in this folder"));
    }
    let count = if count == 0 { files.len() } else { count };
    if files.len() < count {
        return Err(Error::param(
            "images",
            count,
            format!(
                "the folder {} holds only {} PNG images",
                dir.display(),
                files.len()
            ),
        ));
    }
    files[..count]
        .iter()
        .map(|f| {
            let img = image::open(f).map_err(|e| io_err(f, e))?.to_luma8();
            let img = if img.width() as usize != size || img.height() as usize != size {
                image::imageops::resize(
                    &img,
                    size as u32,
                    size as u32,
                    image::imageops::FilterType::Triangle,
                )
            } else {
                img
            };
            Ok(Array2::from_shape_fn((size, size), |(i, j)| {
                img.get_pixel(j as u32, i as u32)[0] as f64 / 255.0
            }))
        })
        .collect()
}

/// Checks a clean/noisy image set: as many noisy as clean images (at least one), all of one
/// size with both sides `≥ min_side`, all finite. Returns `(height, width)`.
pub(crate) fn check_image_pairs(
    context: &str,
    clean: &[Array2<f64>],
    noisy: &[Array2<f64>],
    min_side: usize,
) -> Result<(usize, usize)> {
    if clean.is_empty() || clean.len() != noisy.len() {
        return Err(Error::param(
            "images",
            format!("{} clean, {} noisy", clean.len(), noisy.len()),
            "pass at least one image and as many noisy as clean ones",
        ));
    }
    let (h, w) = clean[0].dim();
    if h < min_side || w < min_side {
        return Err(Error::param(
            "image size",
            format!("{h}×{w}"),
            format!("{context} needs images of at least {min_side}×{min_side}"),
        ));
    }
    for (i, im) in clean.iter().chain(noisy.iter()).enumerate() {
        if im.dim() != (h, w) {
            return Err(Error::shape(
                context,
                format!("image {i}"),
                format!("{h}×{w}"),
                format!("{:?}", im.dim()),
            ));
        }
        if let Some(v) = im.iter().find(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: format!("image {i}"),
                index: 0,
                value: v.to_string(),
            });
        }
    }
    Ok((h, w))
}

/// The elements of a contiguous array as a slice; `Err` (never a panic) otherwise. Pass
/// `v.as_standard_layout()` to accept strided views (copied once).
pub(crate) fn slice<S: ndarray::Data<Elem = f64>>(
    a: &ndarray::ArrayBase<S, ndarray::Ix1>,
) -> Result<&[f64]> {
    a.as_slice().ok_or_else(|| {
        hyperprox_core::error::Error::param(
            "array layout",
            "strided",
            "pass a contiguous array (e.g. `.as_standard_layout()`)",
        )
    })
}

/// Runs `f` on `out` as a slice: directly when `out` is contiguous, else on a temporary that
/// is copied back (strided outputs work, at the cost of one copy).
pub(crate) fn fill<R>(
    mut out: ndarray::ArrayViewMut1<'_, f64>,
    f: impl FnOnce(&mut [f64]) -> R,
) -> R {
    if let Some(s) = out.as_slice_mut() {
        return f(s);
    }
    let mut tmp = vec![0.0; out.len()];
    let r = f(&mut tmp);
    out.assign(&ndarray::ArrayView1::from(&tmp[..]));
    r
}

/// The image-denoising upper level `g(x) = (1/N)·½‖x − x_true‖²` (N images).
pub(crate) fn upper_mse_value(
    x: ndarray::ArrayView1<'_, f64>,
    x_true: &Array1<f64>,
    n_img: usize,
) -> f64 {
    let d = &x - x_true;
    0.5 * d.dot(&d) / n_img as f64
}

/// `out ← ∇g(x) = (x − x_true)/N`.
pub(crate) fn upper_mse_grad_into(
    mut out: ndarray::ArrayViewMut1<'_, f64>,
    x: ndarray::ArrayView1<'_, f64>,
    x_true: &Array1<f64>,
    n_img: usize,
) {
    let inv_n = 1.0 / n_img as f64;
    ndarray::Zip::from(&mut out)
        .and(&x)
        .and(x_true)
        .for_each(|o, &a, &b| *o = (a - b) * inv_n);
}

/// `images + sigma·N(0, I)`, seeded (values are not clipped).
pub fn add_noise(images: &[Array2<f64>], sigma: f64, seed: u64) -> Vec<Array2<f64>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    images
        .iter()
        .map(|im| {
            im.mapv(|v| {
                let e: f64 = StandardNormal.sample(&mut rng);
                v + sigma * e
            })
        })
        .collect()
}

/// PSNR in dB for images with peak value 1: `10·log₁₀(1/MSE)`.
pub fn psnr(a: &Array2<f64>, reference: &Array2<f64>) -> f64 {
    let mse = (a - reference).mapv(|v| v * v).mean().unwrap_or(0.0);
    10.0 * (1.0 / mse.max(1e-300)).log10()
}

/// Flattens equally sized images into one vector (image after image, row-major).
pub fn stack(images: &[Array2<f64>]) -> Array1<f64> {
    Array1::from_iter(images.iter().flat_map(|im| im.iter().cloned()))
}

/// Splits a stacked vector back into images of `h × w` (a last partial image is dropped).
pub fn unstack(x: &Array1<f64>, h: usize, w: usize) -> Vec<Array2<f64>> {
    let n = h * w;
    if n == 0 {
        return Vec::new();
    }
    (0..x.len() / n)
        .map(|i| {
            x.slice(ndarray::s![i * n..(i + 1) * n])
                .to_owned()
                .into_shape_with_order((h, w))
        })
        .filter_map(|r| r.ok())
        .collect()
}

/// Loads a digits CSV (`label,p0..p63`, grey levels 0..16): features in `[0, 1]` (`n × 64`)
/// and labels. See [`hyperprox_core::io::read_digits_csv`].
pub fn load_digits(path: &Path) -> Result<(Array2<f64>, Vec<usize>)> {
    hyperprox_core::io::read_digits_csv(path)
}
