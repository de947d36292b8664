//! Resolving a `MODEL` argument: a zoo name or a path to an `.onnx` file.

use std::path::Path;

use anyhow::{bail, Context, Result};
use tessera_graph::{passes, zoo, Graph};

/// Loads `spec` as declared (BatchNorm and activations still separate).
pub fn load(spec: &str) -> Result<Graph> {
    let looks_like_file = spec.ends_with(".onnx") || spec.contains('/') || spec.contains('\\');
    if looks_like_file {
        let path = Path::new(spec);
        if !path.exists() {
            bail!("model file {spec} does not exist");
        }
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {spec}"))?;
        return tessera_onnx::import_owned(bytes, &Default::default()).with_context(|| format!("cannot import {spec}"));
    }
    Ok(zoo::build(spec)?)
}

/// The optimised graph for planning and costing only: zoo models are built
/// without generating weights (same architecture, same costs).
pub fn load_for_planning(spec: &str) -> Result<Graph> {
    if zoo::MODELS.iter().any(|m| m.name == spec) {
        return Ok(passes::optimize(&zoo::build_shapes(spec)?)?);
    }
    load_optimized(spec)
}

/// Loads `spec` and applies the load-time optimisations (BN folding,
/// activation fusion): the graph every executor runs.
pub fn load_optimized(spec: &str) -> Result<Graph> {
    let g = load(spec)?;
    Ok(passes::optimize(&g)?)
}
