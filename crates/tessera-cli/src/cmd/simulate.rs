//! `tessera simulate (--scenario NAME|all | MODEL --devices SPEC)
//! [--planners a,b|all] [--json]`: every planner on every scenario through
//! the discrete-event simulator, one table of images/s and the ratio of
//! each planner to the best baseline (every planner except `tessera`).

use anyhow::{bail, Result};
use serde::Serialize;
use tessera_plan::planners::{self, evaluate};
use tessera_plan::{cluster, scenarios};

use super::plan::{make_plan, SimArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Zoo name or .onnx path (with --devices) instead of --scenario.
    model: Option<String>,
    /// A seed 004 scenario name (DA-50, NB-nano, LC, ...) or `all`.
    #[arg(long)]
    scenario: Option<String>,
    /// Devices for MODEL.
    #[arg(long)]
    devices: Option<String>,
    /// Comma-separated planner specs, or `all`.
    #[arg(long, default_value = "all")]
    planners: String,
    /// Print a JSON list of rows {scenario, model, planner, ips, latency_ms, plan_ms}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sim: SimArgs,
}

/// One cell of the table.
#[derive(Serialize)]
struct Row {
    scenario: String,
    model: String,
    planner: String,
    ips: Option<f64>,
    latency_ms: Option<f64>,
    plan_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(a: Args) -> Result<()> {
    let cases: Vec<(String, String, String)> = match (&a.scenario, &a.model, &a.devices) {
        (Some(s), None, None) if s == "all" => scenarios::all().into_iter().map(|s| (s.name, s.model.to_string(), s.devices)).collect(),
        (Some(s), None, None) => {
            let s = scenarios::by_name(s)?;
            vec![(s.name, s.model.to_string(), s.devices)]
        }
        (None, Some(m), Some(d)) => vec![("custom".into(), m.clone(), d.clone())],
        _ => bail!("give either --scenario NAME|all, or MODEL --devices SPEC"),
    };
    let specs: Vec<String> = if a.planners == "all" { planners::names().iter().map(|s| s.to_string()).collect() } else { a.planners.split(',').map(|s| s.trim().to_string()).collect() };
    for s in &specs {
        planners::by_name(&planners::parse_spec(s)?.0)?;
    }
    let sim = a.sim.config()?;
    let mut rows = Vec::new();
    for (name, model, devices) in &cases {
        let g = crate::model::load_for_planning(model)?;
        let cl = cluster::parse(devices)?;
        for spec in &specs {
            let r = make_plan(&g, model, spec, &cl, sim, a.sim.seed).and_then(|(p, ms)| Ok((evaluate(&g, &p, &cl, sim)?, ms)));
            rows.push(match r {
                Ok((e, ms)) => Row { scenario: name.clone(), model: model.clone(), planner: spec.clone(), ips: Some(e.ips), latency_ms: Some(e.latency_ms), plan_ms: Some(ms), error: None },
                Err(e) => Row { scenario: name.clone(), model: model.clone(), planner: spec.clone(), ips: None, latency_ms: None, plan_ms: None, error: Some(format!("{e:#}")) },
            });
            if !a.json {
                eprint!(".");
            }
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    eprintln!();
    print_table(&rows, &specs, &cases.iter().map(|c| c.0.clone()).collect::<Vec<_>>(), sim.window);
    Ok(())
}

fn print_table(rows: &[Row], specs: &[String], scenarios: &[String], window: usize) {
    println!("images/s (simulated, window {window}); [x] = ratio to the best baseline (all planners but tessera)");
    print!("{:<10}", "scenario");
    for s in specs {
        print!(" {:>15}", s.split(':').next().unwrap_or(s));
    }
    println!();
    for sc in scenarios {
        let cell = |p: &str| rows.iter().find(|r| &r.scenario == sc && r.planner == p);
        let best_base = specs.iter().filter(|p| !p.starts_with("tessera")).filter_map(|p| cell(p).and_then(|r| r.ips)).fold(0.0, f64::max);
        print!("{sc:<10}");
        for p in specs {
            match cell(p).and_then(|r| r.ips) {
                Some(v) if best_base > 0.0 => print!(" {:>8.2} [{:>4.2}]", v, v / best_base),
                Some(v) => print!(" {v:>15.2}"),
                None => print!(" {:>15}", "infeasible"),
            }
        }
        println!();
    }
    println!("planning time (ms), max over scenarios:");
    for p in specs {
        let t = rows.iter().filter(|r| &r.planner == p).filter_map(|r| r.plan_ms).fold(0.0, f64::max);
        println!("  {p:<14} {t:>10.1}");
    }
    for r in rows.iter().filter(|r| r.error.is_some()) {
        println!("  {} / {}: {}", r.scenario, r.planner, r.error.as_deref().unwrap_or(""));
    }
}
