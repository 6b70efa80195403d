//! `out += x w` for the linear layers of a forward pass over a short input, where gemm is
//! slow: `x` is `[rows, k]`, `w` is `[k, n]` (a linear layer's weight transposed, as
//! [`super::dense::Dense`] keeps it) and `out` is `[rows, n]`, all row-major.
//!
//! Why not gemm: gemm 0.19 has no AVX-512 kernel on stable Rust, and its AVX2 16 x 6
//! microkernel runs a 23-token MiniLM pass as two 16-row tiles (28% of it padding); at 2
//! threads its split barely kept the second core busy (18.7 ms of CPU for 16.8 ms of wall
//! at 19 tokens). Here the weight is read in place, `TILE_ROWS` rows by a few vectors of
//! columns at a time, and the columns are split into stripes across rayon's threads, so
//! every thread has work from the first product on.
//!
//! Rounding: every output is one chain of fused multiply-adds over `k` in order, started
//! from its value in `out` (`(((out + x0 w0) + x1 w1) + ...)`, each step rounded once).
//! How the work is tiled, split across threads or vectorised changes nothing of that, so
//! the AVX-512, AVX2 and portable copies give the same bits, on any number of threads
//! (tested). gemm sums in blocks instead, so its bits differ by a few ulp; which of the
//! two runs is decided by the shape alone ([`Dense`](super::dense::Dense)), never by the
//! thread count.

use rayon::prelude::*;

/// Which compiled copy of the kernel runs: the same code, vectorised for a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// 32 vector registers of 16 lanes: tiles of 6 rows x 64 columns.
    Avx512,
    /// 16 registers of 8 lanes (with FMA): tiles of 6 rows x 16 columns.
    Avx2,
    /// Whatever the compiler makes of the plain loops for the baseline target; on x86-64
    /// without FMA each multiply-add is a libm call, so it is never chosen there.
    Portable,
}

impl Level {
    /// The fastest level this CPU runs, or None where gemm beats every level (x86-64
    /// without AVX2 and FMA, and other architectures, where gemm has its own kernels).
    pub fn detect() -> Option<Level> {
        [Level::Avx512, Level::Avx2].into_iter().find(|level| level.runs())
    }

    /// Every level this CPU can run (the tests compare them).
    pub fn available() -> Vec<Level> {
        [Level::Portable, Level::Avx2, Level::Avx512].into_iter().filter(|level| level.runs()).collect()
    }

    /// Whether this CPU has the level's instructions.
    pub fn runs(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        let (avx512, avx2) = {
            let fma = std::arch::is_x86_feature_detected!("fma");
            (fma && std::arch::is_x86_feature_detected!("avx512f"), fma && std::arch::is_x86_feature_detected!("avx2"))
        };
        #[cfg(not(target_arch = "x86_64"))]
        let (avx512, avx2) = (false, false);
        match self {
            Level::Avx512 => avx512,
            Level::Avx2 => avx2,
            Level::Portable => true,
        }
    }
}

/// Rows of one register tile: 6 rows by [`Vector::WIDE`] vectors of accumulators, 24 of
/// AVX-512's 32 registers or 12 of AVX2's 16, leave room for the weight vectors and the
/// broadcast input (per step: WIDE loads and 6 broadcasts feed 6 x WIDE multiply-adds).
const TILE_ROWS: usize = 6;

/// Columns of one panel of a [`Packed`] weight, and of one task.
const PANEL: usize = 64;

/// Steps of `k` per pass over a task's rows: 384 rows of a panel (96 KiB) stay in L2 while
/// every row tile reads them, and the task's inputs over those steps beside them.
const DEPTH: usize = 384;

/// Rows of one task at most: enough to amortise handing a task to a thread, few enough
/// that a task's inputs over [`DEPTH`] steps (147 KiB) stay in L2 with the panel.
const ROW_BLOCK: usize = 96;

/// A `[k, n]` weight (a linear layer's, transposed) laid out for [`multiply_add`]: cut into
/// panels of [`PANEL`] columns (the last one narrower), each panel's `k` rows of `width`
/// floats one after another. A task then reads its panel as one stream, which the
/// prefetchers keep up with; read in place from `[k, n]`, every step of `k` was a new 4 KiB
/// page, and MiniLM's 42 MB of weights came from memory at a third of the kernel's speed.
pub struct Packed {
    k: usize,
    n: usize,
    values: Vec<f32>,
}

impl Packed {
    /// Pack `w`, `[k, n]` row-major.
    ///
    /// # Panics
    /// When `w` does not hold `k * n` values.
    pub fn new(w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "Packed::new: {} values are not [{k}, {n}]", w.len());
        let mut values = Vec::with_capacity(k * n);
        for start in (0..n).step_by(PANEL) {
            let end = (start + PANEL).min(n);
            for row in w.chunks_exact(n.max(1)) {
                values.extend_from_slice(&row[start..end]);
            }
        }
        Self { k, n, values }
    }

    /// Pack a linear layer's weight as it is stored, `[n, k]` row-major (outputs by inputs):
    /// the same panels as [`Packed::new`] of its transpose, without making the transpose.
    ///
    /// # Panics
    /// When `weight` does not hold `n * k` values.
    pub fn from_linear(weight: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(weight.len(), k * n, "Packed::from_linear: {} values are not [{n}, {k}]", weight.len());
        let mut values = vec![0f32; k * n];
        for start in (0..n).step_by(PANEL) {
            let width = PANEL.min(n - start);
            let panel = &mut values[start * k..(start + width) * k];
            // Each output's inputs are read in order and written down the panel's column,
            // `width` floats apart: the panel (at most 64 x k floats) stays in cache meanwhile.
            for (column, inputs) in weight[start * k..(start + width) * k].chunks_exact(k.max(1)).enumerate() {
                for (row, &value) in inputs.iter().enumerate() {
                    panel[row * width + column] = value;
                }
            }
        }
        Self { k, n, values }
    }

    /// The weight back as `[k, n]` row-major.
    pub fn unpack(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.k * self.n];
        for panel in 0..self.n.div_ceil(PANEL) {
            let (start, width, values) = self.panel(panel);
            for (row, values) in values.chunks_exact(width).enumerate() {
                w[row * self.n + start..row * self.n + start + width].copy_from_slice(values);
            }
        }
        w
    }

    /// Inputs (`k`) and outputs (`n`).
    pub fn dims(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// Panel `index`: its first column, its width and its `[k, width]` values.
    fn panel(&self, index: usize) -> (usize, usize, &[f32]) {
        let start = index * PANEL;
        let width = PANEL.min(self.n - start);
        (start, width, &self.values[start * self.k..(start + width) * self.k])
    }
}

/// `out[rows, n] += x[rows, k] w[k, n]`, on the fastest level this CPU has ([`Level::detect`]);
/// where it has none, through gemm ([`multiply_add_gemm`]).
pub fn multiply_add(rows: usize, x: &[f32], w: &Packed, out: &mut [f32]) {
    match Level::detect() {
        Some(level) => multiply_add_at(level, rows, x, w, out),
        None => multiply_add_gemm(rows, x, w, out),
    }
}

/// [`multiply_add`] through gemm, one panel per task on one thread each (so the bits do not
/// depend on the thread count here either): what a CPU without AVX2 and FMA runs.
pub fn multiply_add_gemm(rows: usize, x: &[f32], w: &Packed, out: &mut [f32]) {
    split(rows, x, w, out, |task| {
        // SAFETY: `split` hands each task a part of `out` that no other task touches, and
        // pointers and strides that describe [rows, depth] x [depth, cols] inside the slices.
        unsafe {
            gemm::gemm(
                task.rows,
                task.cols,
                task.depth,
                task.out,
                1,
                task.out_stride as isize,
                true,
                task.x,
                1,
                task.x_stride as isize,
                task.w,
                1,
                task.w_stride as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        }
    })
}

/// [`multiply_add`] at a given level (the tests run every level the CPU has).
///
/// # Panics
/// When `level` is one this CPU cannot run, or a slice's length does not fit.
pub fn multiply_add_at(level: Level, rows: usize, x: &[f32], w: &Packed, out: &mut [f32]) {
    assert!(level.runs(), "this CPU cannot run {level:?}");
    // SAFETY: the CPU runs `level` (checked above); `split` hands each task its own part of `out`.
    split(rows, x, w, out, |task| unsafe { run(level, task) });
}

/// `out[rows, cols] = x[rows, depth] w[depth, cols]`, or `+=` when `accumulate`, on this
/// thread: attention's products (scores q k^T and z = P v), which run one task per thread
/// already. Operands are given by their first value and the distance between their rows;
/// each row's values are contiguous. Without a kernel level, gemm computes it.
///
/// # Safety
/// `x` points at `rows` rows of `depth` readable floats, `x_stride` apart; `w` at `depth`
/// rows of `cols` readable floats, `w_stride` apart; `out` at `rows` rows of `cols` floats,
/// `out_stride` apart, that nothing else reads or writes meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn product_on_this_thread(rows: usize, cols: usize, depth: usize, x: *const f32, x_stride: usize, w: *const f32, w_stride: usize, out: *mut f32, out_stride: usize, accumulate: bool) {
    let Some(level) = Level::detect() else {
        // SAFETY: as the caller's.
        unsafe {
            gemm::gemm(rows, cols, depth, out, 1, out_stride as isize, accumulate, x, 1, x_stride as isize, w, 1, w_stride as isize, 1.0, 1.0, false, false, false, gemm::Parallelism::None)
        };
        return;
    };
    for start in (0..depth).step_by(DEPTH) {
        let fresh = start == 0 && !accumulate;
        let task = Task { rows, cols, depth: DEPTH.min(depth - start), x: x.wrapping_add(start), x_stride, w: w.wrapping_add(start * w_stride), w_stride, out, out_stride, fresh };
        // SAFETY: the CPU runs `level` (detected), and the task describes the caller's operands.
        unsafe { run(level, &task) };
    }
}

/// Cut the product into tasks, blocks of rows by panels of columns, and run them across
/// rayon's threads. The cut depends on the shape alone, never on the thread count.
fn split(rows: usize, x: &[f32], w: &Packed, out: &mut [f32], run: impl Fn(&Task) + Sync) {
    let (k, n) = w.dims();
    assert!(x.len() == rows * k && out.len() == rows * n, "multiply_add: slices do not fit [{rows}, {k}] x [{k}, {n}]");
    if rows == 0 || n == 0 {
        return;
    }
    let blocks = rows.div_ceil(ROW_BLOCK);
    let block_rows = rows.div_ceil(blocks).next_multiple_of(TILE_ROWS);
    let panels = n.div_ceil(PANEL);
    let (x, out) = (Shared(x.as_ptr() as *mut f32), Shared(out.as_mut_ptr()));
    (0..blocks * panels).into_par_iter().for_each(|index| {
        let (block, panel) = (index / panels, index % panels);
        let (col, cols, panel) = w.panel(panel);
        let row = block * block_rows;
        let task_rows = block_rows.min(rows - row);
        if task_rows == 0 {
            return;
        }
        for start in (0..k).step_by(DEPTH) {
            // SAFETY: rows row..row + task_rows of x ([rows, k]) and of out ([rows, n]), and
            // rows start.. of the panel ([k, cols]), are inside their slices.
            let task = unsafe {
                Task {
                    rows: task_rows,
                    cols,
                    depth: DEPTH.min(k - start),
                    x: x.at(row * k + start),
                    x_stride: k,
                    w: panel.as_ptr().add(start * cols),
                    w_stride: cols,
                    out: out.at(row * n + col),
                    out_stride: n,
                    fresh: false,
                }
            };
            run(&task);
        }
    });
}

/// A pointer that parallel tasks share: each reads what it likes and writes only a part no
/// other task touches (here `split`'s tasks read `x` and write disjoint parts of `out`;
/// `kernels::attention_block`'s write their own rows of the pattern and of z).
#[derive(Clone, Copy)]
pub(super) struct Shared(pub(super) *mut f32);

// SAFETY: every user hands each task a part of the buffer that no other task writes, and
// only reads the rest.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// # Safety
    /// `offset` is inside the slice the pointer came from.
    pub(super) unsafe fn at(self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset) }
    }
}

/// One task's share: `out[rows, cols] += x[rows, depth] w[depth, cols]`, each a pointer
/// to its first value and the distance between its rows.
struct Task {
    rows: usize,
    cols: usize,
    depth: usize,
    x: *const f32,
    x_stride: usize,
    w: *const f32,
    w_stride: usize,
    out: *mut f32,
    out_stride: usize,
    /// Start from 0 instead of what `out` holds (which is then never read).
    fresh: bool,
}

/// # Safety
/// The task's pointers and strides describe memory it may read (and write, for `out`), and
/// `level` is one the CPU runs.
unsafe fn run(level: Level, task: &Task) {
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { block_avx512(task) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { block_avx2(task) },
        _ => unsafe { block::<Scalar>(task) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn block_avx512(task: &Task) {
    unsafe { block::<x86::Zmm>(task) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(task: &Task) {
    unsafe { block::<x86::Ymm>(task) }
}

/// One register of `LANES` floats, as the tile needs it. Every method is `inline(always)`,
/// so each level's copy of the tile is compiled with that level's target features.
trait Vector: Copy {
    const LANES: usize;
    /// Vectors across a register tile: 4 or 2 (as many as the registers hold).
    const WIDE: usize;
    /// # Safety
    /// `LANES` floats at `at` can be read.
    unsafe fn load(at: *const f32) -> Self;
    /// # Safety
    /// `LANES` floats at `at` can be written.
    unsafe fn store(self, at: *mut f32);
    /// # Safety
    /// One float at `at` can be read.
    unsafe fn splat(at: *const f32) -> Self;
    /// Every lane +0.
    ///
    /// # Safety
    /// The CPU runs the vector's instructions (as for every method here).
    unsafe fn zero() -> Self;
    /// `self * b + c`, rounded once per lane.
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
}

/// One float: the portable level, and every level's last columns.
#[derive(Clone, Copy)]
struct Scalar(f32);

impl Vector for Scalar {
    const LANES: usize = 1;
    const WIDE: usize = 2;
    #[inline(always)]
    unsafe fn load(at: *const f32) -> Self {
        Scalar(unsafe { *at })
    }
    #[inline(always)]
    unsafe fn store(self, at: *mut f32) {
        unsafe { *at = self.0 }
    }
    #[inline(always)]
    unsafe fn splat(at: *const f32) -> Self {
        Scalar(unsafe { *at })
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        Scalar(0.0)
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        Scalar(self.0.mul_add(b.0, c.0))
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Vector;
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub(super) struct Zmm(__m512);

    impl Vector for Zmm {
        const LANES: usize = 16;
        const WIDE: usize = 4;
        #[inline(always)]
        unsafe fn load(at: *const f32) -> Self {
            Zmm(unsafe { _mm512_loadu_ps(at) })
        }
        #[inline(always)]
        unsafe fn store(self, at: *mut f32) {
            unsafe { _mm512_storeu_ps(at, self.0) }
        }
        #[inline(always)]
        unsafe fn splat(at: *const f32) -> Self {
            Zmm(unsafe { _mm512_set1_ps(*at) })
        }
        #[inline(always)]
        unsafe fn zero() -> Self {
            Zmm(unsafe { _mm512_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn mul_add(self, b: Self, c: Self) -> Self {
            Zmm(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
        }
    }

    #[derive(Clone, Copy)]
    pub(super) struct Ymm(__m256);

    impl Vector for Ymm {
        const LANES: usize = 8;
        const WIDE: usize = 2;
        #[inline(always)]
        unsafe fn load(at: *const f32) -> Self {
            Ymm(unsafe { _mm256_loadu_ps(at) })
        }
        #[inline(always)]
        unsafe fn store(self, at: *mut f32) {
            unsafe { _mm256_storeu_ps(at, self.0) }
        }
        #[inline(always)]
        unsafe fn splat(at: *const f32) -> Self {
            Ymm(unsafe { _mm256_set1_ps(*at) })
        }
        #[inline(always)]
        unsafe fn zero() -> Self {
            Ymm(unsafe { _mm256_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn mul_add(self, b: Self, c: Self) -> Self {
            Ymm(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
        }
    }
}

/// One task in register tiles: the columns that fill whole tiles of `WIDE` vectors in tiles of
/// `TILE_ROWS` rows; the rest (a head's 32 values of z, say) in tiles of twice the rows by
/// half the vectors, which still hold as many accumulators per weight loaded, then single
/// vectors, then single columns. The last tile of rows is shorter.
///
/// # Safety
/// As [`run`].
#[inline(always)]
unsafe fn block<V: Vector>(task: &Task) {
    let wide = V::WIDE * V::LANES;
    let whole = task.cols - task.cols % wide;
    // SAFETY (every loop): the tile's rows and columns lie inside the task's.
    for row in (0..task.rows).step_by(TILE_ROWS) {
        let height = TILE_ROWS.min(task.rows - row);
        for col in (0..whole).step_by(wide) {
            // (A const generic cannot be V::WIDE itself; the other arm compiles away.)
            match V::WIDE {
                4 => unsafe { tile_rows::<V, 4, false>(task, height, row, col) },
                _ => unsafe { tile_rows::<V, 2, false>(task, height, row, col) },
            }
        }
    }
    let tall = 2 * TILE_ROWS;
    let half = V::WIDE / 2 * V::LANES;
    let mut col = whole;
    while col + half <= task.cols {
        for row in (0..task.rows).step_by(tall) {
            match V::WIDE / 2 {
                2 => unsafe { tile_rows::<V, 2, true>(task, tall.min(task.rows - row), row, col) },
                _ => unsafe { tile_rows::<V, 1, true>(task, tall.min(task.rows - row), row, col) },
            }
        }
        col += half;
    }
    while col + V::LANES <= task.cols {
        for row in (0..task.rows).step_by(tall) {
            unsafe { tile_rows::<V, 1, true>(task, tall.min(task.rows - row), row, col) };
        }
        col += V::LANES;
    }
    while col < task.cols {
        for row in (0..task.rows).step_by(tall) {
            unsafe { tile_rows::<Scalar, 1, true>(task, tall.min(task.rows - row), row, col) };
        }
        col += 1;
    }
}

/// A tile of `height` rows by `VECTORS` vectors at (`row`, `col`) of the task: at most
/// `TILE_ROWS` rows, or twice that when `TALL` (the arms past it compile away otherwise).
///
/// # Safety
/// The tile lies inside the task.
#[inline(always)]
unsafe fn tile_rows<V: Vector, const VECTORS: usize, const TALL: bool>(task: &Task, height: usize, row: usize, col: usize) {
    // SAFETY: as the caller's; each arm reads and writes only the tile's `height` rows.
    unsafe {
        match height {
            12 if TALL => tile::<V, 12, VECTORS>(task, row, col),
            11 if TALL => tile::<V, 11, VECTORS>(task, row, col),
            10 if TALL => tile::<V, 10, VECTORS>(task, row, col),
            9 if TALL => tile::<V, 9, VECTORS>(task, row, col),
            8 if TALL => tile::<V, 8, VECTORS>(task, row, col),
            7 if TALL => tile::<V, 7, VECTORS>(task, row, col),
            6 => tile::<V, 6, VECTORS>(task, row, col),
            5 => tile::<V, 5, VECTORS>(task, row, col),
            4 => tile::<V, 4, VECTORS>(task, row, col),
            3 => tile::<V, 3, VECTORS>(task, row, col),
            2 => tile::<V, 2, VECTORS>(task, row, col),
            _ => tile::<V, 1, VECTORS>(task, row, col),
        }
    }
}

/// The register tile: `ROWS x VECTORS` accumulators, loaded from `out`, one fused
/// multiply-add per weight vector and row for each step of the task's depth, stored back.
///
/// # Safety
/// The tile lies inside the task.
#[inline(always)]
unsafe fn tile<V: Vector, const ROWS: usize, const VECTORS: usize>(task: &Task, row: usize, col: usize) {
    // SAFETY: the tile's rows and columns are inside the task's, whose pointers and strides
    // describe memory it may read and write.
    unsafe {
        let out = task.out.add(row * task.out_stride + col);
        let mut acc: [[V; VECTORS]; ROWS] = match task.fresh {
            true => [[V::zero(); VECTORS]; ROWS],
            false => std::array::from_fn(|r| std::array::from_fn(|v| V::load(out.add(r * task.out_stride + v * V::LANES)))),
        };
        let mut x = task.x.add(row * task.x_stride);
        let mut w = task.w.add(col);
        for _ in 0..task.depth {
            let weights: [V; VECTORS] = std::array::from_fn(|v| V::load(w.add(v * V::LANES)));
            for (r, acc) in acc.iter_mut().enumerate() {
                let input = V::splat(x.add(r * task.x_stride));
                for (acc, &weight) in acc.iter_mut().zip(&weights) {
                    *acc = input.mul_add(weight, *acc);
                }
            }
            x = x.add(1);
            w = w.add(task.w_stride);
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, acc) in acc.iter().enumerate() {
                acc.store(out.add(r * task.out_stride + v * V::LANES));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed pseudo-random values in [-1, 1] (a hash, no RNG crate).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        (0..len as u64).map(|i| (((i + 1) * 2654435761 + seed * 40503) % 1_000_003) as f32 / 500_000.0 - 1.0).collect()
    }

    /// Shapes around every edge of the tiling: one row, a part tile, several tiles and a
    /// second block of rows (129 > ROW_BLOCK); depths of one step, a few and past DEPTH;
    /// widths below one vector, between vectors, and over one panel with a narrow last one.
    const SHAPES: [(usize, usize, usize); 8] = [(1, 1, 1), (1, 37, 17), (7, 5, 70), (23, 400, 100), (23, 384, 64), (129, 37, 130), (6, 770, 33), (129, 5, 7)];

    /// The product in f64, and for each output the bound on a chain of `k` roundings
    /// started from `out`: |error| <= gamma_{k+1} (|out| + sum |x w|), gamma_m = m u / (1 - m u)
    /// with u = 2^-24 (Higham, Accuracy and Stability of Numerical Algorithms, 3.1). gemm
    /// sums in blocks and pairs, which that bound also covers.
    fn reference(rows: usize, k: usize, n: usize, x: &[f32], w: &[f32], out: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let u = f64::powi(2.0, -24);
        let gamma = (k + 1) as f64 * u / (1.0 - (k + 1) as f64 * u);
        let mut exact = vec![0f64; rows * n];
        let mut bound = vec![0f64; rows * n];
        for r in 0..rows {
            for c in 0..n {
                let (mut sum, mut magnitude) = (out[r * n + c] as f64, (out[r * n + c] as f64).abs());
                for i in 0..k {
                    let term = x[r * k + i] as f64 * w[i * n + c] as f64;
                    sum += term;
                    magnitude += term.abs();
                }
                exact[r * n + c] = sum;
                bound[r * n + c] = gamma * magnitude;
            }
        }
        (exact, bound)
    }

    fn operands(rows: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        (values(rows * k, 1), values(k * n, 2), values(rows * n, 3))
    }

    /// Packing and unpacking give the weight back; packing a linear layer's `[n, k]` weight
    /// gives the panels of its transpose.
    #[test]
    fn packing_round_trips() {
        for (_, k, n) in SHAPES {
            let w = values(k * n, 4);
            let packed = Packed::new(&w, k, n);
            assert_eq!(packed.dims(), (k, n));
            assert!(packed.unpack() == w, "[{k}, {n}] does not unpack to itself");
            let linear: Vec<f32> = (0..n).flat_map(|output| (0..k).map(|input| w[input * n + output]).collect::<Vec<_>>()).collect();
            assert!(Packed::from_linear(&linear, k, n).values == packed.values, "[{n}, {k}] packs otherwise than its transpose");
        }
    }

    /// Every level the CPU runs, and the gemm fallback, against the product in f64 within
    /// the rounding bound of its sum.
    #[test]
    fn every_level_matches_the_f64_product() {
        for (rows, k, n) in SHAPES {
            let (x, w, start) = operands(rows, k, n);
            let (exact, bound) = reference(rows, k, n, &x, &w, &start);
            let packed = Packed::new(&w, k, n);
            let mut runs: Vec<(String, Vec<f32>)> = Level::available()
                .into_iter()
                .map(|level| {
                    let mut out = start.clone();
                    multiply_add_at(level, rows, &x, &packed, &mut out);
                    (format!("{level:?}"), out)
                })
                .collect();
            let mut out = start.clone();
            multiply_add_gemm(rows, &x, &packed, &mut out);
            runs.push(("gemm".into(), out));
            for (name, out) in runs {
                for (index, &value) in out.iter().enumerate() {
                    let error = (value as f64 - exact[index]).abs();
                    assert!(error <= bound[index], "{name}, [{rows}, {k}] x [{k}, {n}], output {index}: {value} against {} (bound {})", exact[index], bound[index]);
                }
            }
        }
    }

    /// Each output is the same chain of fused multiply-adds on every level: the AVX-512
    /// and AVX2 copies give the portable one's bits exactly.
    #[test]
    fn levels_give_the_same_bits() {
        for (rows, k, n) in SHAPES {
            let (x, w, start) = operands(rows, k, n);
            let packed = Packed::new(&w, k, n);
            let mut portable = start.clone();
            multiply_add_at(Level::Portable, rows, &x, &packed, &mut portable);
            for level in Level::available() {
                let mut out = start.clone();
                multiply_add_at(level, rows, &x, &packed, &mut out);
                assert!(out == portable, "{level:?} differs from the portable copy on [{rows}, {k}] x [{k}, {n}]");
            }
        }
    }

    /// The single-threaded product attention uses, on strided rows (row strides wider than
    /// the rows) and past one block of DEPTH: within the rounding bound of the f64 product,
    /// and, started from zeros, the bits of `multiply_add` started from zeros.
    #[test]
    fn strided_product_matches_the_f64_product() {
        for (rows, k, n) in SHAPES {
            let (x, w, _) = operands(rows, k, n);
            let zeros = vec![0f32; rows * n];
            let (exact, bound) = reference(rows, k, n, &x, &w, &zeros);
            // The same operands with 3 unused values after each row.
            let pad = |values: &[f32], width: usize| -> Vec<f32> { values.chunks_exact(width.max(1)).flat_map(|row| row.iter().copied().chain([9.0; 3])).collect() };
            let (x_wide, w_wide) = (pad(&x, k), pad(&w, n));
            for accumulate in [false, true] {
                let mut out = vec![f32::NAN; rows * (n + 3)];
                if accumulate {
                    out.iter_mut().for_each(|v| *v = 0.0);
                }
                // SAFETY: every pointer and stride describes the padded vectors above.
                unsafe { product_on_this_thread(rows, n, k, x_wide.as_ptr(), k + 3, w_wide.as_ptr(), n + 3, out.as_mut_ptr(), n + 3, accumulate) };
                let out: Vec<f32> = out.chunks_exact(n + 3).flat_map(|row| row[..n].to_vec()).collect();
                for (index, &value) in out.iter().enumerate() {
                    let error = (value as f64 - exact[index]).abs();
                    assert!(error <= bound[index], "[{rows}, {k}] x [{k}, {n}], accumulate {accumulate}, output {index}: {value} against {}", exact[index]);
                }
                let mut whole = zeros.clone();
                multiply_add(rows, &x, &Packed::new(&w, k, n), &mut whole);
                assert!(out == whole, "[{rows}, {k}] x [{k}, {n}], accumulate {accumulate}: differs from multiply_add");
            }
        }
    }

    /// Tasks split outputs, never a sum: any pool size gives the same bits, on every level.
    #[test]
    fn bits_do_not_depend_on_the_thread_count() {
        let (rows, k, n) = (129, 400, 130);
        let (x, w, start) = operands(rows, k, n);
        let packed = Packed::new(&w, k, n);
        let on = |threads: usize, level: Option<Level>| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut out = start.clone();
            pool.install(|| match level {
                Some(level) => multiply_add_at(level, rows, &x, &packed, &mut out),
                None => multiply_add_gemm(rows, &x, &packed, &mut out),
            });
            out
        };
        for level in Level::available().into_iter().map(Some).chain([None]) {
            let one = on(1, level);
            for threads in [2, 3] {
                assert!(on(threads, level) == one, "{level:?}: {threads} threads differ from 1");
            }
        }
    }
}
