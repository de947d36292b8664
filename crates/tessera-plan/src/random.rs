//! Random valid plans: the generator behind the property tests ("any plan
//! reproduces the single-device output") and, later, fuzzing and load tests.

use tessera_graph::rng::Rng;
use tessera_graph::Graph;

use crate::device::Cluster;
use crate::plan::{Plan, Split, SplitKind, Stage};
use crate::volume::{is_free, Volume};

/// Random non-decreasing cut points `[0, .., extent]` for up to `max_parts`
/// parts (some may be empty).
fn random_cuts(rng: &mut Rng, extent: usize, max_parts: usize) -> Vec<usize> {
    let parts = rng.range(1, max_parts.max(1));
    let mut inner: Vec<usize> = (1..parts).map(|_| rng.range(0, extent)).collect();
    inner.sort_unstable();
    let mut cuts = vec![0];
    cuts.extend(inner);
    cuts.push(extent);
    cuts
}

/// A random valid plan of `g` on `cluster`: random stage boundaries, and
/// for each stage a random split law among those the volume supports.
pub fn random_plan(g: &Graph, cluster: &Cluster, rng: &mut Rng) -> Plan {
    let consumers = g.consumers();
    let compute: Vec<usize> = (0..g.len()).filter(|&n| !is_free(&g.node(n).op)).collect();
    let nd = cluster.len();
    let mut stages = Vec::new();
    let mut i = 0;
    while i < compute.len() {
        let start = compute[i];
        // Stage length: mostly short, sometimes long.
        let max_len = if rng.f32() < 0.2 { compute.len() - i } else { (compute.len() - i).min(6) };
        let len = rng.range(1, max_len);
        let end = compute[i + len - 1] + 1;
        let vol = Volume::new(g, &consumers, start, end).expect("non-empty range");
        let kinds: Vec<SplitKind> = [
            SplitKind::Rows,
            SplitKind::Grid,
            SplitKind::OutChannels,
            SplitKind::InChannels,
            SplitKind::Fused,
            SplitKind::Replicas,
            SplitKind::Whole,
        ]
        .into_iter()
        .filter(|&k| vol.supports(g, k).is_ok())
        .collect();
        let kind = kinds[rng.range(0, kinds.len() - 1)];
        let dev = |rng: &mut Rng| rng.range(0, nd - 1);
        let split = match kind {
            SplitKind::Whole => Split::whole(dev(rng)),
            SplitKind::Replicas => {
                let mut all: Vec<usize> = (0..nd).collect();
                let k = rng.range(1, nd);
                for j in 0..k {
                    let pick = rng.range(j, nd - 1);
                    all.swap(j, pick);
                }
                all.truncate(k);
                Split { kind, cuts: vec![], col_cuts: vec![], devices: all }
            }
            SplitKind::Grid => {
                let rows = random_cuts(rng, vol.extent(g, SplitKind::Rows).unwrap(), 3);
                let cols = random_cuts(rng, vol.extent(g, SplitKind::Grid).unwrap(), 3);
                let n = (rows.len() - 1) * (cols.len() - 1);
                Split { kind, cuts: rows, col_cuts: cols, devices: (0..n).map(|_| dev(rng)).collect() }
            }
            k => {
                let cuts = random_cuts(rng, vol.extent(g, k).unwrap(), 4);
                let n = cuts.len() - 1;
                Split::cut(k, cuts, (0..n).map(|_| dev(rng)).collect())
            }
        };
        stages.push(Stage::new(g, start, end, split));
        i += len;
    }
    Plan { model: g.name.clone(), planner: "random".into(), devices: cluster.devices.iter().map(|d| d.name.clone()).collect(), stages }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks;
    use tessera_graph::{passes, zoo};

    /// Every random plan of every zoo model validates and yields tasks whose
    /// sub-graphs have the shapes their regions promise, covering each stage
    /// output exactly once (checked inside `tasks::build`).
    #[test]
    fn random_plans_on_the_zoo_build_consistent_tasks() {
        let cluster = crate::cluster::parse("3").unwrap();
        for m in zoo::MODELS {
            let g = passes::optimize(&zoo::build(m.name).unwrap()).unwrap();
            let mut rng = Rng::new(11);
            let plans = if matches!(m.name, "vgg16" | "alexnet") { 3 } else { 12 };
            for _ in 0..plans {
                let p = random_plan(&g, &cluster, &mut rng);
                p.validate(&g, &cluster).unwrap_or_else(|e| panic!("{}: {e}\n{}", m.name, p.render(&g)));
                tasks::build(&g, &p).unwrap_or_else(|e| panic!("{}: {e}\n{}", m.name, p.render(&g)));
            }
        }
    }
}

