//! `tessera plan MODEL --planner NAME --devices SPEC [--json]`: plan a model
//! on a cluster and report the plan with its simulated figures.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use tessera_plan::planners::{self, evaluate, Request};
use tessera_plan::sim::SimConfig;
use tessera_plan::{cluster, Plan};

#[derive(clap::Args)]
pub struct Args {
    /// Zoo name or path to an .onnx file.
    model: String,
    /// Planner name, optionally with options: `distredge:episodes=4000`.
    #[arg(long, default_value = "tessera")]
    planner: String,
    /// Devices: a count, `PROFILE[*N][@RATE],...`, or a cluster JSON file.
    #[arg(long, default_value = "3")]
    devices: String,
    /// Print the plan as JSON (the format `tessera run --plan` reads).
    #[arg(long)]
    json: bool,
    /// Also write the plan JSON to this file.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    sim: SimArgs,
}

/// Stream settings shared by `plan` and `simulate`.
#[derive(clap::Args, Clone, Copy)]
pub struct SimArgs {
    /// Frames in flight (1: one image at a time, as seed 004 measures).
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// Frames simulated.
    #[arg(long, default_value_t = 24)]
    pub frames: usize,
    /// Seed for randomised planners.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl SimArgs {
    pub fn config(&self) -> Result<SimConfig> {
        anyhow::ensure!(self.window >= 1 && self.frames >= 1, "--window and --frames must be at least 1");
        Ok(SimConfig { frames: self.frames, window: self.window })
    }
}

/// Plans `model` with planner spec `spec`; returns the plan and the
/// planning time in ms.
pub fn make_plan(g: &tessera_graph::Graph, model: &str, spec: &str, cl: &tessera_plan::Cluster, sim: SimConfig, seed: u64) -> Result<(Plan, f64)> {
    let (name, options) = planners::parse_spec(spec)?;
    let planner = planners::by_name(&name)?;
    let req = Request { model, graph: g, cluster: cl, sim, seed, options: &options };
    let t = Instant::now();
    let plan = planner.plan(&req).with_context(|| format!("planner '{name}'"))?;
    Ok((plan, t.elapsed().as_secs_f64() * 1e3))
}

pub fn run(a: Args) -> Result<()> {
    let g = crate::model::load_for_planning(&a.model)?;
    let cl = cluster::parse(&a.devices)?;
    let sim = a.sim.config()?;
    let (plan, ms) = make_plan(&g, &a.model, &a.planner, &cl, sim, a.sim.seed)?;
    let e = evaluate(&g, &plan, &cl, sim)?;
    let json = serde_json::to_string_pretty(&plan)?;
    if let Some(path) = &a.output {
        crate::files::write_atomic(path, json.as_bytes())?;
    }
    if a.json {
        println!("{json}");
        return Ok(());
    }
    print!("{}", plan.render(&g));
    println!("simulated: {:.2} images/s, {:.1} ms per frame (window {}), planned in {:.1} ms", e.ips, e.latency_ms, sim.window, ms);
    for d in &e.report.devices {
        println!("  {:<12} busy {:8.1} ms  util {:5.1}%  down {:8.2} MB  up {:8.2} MB", d.name, d.busy_ms, 100.0 * d.utilization, d.bytes_down / 1e6, d.bytes_up / 1e6);
    }
    Ok(())
}
