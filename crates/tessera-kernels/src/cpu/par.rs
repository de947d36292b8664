//! Where the CPU backend's parallelism comes from: a private rayon pool
//! natively, plain sequential loops on wasm32 (no threads in the browser
//! peer). Kernels only ever ask for "run `f(0..n)`, possibly in parallel", so
//! they compile unchanged for both targets.

/// A task runner with a fixed number of threads.
pub(crate) struct Par {
    threads: usize,
    #[cfg(not(target_arch = "wasm32"))]
    pool: Option<rayon::ThreadPool>,
}

impl Par {
    /// A runner with `threads` (>= 1) threads; a single thread needs no pool.
    pub(crate) fn new(threads: usize) -> Result<Par, String> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let threads = threads.max(1);
            let pool = if threads > 1 {
                Some(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .thread_name(|i| format!("tessera-cpu-{i}"))
                        .build()
                        .map_err(|e| format!("cannot start {threads} threads: {e}"))?,
                )
            } else {
                None
            };
            Ok(Par { threads, pool })
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = threads;
            Ok(Par { threads: 1 })
        }
    }

    /// Number of threads tasks are spread over.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(i)` for every `i` in `0..n`, spread over the pool's threads.
    /// Each call must touch disjoint output; `f` may run on any thread.
    pub(crate) fn for_each(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(pool) = &self.pool
            && n > 1
        {
            use rayon::prelude::*;
            pool.install(|| (0..n).into_par_iter().with_max_len(1).for_each(f));
            return;
        }
        (0..n).for_each(f);
    }
}

/// A raw pointer that tasks on other threads may write through, each to its
/// own disjoint part of the buffer.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);
// SAFETY: only used to hand disjoint output regions to parallel tasks whose
// lifetimes are bounded by the `Par::for_each` call that owns the buffer.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    #[inline(always)]
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Splits `0..n` into `parts` contiguous ranges whose starts are multiples of
/// `align` (except for the end), as even as the alignment allows.
pub(crate) fn split_range(n: usize, parts: usize, align: usize) -> Vec<(usize, usize)> {
    let align = align.max(1);
    let units = n.div_ceil(align);
    let parts = parts.clamp(1, units.max(1));
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 0..parts {
        let end_units = units * (p + 1) / parts;
        let end = (end_units * align).min(n);
        if end > start {
            out.push((start, end));
        }
        start = end;
    }
    if out.is_empty() {
        out.push((0, n));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_range_covers_everything_aligned() {
        for n in [0usize, 1, 7, 48, 49, 100, 1000] {
            for parts in 1..5 {
                for align in [1usize, 8, 48] {
                    let r = split_range(n, parts, align);
                    assert_eq!(r.first().unwrap().0, 0);
                    assert_eq!(r.last().unwrap().1, n);
                    for w in r.windows(2) {
                        assert_eq!(w[0].1, w[1].0);
                        assert_eq!(w[1].0 % align, 0);
                    }
                }
            }
        }
    }
}
