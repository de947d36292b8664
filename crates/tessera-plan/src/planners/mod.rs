//! Planners: from a graph and a cluster to a plan. Every planner of the seed
//! papers, their baselines, and Tessera's own, selectable by name.

mod common;
mod distredge;
mod dpm;
mod hadidi;
pub mod ftp;
mod hyps;
mod linear;
pub mod models;
mod single;
mod tessera;

use tessera_graph::Graph;

use crate::device::Cluster;
use crate::error::{PlanError, Result};
use crate::plan::Plan;
use crate::sim::SimConfig;

pub use common::{evaluate, Evaluation};

/// FTP depth of seed 003 / DeepThings for a model: `(units in the fused
/// tile volume, ..)` (exposed for the seed reproductions).
pub fn ftp_info(g: &tessera_graph::Graph, us: &[crate::units::Unit]) -> (usize,) {
    let info = common::unit_infos(g, us);
    (ftp::ftp_depth(g, us, &info),)
}

/// Seed 003's communication C over units `[from, ..)` on `n` devices, with
/// or without fused pairs: the per-unit schemes and C (elements).
pub fn deeperthings_c(g: &tessera_graph::Graph, us: &[crate::units::Unit], from: usize, n: usize, fuse: bool) -> (Vec<ftp::Scheme>, f64) {
    ftp::deeperthings_schemes(g, us, from, n, fuse)
}

/// What a planner is asked.
pub struct Request<'a> {
    /// Model name (for the plan record).
    pub model: &'a str,
    /// The optimised graph (BN folded, activations fused).
    pub graph: &'a Graph,
    pub cluster: &'a Cluster,
    /// How frames are streamed (planners that simulate use it).
    pub sim: SimConfig,
    /// Seed for planners with randomness (LC-PSS, DDPG).
    pub seed: u64,
    /// `key=value` options (e.g. `episodes=4000` for distredge).
    pub options: &'a [(String, String)],
}

impl Request<'_> {
    /// Numeric option `key`, or `default`.
    pub fn option(&self, key: &str, default: f64) -> Result<f64> {
        match self.options.iter().find(|(k, _)| k == key) {
            None => Ok(default),
            Some((_, v)) => v.parse().map_err(|_| PlanError::Invalid(format!("option {key}={v} is not a number"))),
        }
    }
}

/// A planning method.
pub trait Planner {
    /// The name it is selected by.
    fn name(&self) -> &'static str;
    /// One line on what it does and where it comes from.
    fn about(&self) -> &'static str;
    /// Plans the request's graph on its cluster.
    fn plan(&self, req: &Request) -> Result<Plan>;
}

/// Every planner, in the order tables list them.
pub fn all() -> Vec<Box<dyn Planner>> {
    vec![
        Box::new(single::Single),
        Box::new(single::Offload),
        Box::new(dpm::Dpm),
        Box::new(hadidi::Hadidi),
        Box::new(hyps::Hyps),
        Box::new(linear::Modnn),
        Box::new(linear::CoEdge),
        Box::new(linear::Aofl),
        Box::new(ftp::DeepThings),
        Box::new(ftp::DeeperThings),
        Box::new(distredge::DistrEdge),
        Box::new(tessera::Tessera),
    ]
}

/// Names of all planners.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|p| p.name()).collect()
}

/// The planner called `name`.
pub fn by_name(name: &str) -> Result<Box<dyn Planner>> {
    all().into_iter().find(|p| p.name() == name).ok_or_else(|| PlanError::Unknown { kind: "planner", name: name.into(), known: names().join(", ") })
}

/// Parses `name[:k=v,k=v]`.
pub fn parse_spec(spec: &str) -> Result<(String, Vec<(String, String)>)> {
    let (name, opts) = spec.split_once(':').unwrap_or((spec, ""));
    let mut out = Vec::new();
    for kv in opts.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| PlanError::Invalid(format!("planner option '{kv}' is not key=value")))?;
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok((name.trim().to_string(), out))
}
