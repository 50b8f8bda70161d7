//! What every subcommand shares: the error type, JSON and figure output, progress bars, output
//! checks.

use hyperprox::core::figure::Figure;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A command-line error; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// From the library (bad input, not converged, I/O of data files, …).
    #[error("{0}")]
    Lib(#[from] hyperprox::core::Error),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A figure could not be drawn.
    #[error("{0}")]
    Figure(String),
}

/// The result of a subcommand.
pub type CliResult<T> = Result<T, CliError>;

/// `Err(Usage(msg))`.
pub fn usage<T>(msg: impl Into<String>) -> CliResult<T> {
    Err(CliError::Usage(msg.into()))
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks, before any work, that an output folder can be created where asked: `dir` is a folder
/// or does not exist yet, and its nearest existing ancestor is a folder. Nothing is created
/// ([`create_dir`] does that once the inputs are validated and there is something to write).
pub fn check_out_dir(dir: &Path) -> CliResult<()> {
    let mut p = Some(dir);
    while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
        if d.exists() {
            if d.is_dir() {
                return Ok(());
            }
            return usage(format!(
                "{}: cannot create the output folder {}, {} is a file",
                dir.display(),
                dir.display(),
                d.display()
            ));
        }
        p = d.parent();
    }
    Ok(())
}

/// Creates an output folder (and its parents).
pub fn create_dir(dir: &Path) -> CliResult<()> {
    std::fs::create_dir_all(dir).map_err(io_at(dir))
}

/// Writes a file atomically (temporary file, sync, rename: a killed run leaves the old file or
/// the new one).
pub fn write_text(path: &Path, text: &str) -> CliResult<()> {
    Ok(hyperprox::core::io::write_atomic(path, text.as_bytes())?)
}

/// Writes `v` as pretty JSON.
pub fn write_json(path: &Path, v: &impl Serialize) -> CliResult<()> {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    write_text(path, &(text + "\n"))
}

/// Reads a text file; `hint` says how to get a valid one.
pub fn read_text(path: &Path, hint: &str) -> CliResult<String> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e} ({hint})", path.display())))
}

/// Reads a JSON file; `hint` says how to get a valid one.
pub fn read_json(path: &Path, hint: &str) -> CliResult<serde_json::Value> {
    serde_json::from_str(&read_text(path, hint)?)
        .map_err(|e| CliError::Usage(format!("{}: not valid JSON ({e})", path.display())))
}

/// Prints `report` as one JSON line.
pub fn print_line(report: &impl Serialize) {
    println!("{}", serde_json::to_value(report).unwrap_or_default());
}

/// The checkpoint at `path` for `--resume`, refused unless `config_of` finds it made with
/// `config`.
pub fn resume_checkpoint<S: serde::de::DeserializeOwned, C: PartialEq>(
    path: &Path,
    config: &C,
    config_of: impl Fn(&S) -> &C,
) -> CliResult<S> {
    let text = read_text(path, "run without --resume first")?;
    let st: S = serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    if config_of(&st) != config {
        return usage(format!(
            "{}: the checkpoint was made with other options; use the same options or another --out",
            path.display()
        ));
    }
    Ok(st)
}

/// Writes `OUT/report.json`, `OUT/figure.png` and, if given, `OUT/history.json`.
pub fn write_outputs(
    out: &Path,
    report: &impl Serialize,
    history: Option<&[impl Serialize]>,
    figure: &Figure,
) -> CliResult<()> {
    if let Some(h) = history {
        write_json(&out.join("history.json"), &h)?;
    }
    hyperprox::report::write_figure(&out.join("figure.png"), figure).map_err(CliError::Figure)?;
    write_json(&out.join("report.json"), report)
}

/// Checks an output file's extension and folder before any work is done.
pub fn check_output_path(p: &Path, exts: &[&str]) -> CliResult<()> {
    let ok = p
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.contains(&e.to_ascii_lowercase().as_str()));
    if !ok {
        return usage(format!(
            "{}: the output must end in .{}",
            p.display(),
            exts.join(" or .")
        ));
    }
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return usage(format!(
                "{}: the output folder {} does not exist",
                p.display(),
                dir.display()
            ));
        }
    }
    Ok(())
}

/// Checks the output (with one of `exts`) and the optional JSON report path.
pub fn check_outputs(out: &Path, report: &Option<PathBuf>, exts: &[&str]) -> CliResult<()> {
    check_output_path(out, exts)?;
    if let Some(r) = report {
        check_output_path(r, &["json"])?;
    }
    Ok(())
}

/// Writes the JSON report (if asked) and prints it on one line.
pub fn finish(path: &Option<PathBuf>, report: &impl Serialize) -> CliResult<()> {
    if let Some(p) = path {
        write_json(p, report)?;
    }
    print_line(report);
    Ok(())
}

/// A progress bar over `len` units (`outer its`, `minibatches`, `steps`).
pub fn progress(len: u64, unit: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let template = format!("{{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  [{{elapsed}}<{{eta}}]");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        pb.set_style(style);
    }
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_paths_are_checked_before_any_work() {
        assert!(check_output_path(Path::new("x.npy"), &["npy"]).is_ok());
        assert!(check_output_path(Path::new("x.txt"), &["npy", "png"]).is_err());
        let e = check_output_path(Path::new("/no/such/dir/x.npy"), &["npy"]).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    #[test]
    fn output_folders_are_checked_without_creating_them() {
        let base = std::env::temp_dir().join(format!("hp-outdir-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let file = base.join("a-file");
        std::fs::write(&file, "x").unwrap();
        assert!(check_out_dir(&base.join("new/deeper")).is_ok());
        assert!(
            !base.join("new").exists(),
            "the check must not create anything"
        );
        assert!(check_out_dir(&base).is_ok());
        for bad in [file.clone(), file.join("sub")] {
            let e = check_out_dir(&bad).unwrap_err().to_string();
            assert!(e.contains("is a file"), "{e}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
