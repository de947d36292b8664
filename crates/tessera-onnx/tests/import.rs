//! Importer behaviour on small hand-built models: folding, shape handling,
//! op mappings that go beyond one IR op, and the errors users see.

mod common;

use common::*;
use tessera_graph::{Graph, Op, Tensor};
use tessera_kernels::{Backend, CpuBackend};
use tessera_onnx::{import, import_model, ImportOptions, OnnxError};

fn run(g: &Graph, x: Tensor) -> Tensor {
    let mut exe = CpuBackend::new(1).compile(g).unwrap();
    exe.run(&[x]).unwrap().remove(0)
}

fn iota(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::new(shape.to_vec(), (0..n).map(|v| v as f32).collect()).unwrap()
}

fn err(m: &tessera_onnx::proto::ModelProto) -> String {
    import(&bytes(m)).unwrap_err().to_string()
}

#[test]
fn pytorch_shape_subgraph_is_folded() {
    let g = import(&bytes(&pytorch_style())).unwrap();
    assert_eq!(g.input_shape(), &[1, 3, 8, 8]);
    assert_eq!(g.output_shape(), &[1, 5]);
    let ops: Vec<&str> = g.nodes().iter().map(|n| n.op.name()).collect();
    assert_eq!(
        ops,
        ["Input", "Conv", "Clip", "MaxPool", "Resize", "Pad", "Slice", "Slice", "Slice", "Concat", "Reshape", "Dense", "Softmax"],
        "shape arithmetic must fold away"
    );
    let y = run(&g, iota(&[1, 3, 8, 8]));
    let s: f32 = y.data().iter().sum();
    assert!((s - 1.0).abs() < 1e-5, "softmax sums to {s}");

    // The folded shape follows the batch actually chosen.
    let opts = ImportOptions { batch: 2, ..Default::default() };
    let g2 = import_model(pytorch_style(), &opts).unwrap();
    assert_eq!(g2.output_shape(), &[2, 5]);
}

#[test]
fn errors_name_the_node_op_and_opset() {
    let m = model(13, vec![vi("x", &[1, 4])], vec![node("Foo", &["x"], &["y"], vec![])], vec![], &["y"]);
    assert_eq!(err(&m), "node 'Foo_y' (Foo, opset 13): op not supported");
    let mut m = model(11, vec![vi("x", &[1, 4])], vec![node("Relu", &["x"], &["y"], vec![])], vec![], &["y"]);
    m.graph.as_mut().unwrap().node[0].domain = Some("com.microsoft".into());
    assert!(err(&m).contains("(com.microsoft.Relu, opset 0): op not supported"), "{}", err(&m));
    let m = model(19, vec![vi("x", &[1, 1, 4, 4])], vec![node("Resize", &["x", "", "s"], &["y"], vec![as_("mode", "linear")])], vec![tf("s", &[4], &[1.0, 1.0, 2.0, 2.0])], &["y"]);
    assert_eq!(err(&m), "node 'Resize_y' (Resize, opset 19): mode 'linear' is not supported (only nearest)");
    let m = model(5, vec![vi("x", &[1, 4])], vec![node("Relu", &["x"], &["y"], vec![])], vec![], &["y"]);
    assert!(err(&m).contains("opset 5 is not supported"));
    let m = model(99, vec![vi("x", &[1, 4])], vec![node("Relu", &["x"], &["y"], vec![])], vec![], &["y"]);
    assert!(err(&m).contains("opset 99 is not supported"));
    let m = model(13, vec![vi("x", &[1, 4])], vec![node("Relu", &["nope"], &["y"], vec![])], vec![], &["y"]);
    assert_eq!(err(&m), "node 'Relu_y' (Relu, opset 13): input 'nope' is not defined");
    assert!(matches!(import(b"definitely not protobuf"), Err(OnnxError::Decode(_))));
}

#[test]
fn initializers_listed_as_inputs_are_constants() {
    let m = model(
        13,
        vec![vi("x", &[2, 3]), vi("w", &[4, 3])],
        vec![node("Gemm", &["x", "w"], &["y"], vec![ai("transB", 1)])],
        vec![tf("w", &[4, 3], &[1.0; 12])],
        &["y"],
    );
    let g = import(&bytes(&m)).unwrap();
    assert_eq!(g.inputs().len(), 1);
    assert!(matches!(g.node(g.outputs()[0]).op, Op::Dense(_)));
    assert_eq!(run(&g, iota(&[2, 3])).data(), &[3.0, 3.0, 3.0, 3.0, 12.0, 12.0, 12.0, 12.0]);
}

#[test]
fn symbolic_dims() {
    let m = model(13, vec![vi("x", &[-1, 3, -1, 8])], vec![node("Relu", &["x"], &["y"], vec![])], vec![], &["y"]);
    let e = err(&m);
    assert!(e.contains("input 'x'") && e.contains("dimension 2 is 'N'") && e.contains("input_shapes"), "{e}");
    let opts = ImportOptions { input_shapes: vec![("x".into(), vec![2, 3, 5, 8])], ..Default::default() };
    assert_eq!(import_model(m, &opts).unwrap().input_shape(), &[2, 3, 5, 8]);
}

#[test]
fn nodes_out_of_order_are_sorted_and_cycles_rejected() {
    let nodes = vec![node("Sigmoid", &["a"], &["y"], vec![]), node("Relu", &["x"], &["a"], vec![])];
    let g = import(&bytes(&model(13, vec![vi("x", &[1, 4])], nodes, vec![], &["y"]))).unwrap();
    assert_eq!(g.nodes().iter().map(|n| n.op.name()).collect::<Vec<_>>(), ["Input", "Relu", "Sigmoid"]);
    let nodes = vec![node("Add", &["x", "b"], &["a"], vec![]), node("Relu", &["a"], &["b"], vec![])];
    assert!(err(&model(13, vec![vi("x", &[1, 4])], nodes, vec![], &["b"])).contains("cycle"));
}

#[test]
fn gather_split_expand_tile_at_run_time() {
    // Gather with constant indices → slices + concat.
    let m = model(13, vec![vi("x", &[2, 6])], vec![node("Gather", &["x", "i"], &["y"], vec![ai("axis", 1)])], vec![ti("i", &[5], &[4, 5, 0, 1, -3])], &["y"]);
    let g = import(&bytes(&m)).unwrap();
    assert_eq!(run(&g, iota(&[2, 6])).data(), &[4.0, 5.0, 0.0, 1.0, 3.0, 10.0, 11.0, 6.0, 7.0, 9.0]);
    // Scalar index drops the axis.
    let m = model(13, vec![vi("x", &[2, 3])], vec![node("Gather", &["x", "i"], &["y"], vec![])], vec![ti("i", &[], &[1])], &["y"]);
    let g = import(&bytes(&m)).unwrap();
    assert_eq!(g.output_shape(), &[3]);
    assert_eq!(run(&g, iota(&[2, 3])).data(), &[3.0, 4.0, 5.0]);
    // Expand = broadcast multiply by ones; Tile = concat of copies.
    let m = model(13, vec![vi("x", &[3, 1])], vec![node("Expand", &["x", "s"], &["y"], vec![])], vec![ti("s", &[2], &[3, 2])], &["y"]);
    let g = import(&bytes(&m)).unwrap();
    assert_eq!(run(&g, iota(&[3, 1])).data(), &[0.0, 0.0, 1.0, 1.0, 2.0, 2.0]);
    let m = model(13, vec![vi("x", &[1, 2])], vec![node("Tile", &["x", "r"], &["y"], vec![])], vec![ti("r", &[2], &[2, 2])], &["y"]);
    let g = import(&bytes(&m)).unwrap();
    assert_eq!(run(&g, iota(&[1, 2])).data(), &[0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
}

#[test]
fn matmul_variants() {
    // Constant left operand: Y = A · X via transposes around a Dense.
    let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let m = model(13, vec![vi("x", &[3, 2])], vec![node("MatMul", &["a", "x"], &["y"], vec![])], vec![tf("a", &[2, 3], &a)], &["y"]);
    let g = import(&bytes(&m)).unwrap();
    // [[1,2,3],[4,5,6]] · [[0,1],[2,3],[4,5]] = [[16,22],[34,49]]
    assert_eq!(run(&g, iota(&[3, 2])).data(), &[16.0, 22.0, 34.0, 49.0]);
    // B of shape [1, K, N]: a Dense and a leading 1.
    let m = model(13, vec![vi("x", &[2, 3])], vec![node("MatMul", &["x", "b"], &["y"], vec![])], vec![tf("b", &[1, 3, 1], &[1.0, 1.0, 1.0])], &["y"]);
    let g = import(&bytes(&m)).unwrap();
    assert_eq!(g.output_shape(), &[1, 2, 1]);
    assert_eq!(run(&g, iota(&[2, 3])).data(), &[3.0, 12.0]);
    // Two run-time operands are not in the IR.
    let m = model(13, vec![vi("x", &[2, 2]), vi("z", &[2, 2])], vec![node("MatMul", &["x", "z"], &["y"], vec![])], vec![], &["y"]);
    assert!(err(&m).contains("two run-time tensors"));
}

#[test]
fn gemm_with_trans_a_and_matrix_bias() {
    let m = model(
        13,
        vec![vi("x", &[3, 2])],
        vec![node("Gemm", &["x", "b", "c"], &["y"], vec![ai("transA", 1), af("beta", 2.0)])],
        vec![tf("b", &[3, 1], &[1.0, 1.0, 1.0]), tf("c", &[2, 1], &[10.0, 20.0])],
        &["y"],
    );
    let g = import(&bytes(&m)).unwrap();
    // xᵀ = [[0,2,4],[1,3,5]] → row sums 6, 9; + 2·c.
    assert_eq!(run(&g, iota(&[3, 2])).data(), &[26.0, 49.0]);
}

#[test]
fn legacy_opset6_broadcast_and_prelu() {
    let m = model(6, vec![vi("x", &[1, 2, 2, 2])], vec![node("Add", &["x", "b"], &["y"], vec![ai("broadcast", 1), ai("axis", 1)])], vec![tf("b", &[2], &[100.0, 200.0])], &["y"]);
    let g = import(&bytes(&m)).unwrap();
    assert_eq!(run(&g, iota(&[1, 2, 2, 2])).data(), &[100.0, 101.0, 102.0, 103.0, 204.0, 205.0, 206.0, 207.0]);
    let m = model(6, vec![vi("x", &[1, 2, 2, 2])], vec![node("Add", &["x", "b"], &["y"], vec![])], vec![tf("b", &[2], &[1.0, 2.0])], &["y"]);
    assert!(err(&m).contains("broadcast is off"));
}

#[test]
fn outputs_aliasing_inputs_and_constants() {
    // Identity of the input: an Identity node, so outputs stay distinct nodes.
    let m = model(13, vec![vi("x", &[2])], vec![node("Identity", &["x"], &["y"], vec![]), node("Dropout", &["x"], &["z"], vec![])], vec![], &["y", "z"]);
    let g = import(&bytes(&m)).unwrap();
    assert_eq!(g.outputs().len(), 2);
    assert_ne!(g.outputs()[0], g.outputs()[1]);
    // A float constant output becomes a Const node; an int64 one is an error.
    let m = model(13, vec![vi("x", &[2])], vec![node("Relu", &["x"], &["y"], vec![]), node("Shape", &["x"], &["s"], vec![])], vec![], &["y", "s"]);
    assert!(err(&m).contains("output 's': is int64"));
    // MaxPool's Indices output cannot be produced.
    let m = model(13, vec![vi("x", &[1, 1, 2, 2])], vec![node("MaxPool", &["x"], &["y", "i"], vec![ais("kernel_shape", &[2, 2])])], vec![], &["y", "i"]);
    assert!(err(&m).contains("Indices output is not supported"));
}

#[test]
fn absurd_sizes_are_errors_not_allocations() {
    let big = 1i64 << 40;
    let cases = vec![
        // Run-time input of 2^80 elements.
        model(13, vec![vi("x", &[big, big])], vec![node("Relu", &["x"], &["y"], vec![])], vec![], &["y"]),
        // An initializer that claims 2^62 elements and holds none.
        model(13, vec![vi("x", &[1])], vec![node("Add", &["x", "w"], &["y"], vec![])], vec![tf("w", &[1 << 62], &[])], &["y"]),
        // ConstantOfShape / Expand / Tile / Range blowing up.
        model(13, vec![vi("x", &[1])], vec![node("ConstantOfShape", &["s"], &["c"], vec![]), node("Add", &["x", "c"], &["y"], vec![])], vec![ti("s", &[2], &[1 << 20, 1 << 20])], &["y"]),
        model(13, vec![vi("x", &[1])], vec![node("Expand", &["x", "s"], &["y"], vec![])], vec![ti("s", &[3], &[1 << 20, 1 << 20, 1 << 20])], &["y"]),
        model(13, vec![vi("x", &[1])], vec![node("Tile", &["x", "r"], &["y"], vec![])], vec![ti("r", &[1], &[1 << 40])], &["y"]),
        model(13, vec![vi("x", &[1])], vec![node("Range", &["a", "b", "c"], &["r"], vec![]), node("Add", &["x", "r"], &["y"], vec![])], vec![ti("a", &[], &[0]), ti("b", &[], &[i64::MAX]), ti("c", &[], &[1])], &["y"]),
        // Resize by 1e30, Pad by 2^40, a kernel of 2^40.
        model(13, vec![vi("x", &[1, 1, 2, 2])], vec![node("Resize", &["x", "", "s"], &["y"], vec![])], vec![tf("s", &[4], &[1.0, 1.0, 1e30, 1e30])], &["y"]),
        model(13, vec![vi("x", &[1, 1, 2, 2])], vec![node("Pad", &["x", "p"], &["y"], vec![])], vec![ti("p", &[8], &[0, 0, big, big, 0, 0, big, big])], &["y"]),
        model(13, vec![vi("x", &[1, 1, 2, 2])], vec![node("MaxPool", &["x"], &["y"], vec![ais("kernel_shape", &[big, big])])], vec![], &["y"]),
        model(13, vec![vi("x", &[1, 1, 2, 2])], vec![node("Reshape", &["x", "s"], &["y"], vec![])], vec![ti("s", &[3], &[big, big, -1])], &["y"]),
    ];
    for (i, m) in cases.iter().enumerate() {
        let r = import(&bytes(m));
        assert!(r.is_err(), "case {i} imported: {:?}", r.map(|g| g.output_shape().to_vec()));
    }
}

#[test]
fn one_d_conv_and_pool_run_as_two_d() {
    let m = model(
        13,
        vec![vi("x", &[1, 1, 5])],
        vec![
            node("Conv", &["x", "w"], &["c"], vec![ais("pads", &[1, 1])]),
            node("MaxPool", &["c"], &["y"], vec![ais("kernel_shape", &[2]), ais("strides", &[2])]),
        ],
        vec![tf("w", &[1, 1, 3], &[1.0, 1.0, 1.0])],
        &["y"],
    );
    let g = import(&bytes(&m)).unwrap();
    assert_eq!(g.output_shape(), &[1, 1, 2]);
    // conv: [1, 3, 6, 9, 7] → pool: [3, 9]
    assert_eq!(run(&g, iota(&[1, 1, 5])).data(), &[3.0, 9.0]);
}


#[test]
fn imported_graphs_optimise_to_the_same_result() {
    let g = import(&bytes(&pytorch_style())).unwrap();
    let o = tessera_graph::passes::optimize(&g).unwrap();
    assert!(o.len() < g.len(), "the Clip folds into the Conv");
    let x = iota(&[1, 3, 8, 8]);
    let (a, b) = (run(&g, x.clone()), run(&o, x));
    assert!(a.max_rel_diff(&b) < 1e-5);
}

#[test]
fn reductions_over_any_axes_at_run_time() {
    let red = |op: &str, axes: &[i64], keep: i64| {
        let m = model(18, vec![vi("x", &[2, 3, 2])], vec![node(op, &["x", "ax"], &["y"], vec![ai("keepdims", keep)])], vec![ti("ax", &[axes.len() as i64], axes)], &["y"]);
        let g = import(&bytes(&m)).unwrap();
        (g.output_shape().to_vec(), run(&g, iota(&[2, 3, 2])).into_data())
    };
    // x = [[[0,1],[2,3],[4,5]], [[6,7],[8,9],[10,11]]]
    assert_eq!(red("ReduceSum", &[1], 0), (vec![2, 2], vec![6.0, 9.0, 24.0, 27.0]));
    assert_eq!(red("ReduceMin", &[0, 2], 1), (vec![1, 3, 1], vec![0.0, 2.0, 4.0]));
    assert_eq!(red("ReduceMax", &[-1], 0), (vec![2, 3], vec![1.0, 3.0, 5.0, 7.0, 9.0, 11.0]));
    assert_eq!(red("ReduceMean", &[0], 0), (vec![3, 2], vec![3.0, 4.0, 5.0, 6.0, 7.0, 8.0]));
    assert_eq!(red("ReduceSumSquare", &[2], 0), (vec![2, 3], vec![1.0, 13.0, 41.0, 85.0, 145.0, 221.0]));
}

#[test]
fn batched_matmul_with_a_constant_operand() {
    // A [2, 1, 3] · B [2, 3, 1]: batch 0 sums, batch 1 takes the last column.
    let b = [1.0, 1.0, 1.0, 0.0, 0.0, 1.0];
    let m = model(13, vec![vi("x", &[2, 1, 3])], vec![node("MatMul", &["x", "b"], &["y"], vec![])], vec![tf("b", &[2, 3, 1], &b)], &["y"]);
    let g = import(&bytes(&m)).unwrap();
    assert_eq!(g.output_shape(), &[2, 1, 1]);
    assert_eq!(run(&g, iota(&[2, 1, 3])).data(), &[3.0, 5.0]);
}
