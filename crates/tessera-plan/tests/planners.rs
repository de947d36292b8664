//! Every planner produces a valid, feasible plan on the seed scenarios.

use tessera_graph::{passes, zoo};
use tessera_plan::planners::{self, evaluate, Request};
use tessera_plan::scenarios;
use tessera_plan::sim::SimConfig;

#[test]
fn every_planner_plans_vgg16_on_db50() {
    let g = passes::optimize(&zoo::build("vgg16").unwrap()).unwrap();
    let sc = scenarios::by_name("DB-50").unwrap();
    let cluster = sc.cluster().unwrap();
    for p in planners::all() {
        let req = Request { model: "vgg16", graph: &g, cluster: &cluster, sim: SimConfig::default(), seed: 1, options: &[] };
        let plan = p.plan(&req).unwrap_or_else(|e| panic!("{}: {e}", p.name()));
        let e = evaluate(&g, &plan, &cluster, SimConfig::default()).unwrap_or_else(|e| panic!("{}: {e}\n{}", p.name(), plan.render(&g)));
        println!("{:<12} ips {:8.2} latency {:8.1} ms (bound {:8.2})\n{}", p.name(), e.ips, e.latency_ms, e.bound_ips, plan.render(&g));
    }
}

/// Tessera never loses to a baseline in the simulator, on any seed 004
/// scenario, one frame at a time or streaming. (DistrEdge's comparison,
/// which needs DDPG training, is in `seeds.rs`.)
#[test]
fn tessera_never_loses_on_any_scenario() {
    let g = passes::optimize(&zoo::build_shapes("vgg16").unwrap()).unwrap();
    for window in [1, 4] {
        let sim = SimConfig { frames: 16, window };
        for sc in scenarios::all() {
            let cluster = sc.cluster().unwrap();
            let req = Request { model: "vgg16", graph: &g, cluster: &cluster, sim, seed: 1, options: &[] };
            let ips = |name: &str| {
                planners::by_name(name).unwrap().plan(&req).ok().and_then(|p| evaluate(&g, &p, &cluster, sim).ok()).map_or(0.0, |e| e.ips)
            };
            let ours = ips("tessera");
            for base in planners::names().into_iter().filter(|n| !matches!(*n, "tessera" | "distredge")) {
                let theirs = ips(base);
                assert!(ours >= theirs * (1.0 - 1e-9), "{} window {window}: tessera {ours:.3} < {base} {theirs:.3}", sc.name);
            }
        }
    }
}
