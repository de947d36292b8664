//! The mesh's error types: what can go wrong on the wire (a frame or a
//! message that cannot be accepted) and above it (a plan that cannot be
//! built or loaded, a frame that cannot be submitted).

use thiserror::Error;

/// Why a frame or message from the wire was rejected. Every variant maps to
/// an [`ErrorCode`] so that the sender gets an Error frame back, never a
/// silent drop or a crash.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum WireError {
    /// The first four bytes are not the protocol magic: not a Tessera frame.
    #[error("not a tessera frame (bad magic)")]
    BadMagic,
    /// The frame ends before its header or declared payload does.
    #[error("truncated frame: {got} bytes, {need} needed")]
    Truncated { need: usize, got: usize },
    /// A wire version this side does not speak.
    #[error("wire protocol version {got} is not supported (this side speaks version {ours})")]
    Version { got: u8, ours: u8 },
    /// A message kind this side does not know.
    #[error("unknown message kind {kind} (message {id})")]
    UnknownKind { kind: u8, id: u32 },
    /// The header's payload length disagrees with the frame's size.
    #[error("frame declares {declared} payload bytes but carries {actual}")]
    Length { declared: usize, actual: usize },
    /// A chunk that does not continue its message (index, count, sizes).
    #[error("message {id}: {msg}")]
    BadChunk { id: u32, msg: String },
    /// A frame above the hard frame-size cap.
    #[error("frame of {bytes} bytes exceeds the {limit}-byte frame limit")]
    TooLarge { bytes: usize, limit: usize },
    /// A message above the receiver's per-message cap.
    #[error("message {id} of {bytes} bytes exceeds the {limit}-byte message limit")]
    MessageTooLarge { id: u32, bytes: usize, limit: usize },
    /// Too many messages partly received at once, or too many bytes held.
    #[error("too many partial messages or bytes buffered ({msg})")]
    Overloaded { msg: String },
    /// A complete message whose payload does not decode.
    #[error("bad {kind} message: {msg}")]
    Payload { kind: &'static str, msg: String },
}

impl WireError {
    /// The code sent back in the Error frame.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::BadMagic | WireError::Truncated { .. } | WireError::Length { .. } | WireError::BadChunk { .. } => ErrorCode::BAD_FRAME,
            WireError::Version { .. } => ErrorCode::VERSION,
            WireError::UnknownKind { .. } => ErrorCode::UNKNOWN_KIND,
            WireError::TooLarge { .. } | WireError::MessageTooLarge { .. } => ErrorCode::TOO_LARGE,
            WireError::Overloaded { .. } => ErrorCode::OVERLOADED,
            WireError::Payload { .. } => ErrorCode::BAD_MESSAGE,
        }
    }

    /// The id of the offending message, where the header could be read.
    pub fn message_id(&self) -> u32 {
        match self {
            WireError::UnknownKind { id, .. } | WireError::BadChunk { id, .. } | WireError::MessageTooLarge { id, .. } => *id,
            _ => 0,
        }
    }
}

/// Numeric error codes carried by Error frames (open-ended: a newer peer may
/// send codes this side does not name; they are shown as numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// Malformed frame (magic, header, chunk sequence).
    pub const BAD_FRAME: ErrorCode = ErrorCode(1);
    /// Unsupported wire version; the connection is closed after this.
    pub const VERSION: ErrorCode = ErrorCode(2);
    /// Unknown message kind.
    pub const UNKNOWN_KIND: ErrorCode = ErrorCode(3);
    /// Frame or message above the size limits.
    pub const TOO_LARGE: ErrorCode = ErrorCode(4);
    /// A complete message whose payload does not decode.
    pub const BAD_MESSAGE: ErrorCode = ErrorCode(5);
    /// A valid message that makes no sense in the receiver's state.
    pub const UNEXPECTED: ErrorCode = ErrorCode(6);
    /// A plan could not be loaded (ONNX import, compile, metadata).
    pub const LOAD_FAILED: ErrorCode = ErrorCode(7);
    /// A task could not be run.
    pub const TASK_FAILED: ErrorCode = ErrorCode(8);
    /// Too many partial messages or buffered bytes.
    pub const OVERLOADED: ErrorCode = ErrorCode(9);
    /// A bug on the sending side.
    pub const INTERNAL: ErrorCode = ErrorCode(10);
    /// A plan referred to weights the peer no longer holds: send them.
    pub const MISSING_WEIGHTS: ErrorCode = ErrorCode(11);

    /// Short name for logs and dashboards.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "bad-frame",
            2 => "version",
            3 => "unknown-kind",
            4 => "too-large",
            5 => "bad-message",
            6 => "unexpected",
            7 => "load-failed",
            8 => "task-failed",
            9 => "overloaded",
            10 => "internal",
            11 => "missing-weights",
            _ => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// Errors of the mesh's public API (submitting frames, building and loading
/// plans).
#[derive(Debug, Error)]
pub enum MeshError {
    /// A frame or message was rejected.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The runtime could not build or run a program.
    #[error(transparent)]
    Runtime(#[from] tessera_runtime::RuntimeError),
    /// No plan, an unknown planner or profile, an invalid plan.
    #[error(transparent)]
    Plan(#[from] tessera_plan::PlanError),
    /// Bad inputs for the model.
    #[error(transparent)]
    Graph(#[from] tessera_graph::GraphError),
    /// A backend could not compile a task.
    #[error(transparent)]
    Kernel(#[from] tessera_kernels::KernelError),
    /// A task's ONNX sub-graph did not import.
    #[error("onnx: {0}")]
    Onnx(#[from] tessera_onnx::OnnxError),
    /// A plan or task description that does not fit together.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias for the mesh.
pub type Result<T> = std::result::Result<T, MeshError>;
