//! The graph IR: a DAG of single-output nodes in topological order, with
//! every node's output shape inferred when it is added.

use std::collections::HashMap;

use crate::error::{GraphError, Result};
use crate::op::Op;
use crate::tensor::{numel, Tensor};

/// Index of a node in its graph. Ids are positions, so `inputs < id` always.
pub type NodeId = usize;

/// One operation and its (single) output value.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Unique within the graph; ONNX output names are kept.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    /// Inferred static output shape.
    pub shape: Vec<usize>,
}

impl Node {
    /// Elements of this node's output.
    pub fn out_elems(&self) -> usize {
        numel(&self.shape)
    }
}

/// A static-shape CNN graph. Nodes are only ever appended, so the node list
/// is always a valid execution order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    pub name: String,
    nodes: Vec<Node>,
    inputs: Vec<NodeId>,
    outputs: Vec<NodeId>,
    names: HashMap<String, NodeId>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph { name: name.into(), ..Default::default() }
    }

    /// Adds a graph input of a fixed shape.
    pub fn input(&mut self, name: impl Into<String>, shape: &[usize]) -> Result<NodeId> {
        let id = self.push(Node { name: name.into(), op: Op::Input, inputs: vec![], shape: shape.to_vec() })?;
        self.inputs.push(id);
        Ok(id)
    }

    /// Appends a node, checking its inputs and inferring its shape.
    pub fn add(&mut self, name: impl Into<String>, op: Op, inputs: &[NodeId]) -> Result<NodeId> {
        let name = name.into();
        if matches!(op, Op::Input) {
            return Err(GraphError::Invalid(format!("node '{name}': use Graph::input for inputs")));
        }
        for (index, &i) in inputs.iter().enumerate() {
            if i >= self.nodes.len() {
                return Err(GraphError::BadInput { node: name, index, input: i });
            }
        }
        let shapes: Vec<&[usize]> = inputs.iter().map(|&i| self.nodes[i].shape.as_slice()).collect();
        let shape = op.infer(&shapes).map_err(|msg| GraphError::Shape { node: name.clone(), op: op.name().into(), msg })?;
        self.push(Node { name, op, inputs: inputs.to_vec(), shape })
    }

    fn push(&mut self, node: Node) -> Result<NodeId> {
        let id = self.nodes.len();
        if self.names.insert(node.name.clone(), id).is_some() {
            return Err(GraphError::Invalid(format!("duplicate node name '{}'", node.name)));
        }
        self.nodes.push(node);
        Ok(id)
    }

    /// Declares the graph outputs (in order).
    pub fn set_outputs(&mut self, outputs: &[NodeId]) -> Result<()> {
        if let Some(&bad) = outputs.iter().find(|&&o| o >= self.nodes.len()) {
            return Err(GraphError::Invalid(format!("output refers to unknown node {bad}")));
        }
        if outputs.is_empty() {
            return Err(GraphError::Invalid("a graph needs at least one output".into()));
        }
        self.outputs = outputs.to_vec();
        Ok(())
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }
    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }
    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
    /// The node with this name.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.names.get(name).copied()
    }
    /// Shape of the first input (the image, for every zoo model).
    pub fn input_shape(&self) -> &[usize] {
        &self.nodes[self.inputs[0]].shape
    }
    /// Shape of the first output.
    pub fn output_shape(&self) -> &[usize] {
        &self.nodes[self.outputs[0]].shape
    }

    /// For every node, the nodes that read it.
    pub fn consumers(&self) -> Vec<Vec<NodeId>> {
        let mut c = vec![Vec::new(); self.nodes.len()];
        for (id, n) in self.nodes.iter().enumerate() {
            for &i in &n.inputs {
                c[i].push(id);
            }
        }
        c
    }

    /// Checks that run-time inputs match the graph inputs in count and shape.
    pub fn check_inputs(&self, inputs: &[Tensor]) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(GraphError::Invalid(format!("graph '{}' takes {} input(s), got {}", self.name, self.inputs.len(), inputs.len())));
        }
        for (t, &id) in inputs.iter().zip(&self.inputs) {
            let n = &self.nodes[id];
            if t.shape() != n.shape.as_slice() {
                return Err(GraphError::InputShape { name: n.name.clone(), expected: n.shape.clone(), got: t.shape().to_vec() });
            }
        }
        Ok(())
    }

    /// Learned parameters of the whole graph.
    pub fn params(&self) -> usize {
        self.nodes.iter().map(|n| n.op.params()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Activation, BinaryOp};

    #[test]
    fn shapes_are_inferred_and_bad_edges_rejected() {
        let mut g = Graph::new("t");
        let x = g.input("x", &[1, 3, 8, 8]).unwrap();
        let r = g.add("r", Op::Act(Activation::Relu), &[x]).unwrap();
        let s = g.add("s", Op::Binary(BinaryOp::Add), &[x, r]).unwrap();
        g.set_outputs(&[s]).unwrap();
        assert_eq!(g.node(s).shape, vec![1, 3, 8, 8]);
        assert_eq!(g.consumers()[x], vec![r, s]);
        assert!(matches!(g.add("bad", Op::Act(Activation::Relu), &[9]), Err(GraphError::BadInput { .. })));
        assert!(g.add("r", Op::Act(Activation::Relu), &[x]).is_err(), "duplicate name");
        assert!(g.add("c", Op::Concat { axis: 4 }, &[x, r]).is_err());
        assert!(g.check_inputs(&[Tensor::zeros(&[1, 3, 8, 7])]).is_err());
        assert!(g.check_inputs(&[Tensor::zeros(&[1, 3, 8, 8])]).is_ok());
    }
}
