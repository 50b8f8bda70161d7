//! The ranks of a run: `MPI_COMM_WORLD` under `mpirun` (feature `mpi`), else one process.
//!
//! Only rank 0 writes files and shows progress; every rank prints its error (the same one,
//! agreed by the ranks) and exits with status 1.

use super::common::{CliError, CliResult};
use hyperprox::core::comm::{agree_dyn, Communicator, SelfComm};
use std::sync::{Arc, Mutex};

static RANKS: Mutex<Option<Arc<dyn Communicator>>> = Mutex::new(None);

/// The number of processes the launcher started, from its environment (MPICH/Hydra, Open MPI,
/// PMIx, Slurm's srun), or `None` when not started by one.
fn launched_size() -> Option<usize> {
    [
        "PMI_SIZE",
        "OMPI_COMM_WORLD_SIZE",
        "PMIX_SIZE",
        "MPI_LOCALNRANKS",
        "SLURM_NTASKS",
    ]
    .iter()
    .filter(|v| *v != &"SLURM_NTASKS" || std::env::var("SLURM_STEP_ID").is_ok())
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// Starts MPI when launched by `mpirun` with more than one process (feature `mpi`); refuses to
/// run several unaware copies otherwise (they would all write the same files).
pub fn init() -> CliResult<()> {
    let comm: Arc<dyn Communicator> = match launched_size() {
        Some(k) if k > 1 => mpi_world(k)?,
        _ => Arc::new(SelfComm::new()),
    };
    *RANKS.lock().unwrap_or_else(|p| p.into_inner()) = Some(comm);
    Ok(())
}

#[cfg(feature = "mpi")]
fn mpi_world(_k: usize) -> CliResult<Arc<dyn Communicator>> {
    Ok(Arc::new(hyperprox::core::comm::MpiComm::init()?))
}

#[cfg(not(feature = "mpi"))]
fn mpi_world(k: usize) -> CliResult<Arc<dyn Communicator>> {
    Err(CliError::Usage(format!(
        "started by an MPI launcher with {k} processes, but this hyperprox was built without MPI: \
         build it with `cargo build --release --features mpi` (needs MPICH or Open MPI and libclang, see the README)"
    )))
}

/// Ends MPI (every rank calls it once, at the end).
pub fn finish() {
    let comm = RANKS.lock().unwrap_or_else(|p| p.into_inner()).take();
    drop(comm);
}

/// The ranks.
pub fn comm() -> Arc<dyn Communicator> {
    RANKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_else(|| Arc::new(SelfComm::new()))
}

/// `(rank, size)`.
pub fn rank_size() -> (usize, usize) {
    let c = comm();
    (c.rank(), c.size())
}

/// Whether this process writes the files and shows progress (rank 0).
pub fn is_root() -> bool {
    rank_size().0 == 0
}

/// `Err` for a command that does not run data parallel when started on several ranks.
pub fn serial_only(command: &str) -> CliResult<()> {
    let (_, k) = rank_size();
    if k > 1 {
        return Err(CliError::Usage(format!(
            "`{command}` does not run on several ranks ({k} started): run it without mpirun; \
             `tune tv`, `tune foe` and `unfold train` do"
        )));
    }
    Ok(())
}

/// Runs `write` on rank 0 only; every rank returns its outcome (the same error everywhere if
/// it failed).
pub fn root_writes(write: impl FnOnce() -> CliResult<()>) -> CliResult<()> {
    let local = if is_root() { write() } else { Ok(()) };
    agreed(local)
}

/// Agrees on every rank's outcome: `Ok` everywhere, or the first failed rank's error on every
/// rank.
pub fn agreed(local: CliResult<()>) -> CliResult<()> {
    let c = comm();
    if c.size() == 1 {
        return local;
    }
    let local = local.map_err(|e| hyperprox::core::Error::CheckFailed(e.to_string()));
    agree_dyn(c.as_ref(), local).map_err(|e| match e {
        hyperprox::core::Error::RankFailed { message, .. } => CliError::Usage(message),
        e => CliError::Lib(e),
    })
}

/// A test hook: `HYPERPROX_TEST_FAIL=RANK:STEP` makes rank `RANK`'s checkpoint save fail
/// at outer iteration (or minibatch) `STEP`, to check that every rank stops with its error.
pub fn injected_failure(step: u64) -> hyperprox::core::Result<()> {
    let Ok(spec) = std::env::var("HYPERPROX_TEST_FAIL") else {
        return Ok(());
    };
    let (rank, _) = rank_size();
    let mut it = spec.split(':').map(|v| v.parse::<u64>().ok());
    if let (Some(Some(r)), Some(Some(s))) = (it.next(), it.next()) {
        if r == rank as u64 && step >= s {
            return Err(hyperprox::core::Error::param(
                "HYPERPROX_TEST_FAIL",
                &spec,
                format!("failure injected on rank {rank} at step {step} (a test hook: unset it)"),
            ));
        }
    }
    Ok(())
}
