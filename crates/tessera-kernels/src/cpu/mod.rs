//! CPU backend (being written).
pub struct CpuBackend;
