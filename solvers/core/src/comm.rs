//! Communicators for data-parallel runs: the reductions a sharded solver needs, with a fixed
//! summation order, so that every rank holds bit for bit the same result and takes the same
//! decisions (line searches, stopping tests).
//!
//! A [`Communicator`] offers one primitive, the all-gather (every rank's contribution, in rank
//! order), and builds on it:
//! - [`Communicator::sum`]: `Σ_r v_r`, summed **in rank order** `((v₀ + v₁) + v₂) + …` on every
//!   rank. MPI's own `MPI_Allreduce` does not promise the same bits on every rank, nor an order
//!   that is the same for every rank count; a gathered sum does both. The price is `K·n` values
//!   received per rank instead of the `2n` of a ring all-reduce: nothing for the scalars of
//!   conjugate gradients, and for a hypergradient of 2449 entries 19.6 kB per rank and
//!   neighbour (see the README's scaling model);
//! - [`Communicator::max`], [`Communicator::min`];
//! - [`Communicator::agree`]: every rank learns whether any rank failed, and every rank returns
//!   the same error, [`Error::RankFailed`], naming the first rank that failed and its
//!   message. A solver calls it at each point where a rank-local step may fail, so that no rank
//!   is left waiting in a collective the failed rank will never join.
//!
//! [`SelfComm`] is the one-process communicator (every reduction is the identity, so a run with
//! it is the serial run); [`MpiComm`] (feature `mpi`) is `MPI_COMM_WORLD` through rsmpi.
//!
//! Every communicator counts its collectives and the bytes it sent and received
//! ([`CommStats`]), which is how the README's communication volumes were measured.

use crate::error::{Error, Result};
use crate::linalg::Vector;
use ndarray::Array1;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Collectives and bytes of a communicator, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct CommStats {
    /// Collective operations called.
    pub collectives: u64,
    /// Bytes this rank contributed (sent).
    pub bytes_sent: u64,
    /// Bytes this rank received (every rank's contribution, its own included).
    pub bytes_received: u64,
    /// Wall-clock seconds spent inside collectives (waiting for the other ranks included):
    /// a run's compute time is its wall time less this.
    pub seconds: f64,
}

/// Counters a communicator updates (atomics: the reductions take `&self`).
#[derive(Debug, Default)]
pub struct StatCounter {
    collectives: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    nanos: AtomicU64,
}

impl StatCounter {
    /// Records one collective that started at `since`.
    pub fn record_timed(&self, sent: usize, received: usize, since: std::time::Instant) {
        let ns = since.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.nanos.fetch_add(ns, Ordering::Relaxed);
        self.record(sent, received);
    }
    /// Records one collective.
    pub fn record(&self, sent: usize, received: usize) {
        self.collectives.fetch_add(1, Ordering::Relaxed);
        self.sent.fetch_add(sent as u64, Ordering::Relaxed);
        self.received.fetch_add(received as u64, Ordering::Relaxed);
    }
    /// The counts so far.
    pub fn get(&self) -> CommStats {
        CommStats {
            collectives: self.collectives.load(Ordering::Relaxed),
            bytes_sent: self.sent.load(Ordering::Relaxed),
            bytes_received: self.received.load(Ordering::Relaxed),
            seconds: self.nanos.load(Ordering::Relaxed) as f64 * 1e-9,
        }
    }
}

/// A group of ranks that run the same program on different shards of the data (see the
/// [module docs](self)).
///
/// Every collective must be called by every rank, in the same order, with contributions of the
/// same length (except [`Communicator::all_gather_bytes`]). The solvers built on it keep this
/// rule by taking every decision from reduced (hence identical) values.
pub trait Communicator: Send + Sync {
    /// This rank, `0..size`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Every rank's `local` (each of length `local.len()`), concatenated in rank order.
    fn all_gather(&self, local: &[f64]) -> Vec<f64>;
    /// Every rank's bytes (any lengths), in rank order.
    fn all_gather_bytes(&self, local: &[u8]) -> Vec<Vec<u8>>;
    /// The collectives and bytes so far.
    fn stats(&self) -> CommStats;

    /// `buf ← Σ_r buf_r`, summed in rank order (the same bits on every rank).
    fn sum(&self, buf: &mut [f64]) {
        if self.size() == 1 {
            return;
        }
        let n = buf.len();
        let all = self.all_gather(buf);
        buf.copy_from_slice(&all[..n]);
        for r in 1..self.size() {
            for (b, v) in buf.iter_mut().zip(&all[r * n..(r + 1) * n]) {
                *b += v;
            }
        }
    }
    /// `Σ_r x_r` (see [`Communicator::sum`]).
    fn sum_scalar(&self, x: f64) -> f64 {
        let mut b = [x];
        self.sum(&mut b);
        b[0]
    }
    /// Entrywise maximum over the ranks (NaN wins: a NaN on any rank is seen by all).
    fn max(&self, buf: &mut [f64]) {
        self.fold(buf, |a, b| {
            if a.is_nan() || b > a || b.is_nan() {
                b
            } else {
                a
            }
        })
    }
    /// Entrywise minimum over the ranks (NaN wins).
    fn min(&self, buf: &mut [f64]) {
        self.fold(buf, |a, b| {
            if a.is_nan() || b < a || b.is_nan() {
                b
            } else {
                a
            }
        })
    }
    /// Entrywise fold of the ranks' buffers in rank order.
    fn fold(&self, buf: &mut [f64], f: fn(f64, f64) -> f64) {
        if self.size() == 1 {
            return;
        }
        let n = buf.len();
        let all = self.all_gather(buf);
        buf.copy_from_slice(&all[..n]);
        for r in 1..self.size() {
            for (b, &v) in buf.iter_mut().zip(&all[r * n..(r + 1) * n]) {
                *b = f(*b, v);
            }
        }
    }
    /// Whether every rank succeeded: `Ok(value)` on every rank if so, otherwise the same
    /// [`Error::RankFailed`] on every rank (the first failed rank and its message).
    fn agree<T>(&self, local: Result<T>) -> Result<T>
    where
        Self: Sized,
    {
        agree_dyn(self, local)
    }
}

/// [`Communicator::agree`] for a `dyn Communicator`.
pub fn agree_dyn<T, C: Communicator + ?Sized>(comm: &C, local: Result<T>) -> Result<T> {
    if comm.size() == 1 {
        return local;
    }
    let msg = match &local {
        Ok(_) => Vec::new(),
        // A rank that failed sends its message (never empty).
        Err(e) => format!("{e}").into_bytes(),
    };
    let all = comm.all_gather_bytes(&msg);
    match all.iter().position(|m| !m.is_empty()) {
        None => local,
        Some(r) => Err(Error::RankFailed {
            rank: r,
            size: comm.size(),
            message: String::from_utf8_lossy(&all[r]).into_owned(),
        }),
    }
}

/// Gathers every rank's `local` (of length `len`) with a failure flag: every rank's values in
/// rank order, or on every rank the same [`Error::RankFailed`] if any rank's `local` is an
/// `Err` (one collective when all succeed, two when one failed).
pub fn gather_checked<C: Communicator + ?Sized>(
    comm: &C,
    local: Result<Vec<f64>>,
    len: usize,
) -> Result<Vec<Vec<f64>>> {
    let local = local.and_then(|v| {
        if v.len() == len {
            Ok(v)
        } else {
            Err(Error::shape(
                "gathered contribution",
                "values",
                len,
                v.len(),
            ))
        }
    });
    let mut buf = vec![0.0; 1 + len];
    match &local {
        Ok(v) => buf[1..].copy_from_slice(v),
        Err(_) => buf[0] = 1.0,
    }
    let all = comm.all_gather(&buf);
    if all.chunks(1 + len).any(|c| c[0] != 0.0) {
        // Every rank saw a flag: all join the exchange of messages.
        agree_dyn(comm, local.map(|_| ()))?;
        return Err(Error::param(
            "ranks",
            "inconsistent failure flags",
            "a rank flagged a failure it did not report (a bug: please report it)",
        ));
    }
    Ok(all.chunks(1 + len).map(|c| c[1..].to_vec()).collect())
}

/// [`gather_checked`] summed in rank order (the same bits on every rank).
pub fn sum_checked<C: Communicator + ?Sized>(
    comm: &C,
    local: Result<Vec<f64>>,
    len: usize,
) -> Result<Vec<f64>> {
    Ok(sum_in_order(&gather_checked(comm, local, len)?))
}

/// The entrywise sum of `parts` in order, `((p₀ + p₁) + p₂) + …`.
pub fn sum_in_order(parts: &[Vec<f64>]) -> Vec<f64> {
    let mut acc = parts.first().cloned().unwrap_or_default();
    for p in parts.iter().skip(1) {
        for (a, v) in acc.iter_mut().zip(p) {
            *a += v;
        }
    }
    acc
}

/// The one-process communicator: every reduction is the identity.
#[derive(Debug, Default)]
pub struct SelfComm {
    stats: StatCounter,
}

impl SelfComm {
    /// The communicator of a serial run.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Communicator for SelfComm {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_gather(&self, local: &[f64]) -> Vec<f64> {
        self.stats.record(0, 0);
        local.to_vec()
    }
    fn all_gather_bytes(&self, local: &[u8]) -> Vec<Vec<u8>> {
        self.stats.record(0, 0);
        vec![local.to_vec()]
    }
    fn stats(&self) -> CommStats {
        self.stats.get()
    }
}

/// `k` ranks as threads of one process (for tests and for trying a data-parallel run
/// without MPI): [`ThreadComm::group`] makes the `k` communicators, one per thread. Every
/// collective is a rendezvous of the `k` threads.
pub struct ThreadComm {
    rank: usize,
    shared: Arc<ThreadShared>,
    stats: StatCounter,
}

struct ThreadShared {
    slots: std::sync::Mutex<Vec<Vec<u8>>>,
    barrier: std::sync::Barrier,
}

impl ThreadComm {
    /// The communicators of `k ≥ 1` thread ranks (give one to each thread).
    pub fn group(k: usize) -> Vec<ThreadComm> {
        let k = k.max(1);
        let shared = Arc::new(ThreadShared {
            slots: std::sync::Mutex::new(vec![Vec::new(); k]),
            barrier: std::sync::Barrier::new(k),
        });
        (0..k)
            .map(|rank| ThreadComm {
                rank,
                shared: Arc::clone(&shared),
                stats: StatCounter::default(),
            })
            .collect()
    }

    fn exchange(&self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let t0 = std::time::Instant::now();
        let lock = || {
            self.shared
                .slots
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        lock()[self.rank] = bytes.to_vec();
        self.shared.barrier.wait();
        let out = lock().clone();
        // Nobody writes the next round before everybody has read this one.
        self.shared.barrier.wait();
        let received = out.iter().map(Vec::len).sum();
        self.stats.record_timed(bytes.len(), received, t0);
        out
    }
}

impl Communicator for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.slots.lock().map(|s| s.len()).unwrap_or(1)
    }
    fn all_gather(&self, local: &[f64]) -> Vec<f64> {
        let bytes: Vec<u8> = local.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.exchange(&bytes)
            .iter()
            .flat_map(|b| {
                b.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
    fn all_gather_bytes(&self, local: &[u8]) -> Vec<Vec<u8>> {
        self.exchange(local)
    }
    fn stats(&self) -> CommStats {
        self.stats.get()
    }
}

/// A split of `items` (with sizes `weights`, e.g. pixels per image) into `ranks` contiguous
/// shards of nearly equal total weight: the shard of rank `r` is `bounds[r]..bounds[r + 1]`.
/// Every rank gets at least one item (`Err` if `items < ranks`). Contiguous shards keep the
/// global order of the items, so a gathered vector is the serial one.
pub fn balanced_shards(weights: &[usize], ranks: usize) -> Result<Vec<usize>> {
    let n = weights.len();
    if ranks == 0 || n < ranks {
        return Err(Error::param(
            "number of ranks",
            ranks,
            format!(
                "each rank needs at least one of the {n} images/samples: run with at most {n} ranks (mpirun -np {n})"
            ),
        ));
    }
    let total = weights.iter().sum::<usize>() as i128;
    let w = |i: usize| weights[i] as i128;
    let mut bounds = vec![0usize; ranks + 1];
    let (mut acc, mut i) = (0i128, 0usize);
    for r in 1..ranks {
        // Rank r − 1 keeps at least one item, and each later rank gets one.
        let (lo, hi) = (bounds[r - 1] + 1, n - (ranks - r));
        while i < lo {
            acc += w(i);
            i += 1;
        }
        // Move the boundary while that brings the prefix closer to r/ranks of the weight.
        let target = total * r as i128;
        while i < hi
            && ((acc + w(i)) * ranks as i128 - target).abs() < (acc * ranks as i128 - target).abs()
        {
            acc += w(i);
            i += 1;
        }
        bounds[r] = i;
    }
    bounds[ranks] = n;
    Ok(bounds)
}

/// A vector split over the ranks: this rank's block `local`, with the reductions (`dot`, the
/// norms, `all_finite`) taken over every rank's block through the communicator (in rank order,
/// see [`Communicator::sum`]). The elementwise operations touch the local block only, so the
/// backend-generic solvers ([`Fista`](crate::solve::Fista),
/// [`conjugate_gradient_on`](crate::linalg::conjugate_gradient_on)) run unchanged on sharded data: every rank takes
/// the same decisions from the same reduced values.
#[derive(Clone)]
pub struct ShardedVector {
    /// This rank's block.
    pub local: Array1<f64>,
    comm: Arc<dyn Communicator>,
}

impl std::fmt::Debug for ShardedVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedVector")
            .field("rank", &self.comm.rank())
            .field("local", &self.local)
            .finish()
    }
}

impl ShardedVector {
    /// This rank's block of a vector split over `comm`'s ranks.
    pub fn new(local: Array1<f64>, comm: Arc<dyn Communicator>) -> Self {
        Self { local, comm }
    }
    /// The communicator.
    pub fn comm(&self) -> &Arc<dyn Communicator> {
        &self.comm
    }
    fn same(&self, local: Array1<f64>) -> Self {
        Self {
            local,
            comm: Arc::clone(&self.comm),
        }
    }
}

impl Vector<f64> for ShardedVector {
    fn len(&self) -> usize {
        self.local.len()
    }
    fn dot(&self, other: &Self) -> f64 {
        self.comm.sum_scalar(Vector::dot(&self.local, &other.local))
    }
    fn norm2(&self) -> f64 {
        self.comm
            .sum_scalar(Vector::dot(&self.local, &self.local))
            .sqrt()
    }
    fn norm1(&self) -> f64 {
        self.comm.sum_scalar(self.local.norm1())
    }
    fn norm_inf(&self) -> f64 {
        let mut b = [self.local.norm_inf()];
        self.comm.max(&mut b);
        b[0]
    }
    fn axpy(&mut self, a: f64, x: &Self) {
        self.local.axpy(a, &x.local)
    }
    fn scale(&mut self, a: f64) {
        Vector::scale(&mut self.local, a)
    }
    fn copy_from(&mut self, x: &Self) {
        self.local.copy_from(&x.local)
    }
    fn zeros_like(&self) -> Self {
        self.same(Array1::zeros(self.local.len()))
    }
    fn zeros_of_len(&self, len: usize) -> Self {
        self.same(Array1::zeros(len))
    }
    fn fill(&mut self, a: f64) {
        Vector::fill(&mut self.local, a)
    }
    fn all_finite(&self) -> bool {
        let mut b = [if self.local.all_finite() { 0.0 } else { 1.0 }];
        self.comm.max(&mut b);
        b[0] == 0.0
    }
    fn set_axpy(&mut self, x: &Self, a: f64, y: &Self) {
        self.local.set_axpy(&x.local, a, &y.local)
    }
    fn xpay(&mut self, x: &Self, a: f64) {
        self.local.xpay(&x.local, a)
    }
    fn set_extrapolation(&mut self, z: &Self, x: &Self, beta: f64) {
        self.local.set_extrapolation(&z.local, &x.local, beta)
    }
    fn dot_of_differences(a: &Self, b: &Self, c: &Self, d: &Self) -> f64 {
        a.comm.sum_scalar(Array1::dot_of_differences(
            &a.local, &b.local, &c.local, &d.local,
        ))
    }
    fn norm_of_scaled_difference(&self, s: f64, b: &Self) -> f64 {
        let n = self.local.norm_of_scaled_difference(s, &b.local);
        self.comm.sum_scalar(n * n).sqrt()
    }
    fn max_abs_diff(&self, x: &Self) -> f64 {
        let mut b = [self.local.max_abs_diff(&x.local)];
        self.comm.max(&mut b);
        b[0]
    }
}

#[cfg(feature = "mpi")]
pub use self::mpi_comm::MpiComm;

#[cfg(feature = "mpi")]
mod mpi_comm {
    use super::{CommStats, Communicator, StatCounter};
    use crate::error::{Error, Result};
    use mpi::collective::CommunicatorCollectives;
    use mpi::datatype::PartitionMut;
    use mpi::topology::Communicator as _;
    use mpi::topology::SimpleCommunicator;
    use mpi::Count;

    /// `MPI_COMM_WORLD` (feature `mpi`). Made once per process by [`MpiComm::init`]; MPI is
    /// finalized when it is dropped.
    pub struct MpiComm {
        world: SimpleCommunicator,
        // Dropped last: MPI_Finalize.
        _universe: mpi::environment::Universe,
        stats: StatCounter,
    }

    // The collectives are called from one thread at a time (MPI_THREAD_SERIALIZED is
    // requested): the solvers reduce only in their sequential parts.
    unsafe impl Send for MpiComm {}
    unsafe impl Sync for MpiComm {}

    impl MpiComm {
        /// Initializes MPI (thread level "serialized"). `Err` if MPI was initialized already
        /// or the library refuses.
        pub fn init() -> Result<Self> {
            let (universe, _level) = mpi::initialize_with_threading(mpi::Threading::Serialized)
                .ok_or_else(|| {
                    Error::unsupported(
                        "initializing MPI twice in one process",
                        "hyperprox::core::comm::MpiComm",
                    )
                })?;
            let world = universe.world();
            Ok(Self {
                world,
                _universe: universe,
                stats: StatCounter::default(),
            })
        }
    }

    impl Communicator for MpiComm {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }
        fn size(&self) -> usize {
            self.world.size() as usize
        }
        fn all_gather(&self, local: &[f64]) -> Vec<f64> {
            let t0 = std::time::Instant::now();
            let k = self.size();
            let mut out = vec![0.0; local.len() * k];
            self.world.all_gather_into(local, &mut out[..]);
            self.stats.record_timed(8 * local.len(), 8 * out.len(), t0);
            out
        }
        fn all_gather_bytes(&self, local: &[u8]) -> Vec<Vec<u8>> {
            let t0 = std::time::Instant::now();
            let k = self.size();
            let mut counts = vec![0 as Count; k];
            self.world
                .all_gather_into(&(local.len() as Count), &mut counts[..]);
            let displs: Vec<Count> = counts
                .iter()
                .scan(0, |acc, &c| {
                    let d = *acc;
                    *acc += c;
                    Some(d)
                })
                .collect();
            let total: usize = counts.iter().map(|&c| c as usize).sum();
            let mut buf = vec![0u8; total];
            {
                let mut part = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
                self.world.all_gather_varcount_into(local, &mut part);
            }
            self.stats.record_timed(local.len() + 4, total + 4 * k, t0);
            counts
                .iter()
                .zip(&displs)
                .map(|(&c, &d)| buf[d as usize..(d + c) as usize].to_vec())
                .collect()
        }
        fn stats(&self) -> CommStats {
            self.stats.get()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A communicator of `k` simulated ranks for one value: every rank's contribution is
    /// given, this is rank `me`.
    struct Fake {
        me: usize,
        contributions: Vec<Vec<f64>>,
        errors: Vec<Vec<u8>>,
    }
    impl Communicator for Fake {
        fn rank(&self) -> usize {
            self.me
        }
        fn size(&self) -> usize {
            self.contributions.len()
        }
        fn all_gather(&self, _local: &[f64]) -> Vec<f64> {
            self.contributions.concat()
        }
        fn all_gather_bytes(&self, _local: &[u8]) -> Vec<Vec<u8>> {
            self.errors.clone()
        }
        fn stats(&self) -> CommStats {
            CommStats::default()
        }
    }

    #[test]
    fn reductions_in_rank_order() {
        // (1e16 + 1) + (−1e16) = 0 in rank order; another order would give 1.
        let f = Fake {
            me: 1,
            contributions: vec![vec![1e16, 3.0], vec![1.0, -2.0], vec![-1e16, f64::NAN]],
            errors: vec![],
        };
        let mut b = vec![0.0, 0.0];
        f.sum(&mut b);
        assert_eq!(b[0], 0.0);
        assert!(b[1].is_nan());
        let mut b = vec![0.0, 0.0];
        f.max(&mut b);
        assert_eq!(b[0], 1e16);
        assert!(b[1].is_nan());
        let mut b = vec![0.0, 0.0];
        f.min(&mut b);
        assert_eq!(b[0], -1e16);
        assert!(b[1].is_nan());
        let f = Fake {
            me: 0,
            contributions: vec![vec![2.0], vec![-1.0]],
            errors: vec![],
        };
        let mut b = vec![0.0];
        f.max(&mut b);
        assert_eq!(b[0], 2.0);
        f.min(&mut b);
        assert_eq!(b[0], -1.0);
    }

    #[test]
    fn agree_names_the_first_failed_rank() {
        let f = Fake {
            me: 0,
            contributions: vec![vec![], vec![], vec![]],
            errors: vec![vec![], b"disk full".to_vec(), b"other".to_vec()],
        };
        let e = f.agree(Ok(1)).unwrap_err();
        match e {
            Error::RankFailed {
                rank,
                size,
                message,
            } => {
                assert_eq!((rank, size), (1, 3));
                assert_eq!(message, "disk full");
            }
            e => panic!("{e}"),
        }
        let f = Fake {
            me: 0,
            contributions: vec![vec![], vec![]],
            errors: vec![vec![], vec![]],
        };
        assert_eq!(f.agree(Ok(5)).unwrap(), 5);
    }

    #[test]
    fn shards_are_balanced_and_contiguous() {
        assert_eq!(balanced_shards(&[1; 4], 2).unwrap(), vec![0, 2, 4]);
        assert_eq!(balanced_shards(&[1; 5], 2).unwrap(), vec![0, 2, 5]);
        assert_eq!(balanced_shards(&[4, 1, 1, 1, 1], 2).unwrap(), vec![0, 1, 5]);
        assert_eq!(balanced_shards(&[1, 1, 1, 1, 4], 2).unwrap(), vec![0, 4, 5]);
        assert_eq!(balanced_shards(&[5, 5, 5], 3).unwrap(), vec![0, 1, 2, 3]);
        // A heavy first item still leaves one item to each later rank.
        assert_eq!(balanced_shards(&[100, 1, 1], 3).unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(balanced_shards(&[7], 1).unwrap(), vec![0, 1]);
        for k in 1..6 {
            let w: Vec<usize> = (0..17).map(|i| 1 + (i * 7) % 5).collect();
            let b = balanced_shards(&w, k).unwrap();
            let total: usize = w.iter().sum();
            let heaviest = *w.iter().max().unwrap();
            for r in 0..k {
                assert!(b[r] < b[r + 1], "{b:?}");
                let load: usize = w[b[r]..b[r + 1]].iter().sum();
                // Within one item of the even share.
                assert!(load.abs_diff(total / k) <= heaviest, "{k} {b:?}");
            }
        }
        assert!(balanced_shards(&[1, 1], 3).is_err());
        assert!(balanced_shards(&[1, 1], 0).is_err());
    }

    #[test]
    fn thread_ranks_sum_in_rank_order_and_agree() {
        let comms = ThreadComm::group(3);
        let out: Vec<(f64, Vec<f64>, String)> = std::thread::scope(|s| {
            let hs: Vec<_> = comms
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        let r = c.rank() as f64;
                        let total = c.sum_scalar([1e16, 1.0, -1e16][c.rank()]);
                        let g = c.all_gather(&[r, 10.0 + r]);
                        let e = c
                            .agree::<()>(if c.rank() == 2 {
                                Err(Error::param("p", 1, "bad"))
                            } else {
                                Ok(())
                            })
                            .unwrap_err()
                            .to_string();
                        (total, g, e)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (t, g, e) in &out {
            assert_eq!(*t, 0.0);
            assert_eq!(g, &vec![0.0, 10.0, 1.0, 11.0, 2.0, 12.0]);
            assert!(
                e.starts_with("rank 2 of 3 failed: invalid parameter p"),
                "{e}"
            );
        }
        assert_eq!(comms[0].stats().collectives, 3);
    }

    #[test]
    fn self_comm_is_the_identity() {
        let c = SelfComm::new();
        let mut b = vec![1.5, -2.0];
        c.sum(&mut b);
        assert_eq!(b, vec![1.5, -2.0]);
        assert_eq!(c.sum_scalar(3.25), 3.25);
        assert_eq!(c.agree(Ok(2)).unwrap(), 2);
        assert!(c.agree::<()>(Err(Error::param("a", 1, "b"))).is_err());
        assert_eq!((c.rank(), c.size()), (0, 1));
    }
}
