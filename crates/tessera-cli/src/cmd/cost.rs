//! `tessera cost MODEL [--json] [--optimized]`.

use anyhow::Result;
use tessera_graph::cost_table;

#[derive(clap::Args)]
pub struct Args {
    /// Zoo name or path to an .onnx file.
    model: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Cost the graph as executed (BatchNorm folded, activations fused).
    #[arg(long)]
    optimized: bool,
}

pub fn run(a: Args) -> Result<()> {
    let g = if a.optimized { crate::model::load_optimized(&a.model)? } else { crate::model::load(&a.model)? };
    let table = cost_table(&g);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&table)?);
    } else {
        print!("{}", table.render());
    }
    Ok(())
}
