//! Tessera's planning layer: how a CNN is cut into stages and split across
//! heterogeneous devices, what each part costs, and which plan is best.
//!
//! graph → **plan** → tasks → wire → kernels → merge. Everything here is
//! pure computation (no threads, no clocks, no I/O except reading profile
//! files), so the coordinator page runs the same planners in the browser.

pub mod cluster;
pub mod device;
pub mod error;
pub mod estimate;
pub mod plan;
pub mod planners;
pub mod profiles;
pub mod random;
pub mod region;
pub mod reuse;
pub mod scenarios;
pub mod sim;
pub mod split;
pub mod tasks;
pub mod units;
pub mod volume;

pub use device::{Cluster, Device, DeviceProfile, Link, OpClass};
pub use error::{PlanError, Result};
pub use plan::{PartSpec, Plan, Split, SplitKind, Stage};
