//! The backend abstraction: compile a graph once (pack weights, plan
//! buffers, build pipelines), then run it many times.

use std::future::Future;
use std::pin::Pin;

use tessera_graph::{Graph, GraphError, NodeId, Tensor};
use thiserror::Error;

/// Why a backend could not compile or run a graph.
#[derive(Debug, Error)]
pub enum KernelError {
    /// The graph or the inputs are invalid.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// The backend cannot run this op / configuration.
    #[error("{backend} backend: node '{node}' ({op}): {msg}")]
    Unsupported {
        /// Which backend refused ("cpu", "gpu").
        backend: String,
        /// The node's name in the graph.
        node: String,
        /// The node's op name.
        op: String,
        /// What is not supported.
        msg: String,
    },
    /// The device failed (lost GPU, out of memory, ...).
    #[error("{backend} backend: {msg}")]
    Device {
        /// Which backend failed.
        backend: String,
        /// What happened.
        msg: String,
    },
}

/// A monotonic clock in milliseconds, injected so that the same code times
/// itself natively (`Instant`) and in the browser (`performance.now()`).
pub type Clock<'a> = &'a dyn Fn() -> f64;

/// Time spent in one node during a profiled run.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeTiming {
    /// The node timed. A backend that fuses several nodes into one step
    /// reports the step once, under its main node (the CPU backend: the
    /// conv that absorbed a residual `Add` and activation).
    pub node: NodeId,
    /// Milliseconds on the injected clock.
    pub ms: f64,
}

/// The outputs of a run that may complete later ([`Executable::run_async`]).
pub type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Tensor>, KernelError>> + 'a>>;

/// A compute backend (CPU, GPU).
pub trait Backend {
    /// Human-readable name with the details that matter ("cpu avx512 x1").
    fn name(&self) -> String;
    /// Prepares `graph` for repeated execution.
    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>, KernelError>;
    /// What changed underneath since the last call, one line each (a GPU
    /// lost and replaced by the CPU), for the peer to report to its
    /// coordinator; drained by the call. Most backends never change.
    fn take_notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A graph compiled for one backend.
pub trait Executable {
    /// Runs the graph on `inputs` (in graph-input order) and returns the
    /// graph outputs in order.
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, KernelError>;
    /// Like `run`, also timing every node with `clock`.
    fn run_profiled(&mut self, inputs: &[Tensor], clock: Clock) -> Result<(Vec<Tensor>, Vec<NodeTiming>), KernelError>;
    /// Like `run`, for drivers that must not block: the browser's WebGPU
    /// can only hand results back through the event loop. The default runs
    /// synchronously and returns a future that is already complete.
    fn run_async<'a>(&'a mut self, inputs: &'a [Tensor]) -> RunFuture<'a> {
        Box::pin(std::future::ready(self.run(inputs)))
    }
}

/// Polls `fut` once and returns its output if it is already complete: how
/// synchronous callers drive a [`RunFuture`] or other code written once,
/// async, for both kinds of backend. `None` means the future waits on an
/// event loop (browser WebGPU) that only an async caller can provide.
pub fn ready_now<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}
