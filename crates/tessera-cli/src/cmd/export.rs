//! `tessera export MODEL OUT.onnx`: the zoo as ONNX, for onnxruntime checks.

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// Zoo name or path to an .onnx file.
    model: String,
    /// Output .onnx path.
    output: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let g = crate::model::load(&a.model)?;
    crate::files::write_atomic(&a.output, &tessera_onnx::export(&g))
}
