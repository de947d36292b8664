//! A backend made `factor` times slower, to emulate a weaker device (a Pi,
//! an old phone) on this machine: every run is followed by a sleep of
//! `(factor - 1) ×` its own duration, so a peer's measured profile and its
//! task times are those of the device it stands in for. Native only (the
//! browser cannot sleep).

use std::time::{Duration, Instant};

use tessera_graph::{Graph, Tensor};
use tessera_kernels::{Backend, Clock, Executable, KernelError, NodeTiming};

/// `inner`, `factor` times slower (`factor` ≥ 1).
pub struct Slowed {
    inner: Box<dyn Backend>,
    factor: f64,
}

impl Slowed {
    /// Wraps `inner`; `factor` below 1 counts as 1.
    pub fn new(inner: Box<dyn Backend>, factor: f64) -> Slowed {
        Slowed { inner, factor: if factor.is_finite() { factor.max(1.0) } else { 1.0 } }
    }
}

impl Backend for Slowed {
    fn name(&self) -> String {
        format!("{} slowed {:.1}x", self.inner.name(), self.factor)
    }

    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>, KernelError> {
        Ok(Box::new(SlowExe { inner: self.inner.compile(graph)?, factor: self.factor }))
    }

    fn take_notes(&self) -> Vec<String> {
        self.inner.take_notes()
    }
}

struct SlowExe {
    inner: Box<dyn Executable>,
    factor: f64,
}

impl SlowExe {
    fn pad(&self, since: Instant) {
        let extra = since.elapsed().as_secs_f64() * (self.factor - 1.0);
        if extra > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(extra));
        }
    }
}

impl Executable for SlowExe {
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, KernelError> {
        let t = Instant::now();
        let r = self.inner.run(inputs);
        self.pad(t);
        r
    }

    fn run_profiled(&mut self, inputs: &[Tensor], clock: Clock) -> Result<(Vec<Tensor>, Vec<NodeTiming>), KernelError> {
        let t = Instant::now();
        let r = self.inner.run_profiled(inputs, clock).map(|(o, mut ts)| {
            ts.iter_mut().for_each(|n| n.ms *= self.factor);
            (o, ts)
        });
        self.pad(t);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU backend, each run at least 2 ms long.
    struct Sleepy(tessera_kernels::CpuBackend);
    struct SleepyExe(Box<dyn Executable>);
    impl Backend for Sleepy {
        fn name(&self) -> String {
            "sleepy".into()
        }
        fn compile(&self, g: &Graph) -> Result<Box<dyn Executable>, KernelError> {
            Ok(Box::new(SleepyExe(self.0.compile(g)?)))
        }
    }
    impl Executable for SleepyExe {
        fn run(&mut self, x: &[Tensor]) -> Result<Vec<Tensor>, KernelError> {
            std::thread::sleep(Duration::from_millis(2));
            self.0.run(x)
        }
        fn run_profiled(&mut self, x: &[Tensor], c: Clock) -> Result<(Vec<Tensor>, Vec<NodeTiming>), KernelError> {
            self.0.run_profiled(x, c)
        }
    }

    #[test]
    fn runs_take_factor_times_as_long_and_give_the_same_outputs() {
        let g = tessera_graph::zoo::build("lenet").unwrap();
        let x = vec![Tensor::full(g.input_shape(), 0.3)];
        let mut fast = tessera_kernels::CpuBackend::new(1).compile(&g).unwrap();
        let slowed = Slowed::new(Box::new(Sleepy(tessera_kernels::CpuBackend::new(1))), 5.0);
        assert!(slowed.name().ends_with("slowed 5.0x"));
        let mut slow = slowed.compile(&g).unwrap();
        let t = Instant::now();
        let y = slow.run(&x).unwrap();
        // A run of at least 2 ms, padded to 5x: at least 10 ms, however busy the machine.
        assert!(t.elapsed() >= Duration::from_millis(10), "{:?}", t.elapsed());
        assert_eq!(y, fast.run(&x).unwrap());
    }
}
