//! The central correctness property: any valid plan — random stage
//! boundaries, random split laws, random cut points (empty parts included),
//! random devices — reproduces the single-device output within 1e-4, on
//! every zoo model.

use std::sync::Arc;

use tessera_graph::rng::Rng;
use tessera_graph::{passes, zoo, Tensor};
use tessera_kernels::{Backend, CpuBackend};
use tessera_plan::random::random_plan;
use tessera_runtime::local::LocalExecutor;

fn input_for(g: &tessera_graph::Graph, seed: u64) -> Tensor {
    let shape = g.input_shape().to_vec();
    let n = shape.iter().product();
    Tensor::new(shape, Rng::new(seed).fill(n, 1.0)).unwrap()
}

fn check_model(name: &str, plans: usize, frames: usize) {
    let g = Arc::new(passes::optimize(&zoo::build(name).unwrap()).unwrap());
    let x: Vec<Tensor> = (0..frames).map(|f| input_for(&g, 100 + f as u64)).collect();
    let mut exe = CpuBackend::new(1).compile(&g).unwrap();
    let reference: Vec<Tensor> = x.iter().map(|xi| exe.run(std::slice::from_ref(xi)).unwrap().remove(0)).collect();
    let mut rng = Rng::new(0xC0FFEE ^ name.len() as u64);
    for i in 0..plans {
        let devices = rng.range(1, 4);
        let cluster = tessera_plan::cluster::parse(&devices.to_string()).unwrap();
        let plan = random_plan(&g, &cluster, &mut rng);
        let mut ex = LocalExecutor::new(g.clone(), &plan, Arc::new(|_| Box::new(CpuBackend::new(1)) as Box<dyn Backend>)).unwrap();
        let outs = ex.run_stream(x.iter().map(|t| vec![t.clone()]).collect(), 2).unwrap();
        for (f, o) in outs.iter().enumerate() {
            let d = o[0].max_rel_diff(&reference[f]);
            assert!(d <= 1e-4, "{name} plan #{i} frame {f}: max rel diff {d}\n{}", plan.render(&g));
        }
    }
}

#[test]
fn lenet_random_plans() {
    check_model("lenet", 40, 3);
}

#[test]
fn mobilenetv2_random_plans() {
    check_model("mobilenetv2", 32, 2);
}

#[test]
fn resnet50_random_plans() {
    check_model("resnet50", 12, 2);
}

#[test]
fn yolov2_tiny_random_plans() {
    check_model("yolov2-tiny", 4, 2);
}

#[test]
fn yolov2_random_plans() {
    check_model("yolov2", 2, 1);
}

#[test]
fn alexnet_random_plans() {
    check_model("alexnet", 2, 1);
}

#[test]
fn vgg16_random_plans() {
    check_model("vgg16", 2, 1);
}
