//! Reading and writing arrays (`.npy`, f64 or f32) and grayscale images (PNG, values in [0, 1]),
//! image sets, the shipped data, and the image utilities every family uses (PSNR, seeded
//! Gaussian noise, stacking images into one vector).
//!
//! Every function returns an [`Error`] naming the file and what to fix; nothing panics on bad
//! files.

use crate::error::{Error, Result};
use ndarray::{Array, Array1, Array2, ArrayBase, ArrayD, Data, Dimension};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::{Path, PathBuf};

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

fn check_finite_nd(path: &Path, a: &ArrayD<f64>) -> Result<()> {
    if let Some((i, v)) = crate::linalg::first_non_finite(a) {
        return Err(Error::NonFinite {
            what: format!("array in {}", path.display()),
            index: i,
            value: format!("{v}"),
        });
    }
    Ok(())
}

/// Checks a `.npy` header against the file before any array is allocated: the magic string,
/// a version 1–3 header, a shape of non-negative integers and an element size, and that the
/// file holds exactly `Π shape × element size` bytes of data. A damaged or hostile header
/// (a shape of 10¹⁸ elements in a 100-byte file) is an error here, not an attempt to allocate
/// what it promises.
fn check_npy_header(path: &Path, bytes: &[u8]) -> Result<()> {
    let bad = |why: String| io_err(path, format!("not a valid .npy file: {why}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no .npy magic string (write it with numpy.save)".into()));
    }
    let (len, start): (usize, usize) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unknown format version {v}"))),
    };
    let header = bytes
        .get(start..start.saturating_add(len))
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("the header is cut short or not text".into()))?;
    // numpy writes exactly three keys, each once; anything else could make this check and the
    // parser read different shapes.
    let keys = ["'descr'", "'fortran_order'", "'shape'"];
    if header.matches("':").count() != 3 || keys.iter().any(|k| header.matches(k).count() != 1) {
        return Err(bad(
            "the header must have the keys 'descr', 'fortran_order' and 'shape', once each".into(),
        ));
    }
    let field = |key: &str| -> Option<&str> {
        let at = header.find(key)? + key.len();
        Some(header[at..].trim_start_matches([' ', ':']))
    };
    let descr = field("'descr'").ok_or_else(|| bad("no 'descr' in the header".into()))?;
    let item: usize = descr
        .trim_start_matches(['\'', '"'])
        .chars()
        .skip(2)
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .map_err(|_| bad("no element size in 'descr'".into()))?;
    let shape = field("'shape'")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no 'shape' tuple in the header".into()))?;
    // `count` = Π dims; `nonzero` = Π of the non-zero dims, which ndarray needs ≤ isize::MAX
    // even for an empty array.
    let (mut count, mut nonzero): (usize, usize) = (1, 1);
    for d in shape.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let d: usize = d
            .trim_end_matches('L')
            .parse()
            .map_err(|_| bad(format!("shape entry {d:?} is not a non-negative integer")))?;
        count = count.saturating_mul(d);
        nonzero = nonzero
            .checked_mul(d.max(1))
            .filter(|&p| p <= isize::MAX as usize)
            .ok_or_else(|| bad("the shape's size overflows".into()))?;
    }
    let need = count
        .checked_mul(item)
        .ok_or_else(|| bad("the shape's size overflows".into()))?;
    let have = bytes.len() - (start + len);
    if need != have {
        return Err(bad(format!(
            "the header promises {need} bytes of data, the file holds {have} (truncated or damaged)"
        )));
    }
    Ok(())
}

/// The values of a `.npy` file in the precision it was written in.
#[derive(Clone, Debug)]
pub enum NpyData {
    /// float64.
    F64(ArrayD<f64>),
    /// float32 (kept: the f32 solver paths read half the bytes).
    F32(ArrayD<f32>),
}

impl NpyData {
    /// The values as f64 (exact for f32).
    pub fn into_f64(self) -> ArrayD<f64> {
        match self {
            NpyData::F64(a) => a,
            NpyData::F32(a) => a.mapv(f64::from),
        }
    }
    /// The values as f32 (f64 rounded).
    pub fn into_f32(self) -> ArrayD<f32> {
        match self {
            NpyData::F64(a) => a.mapv(|v| v as f32),
            NpyData::F32(a) => a,
        }
    }
    /// Whether the file held float32.
    pub fn is_f32(&self) -> bool {
        matches!(self, NpyData::F32(_))
    }
}

/// Reads a `.npy` file of `f64` or `f32` values of any dimension without converting them;
/// rejects NaN/Inf and files whose header does not match their size.
pub fn read_npy_native(path: impl AsRef<Path>) -> Result<NpyData> {
    let path = path.as_ref();
    if !path.exists() {
        return Err(Error::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    check_npy_header(path, &bytes)?;
    use ndarray_npy::ReadNpyExt;
    let a = match ArrayD::<f64>::read_npy(&bytes[..]) {
        Ok(a) => NpyData::F64(a),
        Err(e64) => match ArrayD::<f32>::read_npy(&bytes[..]) {
            Ok(a) => NpyData::F32(a),
            Err(_) => {
                return Err(io_err(
                    path,
                    format!("not a float64/float32 .npy array ({e64})"),
                ))
            }
        },
    };
    let bad = match &a {
        NpyData::F64(a) => crate::linalg::first_non_finite(a).map(|(i, v)| (i, v.to_string())),
        NpyData::F32(a) => crate::linalg::first_non_finite(a).map(|(i, v)| (i, v.to_string())),
    };
    if let Some((index, value)) = bad {
        return Err(Error::NonFinite {
            what: format!("array in {}", path.display()),
            index,
            value,
        });
    }
    Ok(a)
}

/// Reads a `.npy` file of `f64` (or `f32`, converted) values of any dimension; rejects NaN/Inf
/// and files whose header does not match their size.
pub fn read_npy(path: impl AsRef<Path>) -> Result<ArrayD<f64>> {
    Ok(read_npy_native(path)?.into_f64())
}

/// Reads a 1-D `.npy` array (a column or row vector of shape `(n, 1)` / `(1, n)` is accepted).
pub fn read_npy_1d(path: impl AsRef<Path>) -> Result<Array1<f64>> {
    let path = path.as_ref();
    as_1d(path, read_npy(path)?)
}

/// Reads a 2-D `.npy` array.
pub fn read_npy_2d(path: impl AsRef<Path>) -> Result<Array2<f64>> {
    let path = path.as_ref();
    as_2d(path, read_npy(path)?)
}

/// The array read from `path` as a vector (shape `(n,)`, `(n, 1)` or `(1, n)`).
pub fn as_1d<T: Clone>(path: &Path, a: ArrayD<T>) -> Result<Array1<T>> {
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
    Ok(Array1::from_iter(a.iter().cloned()))
}

/// The array read from `path` as a matrix.
pub fn as_2d<T>(path: &Path, a: ArrayD<T>) -> Result<Array2<T>> {
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

/// Reads a design matrix: a 2-D `.npy` (dense) or a sparse matrix saved by
/// `scipy.sparse.save_npz` (`.npz`, CSR or CSC, compressed or not; indices int32 or int64,
/// values float64 or float32). An `.npz` written by `numpy.savez` with the arrays `data`,
/// `indices`, `indptr` and `shape` is read as CSR. Rejects NaN/Inf, malformed index arrays and
/// damaged archives with an error naming the file.
pub fn read_design(path: impl AsRef<Path>) -> Result<crate::solve::Design<f64>> {
    let path = path.as_ref();
    let is_npz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    if !is_npz {
        return Ok(crate::solve::Design::from(read_npy_2d(path)?));
    }
    if !path.exists() {
        return Err(Error::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
        io_err(
            path,
            format!("not a readable .npz archive ({e}); write it with scipy.sparse.save_npz"),
        )
    })?;
    let mut member = |name: &str| -> Result<Option<Vec<u8>>> {
        use std::io::Read;
        let mut f = match zip.by_name(&format!("{name}.npy")) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(io_err(path, format!("{name}.npy: {e}"))),
        };
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)
            .map_err(|e| io_err(path, format!("{name}.npy: {e}")))?;
        check_npy_header(path, &bytes)?;
        Ok(Some(bytes))
    };
    let need = |v: Option<Vec<u8>>, name: &str| {
        v.ok_or_else(|| {
            io_err(
                path,
                format!("no array `{name}`: a sparse .npz holds data, indices, indptr and shape (scipy.sparse.save_npz)"),
            )
        })
    };
    let data = need(member("data")?, "data")?;
    let indices = need(member("indices")?, "indices")?;
    let indptr = need(member("indptr")?, "indptr")?;
    let shape = need(member("shape")?, "shape")?;
    // `format` is a numpy byte string (`|S3`): its data are the last bytes of the member.
    let format = match member("format")? {
        None => "csr".to_string(),
        Some(b) => String::from_utf8_lossy(&b[b.len().saturating_sub(3)..]).into_owned(),
    };
    use ndarray_npy::ReadNpyExt;
    let ints = |bytes: &[u8], name: &str| -> Result<Vec<usize>> {
        let v: Vec<i64> = match Array1::<i64>::read_npy(bytes) {
            Ok(a) => a.to_vec(),
            Err(_) => match Array1::<i32>::read_npy(bytes) {
                Ok(a) => a.iter().map(|&v| i64::from(v)).collect(),
                Err(e) => {
                    return Err(io_err(
                        path,
                        format!("`{name}` is not a 1-D int32/int64 array ({e})"),
                    ))
                }
            },
        };
        v.iter()
            .map(|&k| usize::try_from(k))
            .collect::<std::result::Result<Vec<usize>, _>>()
            .map_err(|_| io_err(path, format!("`{name}` holds a negative index")))
    };
    let shape = ints(&shape, "shape")?;
    let [nrows, ncols] = shape[..] else {
        return Err(io_err(
            path,
            format!("`shape` has {} entries, not 2", shape.len()),
        ));
    };
    let values: Vec<f64> = match Array1::<f64>::read_npy(&data[..]) {
        Ok(a) => a.to_vec(),
        Err(e64) => match Array1::<f32>::read_npy(&data[..]) {
            Ok(a) => a.iter().map(|&v| f64::from(v)).collect(),
            Err(_) => {
                return Err(io_err(
                    path,
                    format!("`data` is not a 1-D float64/float32 array ({e64})"),
                ))
            }
        },
    };
    check_finite_nd(path, &Array1::from(values.clone()).into_dyn())?;
    let (indices, indptr) = (ints(&indices, "indices")?, ints(&indptr, "indptr")?);
    let what = |e: Error| io_err(path, format!("not a valid {format} matrix: {e}"));
    // CSC is kept as it is (the storage coordinate descent reads); CSR is converted once.
    match format.as_str() {
        "csr" => Ok(crate::solve::Design::from(
            crate::ops::CsrMatrix::from_csr_parts(nrows, ncols, indptr, indices, values)
                .map_err(what)?,
        )),
        "csc" => Ok(crate::solve::Design::from(
            crate::ops::CscMatrix::from_csc_parts(nrows, ncols, indptr, indices, values)
                .map_err(what)?,
        )),
        other => Err(io_err(
            path,
            format!("sparse format {other:?} is not supported: convert with .tocsr() or .tocsc() before save_npz"),
        )),
    }
}

/// Writes a sparse matrix as scipy's `save_npz` does (uncompressed; `format` b"csr", int64
/// indices, float64 values): `scipy.sparse.load_npz` reads it back.
pub fn write_csr_npz(path: impl AsRef<Path>, a: &crate::ops::CsrMatrix<f64>) -> Result<()> {
    use ndarray_npy::WriteNpyExt;
    let path = path.as_ref();
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let mut put = |name: &str, bytes: Vec<u8>| -> Result<()> {
            use std::io::Write;
            zip.start_file(format!("{name}.npy"), opts)
                .map_err(|e| io_err(path, e))?;
            zip.write_all(&bytes).map_err(|e| io_err(path, e))
        };
        let npy =
            |w: &dyn Fn(&mut Vec<u8>) -> std::result::Result<(), ndarray_npy::WriteNpyError>| {
                let mut v = Vec::new();
                w(&mut v).map_err(|e| io_err(path, e))?;
                Ok::<_, Error>(v)
            };
        let as_i64 = |v: &[usize]| Array1::from_iter(v.iter().map(|&k| k as i64));
        put("indices", npy(&|v| as_i64(a.indices()).write_npy(v))?)?;
        put("indptr", npy(&|v| as_i64(a.indptr()).write_npy(v))?)?;
        put(
            "shape",
            npy(&|v| Array1::from(vec![a.nrows() as i64, a.ncols() as i64]).write_npy(v))?,
        )?;
        put(
            "data",
            npy(&|v| Array1::from(a.data().to_vec()).write_npy(v))?,
        )?;
        // numpy's header for a 0-d byte string of length 3, then its bytes.
        let mut fmt = b"\x93NUMPY\x01\x00".to_vec();
        let mut header = "{'descr': '|S3', 'fortran_order': False, 'shape': (), }".to_string();
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        fmt.extend_from_slice(&(header.len() as u16).to_le_bytes());
        fmt.extend_from_slice(header.as_bytes());
        fmt.extend_from_slice(b"csr");
        put("format", fmt)?;
        zip.finish().map_err(|e| io_err(path, e))?;
    }
    write_atomic(path, &buf.into_inner())
}

/// Writes an array of a [`Real`](crate::linalg::Real) type as `.npy` in its own precision
/// (float32 or float64; the conversion is exact).
pub fn write_npy_real<T: crate::linalg::Real, D: ndarray::Dimension>(
    path: impl AsRef<Path>,
    a: &ndarray::Array<T, D>,
) -> Result<()> {
    if T::epsilon().as_f64() > 1e-10 {
        write_npy(path, &a.mapv(|v| v.as_f64() as f32))
    } else {
        write_npy(path, &a.mapv(|v| v.as_f64()))
    }
}

/// Writes `bytes` to `path` atomically: into a temporary file in the same folder
/// (`.NAME.PID-K.partial`), flushed to disk (`fsync`), then renamed over `path`, and the
/// folder synced. A reader (or a run killed at any instant) sees the old file or the new
/// one, never a torn one; a killed writer can leave its `.partial` file behind, never a
/// damaged `path`. The folder must exist.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let path = path.as_ref();
    let name = path
        .file_name()
        .ok_or_else(|| io_err(path, "not a file name: give a path that ends in a file"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.{}-{k}.partial",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // The rename itself reaches the disk once the folder is synced (best effort: not every
        // platform can open a folder).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(e.kind(), format!("cannot write: {e}")),
        }
    })
}

/// Writes an `f64` array as `.npy` (atomically, see [`write_atomic`]).
pub fn write_npy<T: ndarray_npy::WritableElement, D: ndarray::Dimension>(
    path: impl AsRef<Path>,
    a: &ndarray::Array<T, D>,
) -> Result<()> {
    use ndarray_npy::WriteNpyExt;
    let path = path.as_ref();
    let mut bytes = Vec::new();
    a.write_npy(&mut bytes).map_err(|e| io_err(path, e))?;
    write_atomic(path, &bytes)
}

/// Writes a `w × h` RGB image (rows of `3w` bytes) as PNG (atomically, see [`write_atomic`]).
pub fn write_png_rgb(path: impl AsRef<Path>, w: u32, h: u32, rgb: Vec<u8>) -> Result<()> {
    let path = path.as_ref();
    let img = image::RgbImage::from_raw(w, h, rgb).ok_or_else(|| {
        io_err(
            path,
            format!("an RGB buffer of {w}×{h}×3 bytes was expected"),
        )
    })?;
    write_png_atomic(path, &img)
}

/// Encodes `img` as PNG in memory and writes it with [`write_atomic`].
fn write_png_atomic<P, C>(path: &Path, img: &image::ImageBuffer<P, C>) -> Result<()>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| io_err(path, e))?;
    write_atomic(path, &bytes)
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

/// Writes an `h × w` array as an 8-bit grayscale PNG (values clipped to `[0, 1]`; atomically,
/// see [`write_atomic`]).
pub fn write_png_gray(path: impl AsRef<Path>, a: &Array2<f64>) -> Result<()> {
    let path = path.as_ref();
    let (h, w) = a.dim();
    let img = image::GrayImage::from_fn(w as u32, h as u32, |j, i| {
        let v = a[(i as usize, j as usize)].clamp(0.0, 1.0);
        image::Luma([(v * 255.0).round() as u8])
    });
    write_png_atomic(path, &img)
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

/// The shipped `data/` folder (Kodak images, digits): `./data` if it holds `kodak/`, else the
/// one of the source tree this crate was built from.
pub fn shipped_data_dir() -> PathBuf {
    let local = PathBuf::from("data");
    if local.join("kodak").is_dir() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data")
}

/// Loads the first `count` PNG images of `dir` (sorted by file name; `count = 0` means all),
/// as grayscale in `[0, 1]`, resized to `size × size` (triangle filter) when they differ.
/// `Err` for a missing folder, no PNG files, fewer than `count` images, or `size < 8`.
pub fn load_images(dir: &Path, count: usize, size: usize) -> Result<Vec<Array2<f64>>> {
    if size < 8 {
        return Err(Error::param("size", size, "images must be at least 8×8"));
    }
    // Refused before any pixel is allocated (2²⁸ pixels in all: 2 GiB of f64 per copy).
    const MAX_PIXELS: usize = 1 << 28;
    let pixels = size
        .checked_mul(size)
        .and_then(|p| p.checked_mul(count.max(1)));
    if pixels.is_none_or(|p| p > MAX_PIXELS) {
        return Err(Error::param(
            "size",
            size,
            format!("{} images of {size}×{size} exceed {MAX_PIXELS} pixels; use fewer or smaller images", count.max(1)),
        ));
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

/// PSNR in dB for signals with peak value 1: `10·log₁₀(1/MSE)` (any shape; `a` and
/// `reference` of the same shape).
pub fn psnr<S1, S2, D>(a: &ArrayBase<S1, D>, reference: &ArrayBase<S2, D>) -> f64
where
    S1: Data<Elem = f64>,
    S2: Data<Elem = f64>,
    D: Dimension,
{
    let mse = (a - reference).mapv(|v| v * v).mean().unwrap_or(0.0);
    10.0 * (1.0 / mse.max(1e-300)).log10()
}

/// `a + σ·N(0, I)` from a given generator (entries in memory order).
fn noisy_with<S: Data<Elem = f64>, D: Dimension>(
    a: &ArrayBase<S, D>,
    sigma: f64,
    rng: &mut rand::rngs::StdRng,
) -> Array<f64, D> {
    a.mapv(|v| {
        let e: f64 = StandardNormal.sample(rng);
        v + sigma * e
    })
}

/// `a + σ·N(0, I)`, seeded (values are not clipped).
pub fn add_noise<S: Data<Elem = f64>, D: Dimension>(
    a: &ArrayBase<S, D>,
    sigma: f64,
    seed: u64,
) -> Array<f64, D> {
    noisy_with(a, sigma, &mut rand::rngs::StdRng::seed_from_u64(seed))
}

/// Every image plus `σ·N(0, I)`, from one seeded stream (image after image).
pub fn add_noise_all(images: &[Array2<f64>], sigma: f64, seed: u64) -> Vec<Array2<f64>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    images
        .iter()
        .map(|im| noisy_with(im, sigma, &mut rng))
        .collect()
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
        .filter_map(|i| {
            x.slice(ndarray::s![i * n..(i + 1) * n])
                .to_owned()
                .into_shape_with_order((h, w))
                .ok()
        })
        .collect()
}

/// A value tagged with its file format, `{"format": "...", ...fields}`: how models and
/// checkpoints are written (serde derives on the payload; the tag lets a reader reject a wrong
/// file with a clear message instead of a missing-field error).
#[derive(serde::Serialize, serde::Deserialize)]
struct Tagged<T> {
    format: String,
    #[serde(flatten)]
    payload: T,
}

/// Serializes `payload` with its `format` tag as a JSON value.
pub fn to_tagged_json<T: serde::Serialize>(format: &str, payload: &T) -> Result<serde_json::Value> {
    serde_json::to_value(Tagged {
        format: format.to_string(),
        payload,
    })
    .map_err(|e| Error::param(format, "serialization", e.to_string()))
}

/// Reads a value written by [`to_tagged_json`]; `Err` naming `what` and how to get a valid
/// file (`hint`) if the tag differs or a field is missing.
pub fn from_tagged_json<T: serde::de::DeserializeOwned>(
    format: &str,
    what: &str,
    hint: &str,
    v: serde_json::Value,
) -> Result<T> {
    if v.get("format").and_then(|f| f.as_str()) != Some(format) {
        return Err(Error::param(
            what,
            v.get("format")
                .map_or("no format".into(), |f| f.to_string()),
            format!("not a {format} file; {hint}"),
        ));
    }
    serde_json::from_value::<Tagged<T>>(v)
        .map(|t| t.payload)
        .map_err(|e| Error::param(what, "invalid", format!("{e}; {hint}")))
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

    #[test]
    fn psnr_noise_and_stacking() {
        use ndarray::{array, Array2};
        let a = Array2::from_elem((4, 5), 0.5);
        let b = a.mapv(|v| v + 0.1);
        assert!((psnr(&b, &a) - 20.0).abs() < 1e-9, "MSE 0.01 is 20 dB");
        assert!((psnr(&b.row(0), &a.row(0)) - 20.0).abs() < 1e-9);
        // One stream for a set of images = the images' noise drawn one after the other.
        let ims = vec![a.clone(), b.clone()];
        let all = add_noise_all(&ims, 0.1, 3);
        let joint = add_noise(&stack(&ims), 0.1, 3);
        assert_eq!(stack(&all), joint);
        assert_ne!(add_noise(&a, 0.1, 3), add_noise(&a, 0.1, 4));
        let back = unstack(&stack(&ims), 4, 5);
        assert_eq!(back, ims);
        assert!(unstack(&array![1.0, 2.0, 3.0], 2, 2).is_empty());
    }

    #[test]
    fn tagged_json_round_trips_and_names_the_expected_format() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct P {
            a: Vec<f64>,
            n: u64,
        }
        let p = P {
            a: vec![1.5, -2.0],
            n: 7,
        };
        let v = to_tagged_json("fmt-v1", &p).unwrap();
        assert_eq!(v["format"], "fmt-v1");
        assert_eq!(
            from_tagged_json::<P>("fmt-v1", "file", "hint", v.clone()).unwrap(),
            p
        );
        let e = from_tagged_json::<P>("fmt-v2", "file", "make one", v).unwrap_err();
        assert!(
            e.to_string().contains("fmt-v2") && e.to_string().contains("make one"),
            "{e}"
        );
        let missing = serde_json::json!({"format": "fmt-v1", "a": [1.0]});
        let e = from_tagged_json::<P>("fmt-v1", "file", "make one", missing).unwrap_err();
        assert!(e.to_string().contains("n"), "{e}");
    }
}
