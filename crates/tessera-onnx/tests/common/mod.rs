//! Builds small ONNX models in code for the importer tests.
#![allow(dead_code)]

use prost::Message;
use tessera_onnx::proto::tensor_shape_proto::{dimension, Dimension};
use tessera_onnx::proto::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

pub fn ai(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(2), i: Some(v), ..Default::default() }
}
pub fn ais(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(7), ints: v.to_vec(), ..Default::default() }
}
pub fn af(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(1), f: Some(v), ..Default::default() }
}
pub fn afs(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(6), floats: v.to_vec(), ..Default::default() }
}
pub fn as_(name: &str, v: &str) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(3), s: Some(v.as_bytes().to_vec().into()), ..Default::default() }
}
pub fn at(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(4), t: Some(t), ..Default::default() }
}

pub fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("{op}_{}", outputs.first().copied().unwrap_or(""))),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

pub fn tf(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto { name: Some(name.into()), dims: dims.to_vec(), data_type: Some(1), float_data: data.to_vec(), ..Default::default() }
}
pub fn ti(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto { name: Some(name.into()), dims: dims.to_vec(), data_type: Some(7), int64_data: data.to_vec(), ..Default::default() }
}

/// A float32 value info; a negative dim is written as the symbolic `N`.
pub fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| Dimension { value: Some(if d < 0 { dimension::Value::DimParam("N".into()) } else { dimension::Value::DimValue(d) }), denotation: None })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: Some(1), shape: Some(TensorShapeProto { dim }) })),
            denotation: None,
        }),
        ..Default::default()
    }
}

pub fn model(opset: i64, inputs: Vec<ValueInfoProto>, nodes: Vec<NodeProto>, inits: Vec<TensorProto>, outputs: &[&str]) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        graph: Some(GraphProto {
            name: Some("t".into()),
            node: nodes,
            initializer: inits,
            input: inputs,
            output: outputs.iter().map(|o| ValueInfoProto { name: Some(o.to_string()), ..Default::default() }).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn bytes(m: &ModelProto) -> Vec<u8> {
    m.encode_to_vec()
}

/// A PyTorch-style model exercising shape folding, Gemm, Resize, Pad, Slice,
/// Split, Concat, Clip, Softmax ... (opset 13), input x [N, 3, 8, 8].
pub fn pytorch_style() -> ModelProto {
    let w: Vec<f32> = (0..4 * 3 * 3 * 3).map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0).collect();
    let fc: Vec<f32> = (0..5 * 288).map(|i| ((i * 3 % 13) as f32 - 6.0) / 50.0).collect();
    let nodes = vec![
        node("Conv", &["x", "w", "b"], &["c"], vec![ais("pads", &[1, 1, 1, 1]), ais("strides", &[1, 1])]),
        node("Clip", &["c", "lo", "hi"], &["r"], vec![]),
        node("MaxPool", &["r"], &["p"], vec![ais("kernel_shape", &[2, 2]), ais("strides", &[2, 2])]),
        node("Resize", &["p", "", "scales"], &["up"], vec![as_("mode", "nearest")]),
        node("Pad", &["up", "pads", "padv"], &["pd"], vec![as_("mode", "constant")]),
        node("Slice", &["pd", "st", "en", "ax"], &["sl"], vec![]),
        node("Split", &["sl", "split"], &["s0", "s1"], vec![ai("axis", 1)]),
        node("Concat", &["s1", "s0"], &["cat"], vec![ai("axis", -3)]),
        node("Shape", &["cat"], &["shp"], vec![]),
        node("Constant", &[], &["zero"], vec![at("value", ti("", &[], &[0]))]),
        node("Gather", &["shp", "zero"], &["n"], vec![ai("axis", 0)]),
        node("Unsqueeze", &["n", "axes0"], &["n1"], vec![]),
        node("Concat", &["n1", "minus1"], &["newshape"], vec![ai("axis", 0)]),
        node("Cast", &["newshape"], &["newshape64"], vec![ai("to", 7)]),
        node("Reshape", &["cat", "newshape64"], &["flat"], vec![]),
        node("Gemm", &["flat", "fc", "fcb"], &["g"], vec![ai("transB", 1), af("alpha", 0.5)]),
        node("Softmax", &["g"], &["y"], vec![ai("axis", -1)]),
    ];
    let inits = vec![
        tf("w", &[4, 3, 3, 3], &w),
        tf("b", &[4], &[0.1, -0.2, 0.3, 0.0]),
        tf("lo", &[], &[0.0]),
        tf("hi", &[], &[6.0]),
        tf("scales", &[4], &[1.0, 1.0, 2.0, 2.0]),
        ti("pads", &[8], &[0, 0, 1, 1, 0, 0, 1, 1]),
        tf("padv", &[], &[0.5]),
        ti("st", &[2], &[1, 1]),
        ti("en", &[2], &[-1, i64::MAX]),
        ti("ax", &[2], &[2, 3]),
        ti("split", &[2], &[1, 3]),
        ti("axes0", &[1], &[0]),
        ti("minus1", &[1], &[-1]),
        tf("fc", &[5, 288], &fc),
        tf("fcb", &[5], &[0.0, 0.1, 0.2, 0.3, 0.4]),
    ];
    model(13, vec![vi("x", &[-1, 3, 8, 8])], nodes, inits, &["y"])
}
