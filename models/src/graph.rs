//! ONNX graphs made faster without changing one output bit.
//!
//! ONNX Runtime's CPU `PRelu` (1.32) is a scalar loop that branches on the
//! sign of every element: on a real face about half the branches mispredict,
//! and the recognizer (33 `PRelu`s after BatchNorm) spent half of its time
//! there (ONNX Runtime's profiler). The same function written with the
//! element-wise operators ONNX Runtime vectorises gives the same float in
//! every element, because each form picks `x` or computes the one product
//! `a * x`, as `PRelu` does:
//!
//! - every slope `a <= 1`: `max(x, a * x)`;
//! - every slope `a >= 1`: `min(x, a * x)`;
//! - slopes on both sides of 1: `relu(x) + a * (x - relu(x))` (one of the two
//!   terms is an exact zero).
//!
//! Only `PRelu` nodes of the default domain whose slope is a finite float32
//! constant (an initializer or a `Constant` node) are rewritten, in place, so
//! the node order stays topological; every other byte of the model is copied
//! as it is. The rewrite works on the protobuf wire format directly, so fields
//! this module does not know survive untouched. The loader checks the result
//! against the original on a probe before using it (`models::load_model`).

use std::collections::{HashMap, HashSet};

/// Why a model was not rewritten: it is then loaded as it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    /// The bytes are not the protobuf encoding of an ONNX model.
    #[error("not a well-formed ONNX model: {0}")]
    Malformed(&'static str),
}

/// A rewritten model and how many `PRelu` nodes were replaced.
#[derive(Debug)]
pub struct Rewritten {
    pub bytes: Vec<u8>,
    pub prelus: usize,
}

// Field numbers of onnx.proto (IR version 3 and later).
const MODEL_GRAPH: u32 = 7;
const MODEL_OPSET_IMPORT: u32 = 8;
const OPSET_DOMAIN: u32 = 1;
const OPSET_VERSION: u32 = 2;
const GRAPH_NODE: u32 = 1;
const GRAPH_INITIALIZER: u32 = 5;
const GRAPH_INPUT: u32 = 11;
const GRAPH_OUTPUT: u32 = 12;
const GRAPH_VALUE_INFO: u32 = 13;
const VALUE_INFO_NAME: u32 = 1;
const NODE_INPUT: u32 = 1;
const NODE_OUTPUT: u32 = 2;
const NODE_NAME: u32 = 3;
const NODE_OP_TYPE: u32 = 4;
const NODE_ATTRIBUTE: u32 = 5;
const NODE_DOMAIN: u32 = 7;
const ATTRIBUTE_NAME: u32 = 1;
const ATTRIBUTE_T: u32 = 5;
const TENSOR_DIMS: u32 = 1;
const TENSOR_DATA_TYPE: u32 = 2;
const TENSOR_FLOAT_DATA: u32 = 4;
const TENSOR_NAME: u32 = 8;
const TENSOR_RAW_DATA: u32 = 9;
const TENSOR_DATA_LOCATION: u32 = 14;
const TENSOR_FLOAT: u64 = 1;

/// Wire types of the protobuf encoding.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// Operator set from which `Mul`, `Max`, `Min`, `Add` and `Sub` broadcast
/// numpy-style, as `PRelu` does its slope.
const MIN_OPSET: u64 = 8;

/// `model` with its constant-slope `PRelu` nodes in vectorisable form;
/// `None` when there is nothing to rewrite (or the model predates opset 8).
pub fn fast_prelu(model: &[u8]) -> Result<Option<Rewritten>, GraphError> {
    let mut graph = None;
    let mut opset = None;
    for field in Fields::new(model) {
        let field = field?;
        match (field.number, field.value) {
            (MODEL_GRAPH, Value::Bytes(b)) => graph = Some(b),
            (MODEL_OPSET_IMPORT, Value::Bytes(b)) => {
                let mut domain: &[u8] = b"";
                let mut version = 0;
                for f in Fields::new(b) {
                    match f?.value_of(OPSET_DOMAIN, OPSET_VERSION) {
                        (Some(Value::Bytes(d)), _) => domain = d,
                        (_, Some(Value::Varint(v))) => version = v,
                        _ => {}
                    }
                }
                if domain.is_empty() || domain == b"ai.onnx" {
                    opset = Some(version);
                }
            }
            _ => {}
        }
    }
    let graph = graph.ok_or(GraphError::Malformed("no graph"))?;
    if opset.is_none_or(|v| v < MIN_OPSET) {
        return Ok(None);
    }
    let Some((graph, prelus)) = rewrite_graph(graph)? else {
        return Ok(None);
    };
    let mut bytes = Vec::with_capacity(model.len() + graph.len() / 8);
    for field in Fields::new(model) {
        let field = field?;
        if field.number == MODEL_GRAPH {
            put_bytes(&mut bytes, MODEL_GRAPH, &graph);
        } else {
            bytes.extend_from_slice(field.raw);
        }
    }
    Ok(Some(Rewritten { bytes, prelus }))
}

/// The graph with its `PRelu`s replaced, or `None` if it has none to replace.
fn rewrite_graph(graph: &[u8]) -> Result<Option<(Vec<u8>, usize)>, GraphError> {
    // Every float constant by name, and every name in use (new ones must not
    // collide with them).
    let mut constants: HashMap<&[u8], Vec<f32>> = HashMap::new();
    let mut names: HashSet<Vec<u8>> = HashSet::new();
    for field in Fields::new(graph) {
        let field = field?;
        let Value::Bytes(b) = field.value else {
            continue;
        };
        match field.number {
            GRAPH_NODE => {
                let node = Node::parse(b)?;
                names.extend(node.inputs.iter().map(|n| n.to_vec()));
                names.extend(node.outputs.iter().map(|n| n.to_vec()));
                if node.is_default_op(b"Constant")
                    && node.outputs.len() == 1
                    && let Some(values) = node.value_tensor()?.map(floats).transpose()?.flatten()
                {
                    constants.insert(node.outputs[0], values);
                }
            }
            GRAPH_INITIALIZER => {
                let (name, values) = named_floats(b)?;
                names.insert(name.to_vec());
                if let Some(values) = values {
                    constants.insert(name, values);
                }
            }
            GRAPH_INPUT | GRAPH_OUTPUT | GRAPH_VALUE_INFO => {
                for f in Fields::new(b) {
                    if let (Some(Value::Bytes(n)), _) = f?.value_of(VALUE_INFO_NAME, 0) {
                        names.insert(n.to_vec());
                    }
                }
            }
            _ => {}
        }
    }

    let mut out = Vec::with_capacity(graph.len() + 1024);
    let mut prelus = 0;
    for field in Fields::new(graph) {
        let field = field?;
        let replacement = match (field.number, field.value) {
            (GRAPH_NODE, Value::Bytes(b)) => {
                let node = Node::parse(b)?;
                prelu_replacement(&node, &constants, &mut names)
            }
            _ => None,
        };
        match replacement {
            Some(nodes) => {
                prelus += 1;
                for n in nodes {
                    put_bytes(&mut out, GRAPH_NODE, &n);
                }
            }
            None => out.extend_from_slice(field.raw),
        }
    }
    Ok((prelus > 0).then_some((out, prelus)))
}

/// The nodes (encoded) that compute `node` if it is a constant-slope `PRelu`.
fn prelu_replacement(
    node: &Node<'_>,
    constants: &HashMap<&[u8], Vec<f32>>,
    names: &mut HashSet<Vec<u8>>,
) -> Option<Vec<Vec<u8>>> {
    if !node.is_default_op(b"PRelu") || node.inputs.len() != 2 || node.outputs.len() != 1 {
        return None;
    }
    let slope = constants.get(node.inputs[1])?;
    if slope.is_empty() || !slope.iter().all(|a| a.is_finite()) {
        return None;
    }
    let (x, a, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let mut fresh = |tag: &str| -> Option<Vec<u8>> {
        let mut name = y.to_vec();
        name.extend_from_slice(b"/arclock_prelu/");
        name.extend_from_slice(tag.as_bytes());
        names.insert(name.clone()).then_some(name)
    };
    let ax = fresh("ax")?;
    let pick: Option<&[u8]> = if slope.iter().all(|&s| s <= 1.0) {
        Some(b"Max")
    } else if slope.iter().all(|&s| s >= 1.0) {
        Some(b"Min")
    } else {
        None
    };
    if let Some(pick) = pick {
        return Some(vec![
            encode_node(b"Mul", &[x, a], &ax),
            encode_node(pick, &[x, &ax], y),
        ]);
    }
    let (pos, neg, aneg) = (fresh("pos")?, fresh("neg")?, ax);
    Some(vec![
        encode_node(b"Relu", &[x], &pos),
        encode_node(b"Sub", &[x, &pos], &neg),
        encode_node(b"Mul", &[&neg, a], &aneg),
        encode_node(b"Add", &[&pos, &aneg], y),
    ])
}

/// The fields of a `NodeProto` this module reads.
struct Node<'a> {
    inputs: Vec<&'a [u8]>,
    outputs: Vec<&'a [u8]>,
    op_type: &'a [u8],
    domain: &'a [u8],
    attributes: Vec<&'a [u8]>,
}

impl<'a> Node<'a> {
    fn parse(b: &'a [u8]) -> Result<Self, GraphError> {
        let mut node = Node {
            inputs: Vec::new(),
            outputs: Vec::new(),
            op_type: b"",
            domain: b"",
            attributes: Vec::new(),
        };
        for f in Fields::new(b) {
            let f = f?;
            let Value::Bytes(v) = f.value else {
                continue;
            };
            match f.number {
                NODE_INPUT => node.inputs.push(v),
                NODE_OUTPUT => node.outputs.push(v),
                NODE_OP_TYPE => node.op_type = v,
                NODE_DOMAIN => node.domain = v,
                NODE_ATTRIBUTE => node.attributes.push(v),
                _ => {}
            }
        }
        Ok(node)
    }

    fn is_default_op(&self, op: &[u8]) -> bool {
        self.op_type == op && (self.domain.is_empty() || self.domain == b"ai.onnx")
    }

    /// The tensor of a `Constant` node's `value` attribute.
    fn value_tensor(&self) -> Result<Option<&'a [u8]>, GraphError> {
        for attr in &self.attributes {
            let mut name: &[u8] = b"";
            let mut tensor = None;
            for f in Fields::new(attr) {
                match f?.value_of(ATTRIBUTE_NAME, ATTRIBUTE_T) {
                    (Some(Value::Bytes(n)), _) => name = n,
                    (_, Some(Value::Bytes(t))) => tensor = Some(t),
                    _ => {}
                }
            }
            if name == b"value" {
                return Ok(tensor);
            }
        }
        Ok(None)
    }
}

/// A `TensorProto`'s values if it is a float32 tensor stored in the model.
fn floats(tensor: &[u8]) -> Result<Option<Vec<f32>>, GraphError> {
    named_floats(tensor).map(|(_, v)| v)
}

/// A `TensorProto`'s name, and its values if it is a float32 tensor stored
/// in the model whose element count matches its shape.
fn named_floats(tensor: &[u8]) -> Result<(&[u8], Option<Vec<f32>>), GraphError> {
    let mut name: &[u8] = b"";
    let mut dims: Vec<u64> = Vec::new();
    let mut data_type = 0;
    let mut external = false;
    let mut values: Vec<f32> = Vec::new();
    let mut raw: Option<&[u8]> = None;
    for f in Fields::new(tensor) {
        let f = f?;
        match (f.number, f.value) {
            (TENSOR_NAME, Value::Bytes(n)) => name = n,
            (TENSOR_DIMS, Value::Varint(d)) => dims.push(d),
            (TENSOR_DIMS, Value::Bytes(packed)) => {
                let mut p = packed;
                while !p.is_empty() {
                    dims.push(varint(&mut p)?);
                }
            }
            (TENSOR_DATA_TYPE, Value::Varint(t)) => data_type = t,
            (TENSOR_FLOAT_DATA, Value::Fixed32(v)) => values.push(f32::from_le_bytes(v)),
            (TENSOR_FLOAT_DATA, Value::Bytes(packed)) => {
                if packed.len() % 4 != 0 {
                    return Err(GraphError::Malformed("packed floats of odd length"));
                }
                values.extend(
                    packed
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
            }
            (TENSOR_RAW_DATA, Value::Bytes(r)) => raw = Some(r),
            (TENSOR_DATA_LOCATION, Value::Varint(l)) => external = l != 0,
            _ => {}
        }
    }
    if data_type != TENSOR_FLOAT || external {
        return Ok((name, None));
    }
    if let Some(r) = raw {
        if r.len() % 4 != 0 {
            return Ok((name, None));
        }
        values = r
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
    }
    let count = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
    Ok((name, (count == Some(values.len() as u64)).then_some(values)))
}

/// A `NodeProto` of the default domain with one output, named after it (an
/// output has one producer, so the node's name is unique too).
fn encode_node(op: &[u8], inputs: &[&[u8]], output: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for i in inputs {
        put_bytes(&mut b, NODE_INPUT, i);
    }
    put_bytes(&mut b, NODE_OUTPUT, output);
    put_bytes(&mut b, NODE_NAME, output);
    put_bytes(&mut b, NODE_OP_TYPE, op);
    b
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(number) << 3) | u64::from(LEN));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(b: &mut &[u8]) -> Result<u64, GraphError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b
            .split_first()
            .ok_or(GraphError::Malformed("truncated varint"))?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(GraphError::Malformed("varint longer than 10 bytes"))
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], GraphError> {
    if b.len() < n {
        return Err(GraphError::Malformed("field runs past its message"));
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

/// One field's value, by wire type.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
}

/// One field of a message, with its encoding (key included) to copy it as is.
struct Field<'a> {
    number: u32,
    value: Value<'a>,
    raw: &'a [u8],
}

impl<'a> Field<'a> {
    /// The value if this is field `first`, or field `second`.
    fn value_of(&self, first: u32, second: u32) -> (Option<Value<'a>>, Option<Value<'a>>) {
        match self.number {
            n if n == first => (Some(self.value), None),
            n if n == second => (None, Some(self.value)),
            _ => (None, None),
        }
    }
}

/// The fields of one message, in order.
struct Fields<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(message: &'a [u8]) -> Self {
        Fields {
            rest: message,
            failed: false,
        }
    }

    fn field(&mut self) -> Result<Field<'a>, GraphError> {
        let start = self.rest;
        let key = varint(&mut self.rest)?;
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|&n| n > 0)
            .ok_or(GraphError::Malformed("bad field number"))?;
        let value = match (key & 7) as u8 {
            VARINT => Value::Varint(varint(&mut self.rest)?),
            FIXED64 => {
                take(&mut self.rest, 8)?;
                Value::Fixed64
            }
            LEN => {
                let n = usize::try_from(varint(&mut self.rest)?)
                    .map_err(|_| GraphError::Malformed("length too large"))?;
                Value::Bytes(take(&mut self.rest, n)?)
            }
            FIXED32 => {
                let b = take(&mut self.rest, 4)?;
                Value::Fixed32([b[0], b[1], b[2], b[3]])
            }
            _ => return Err(GraphError::Malformed("unsupported wire type")),
        };
        let raw = &start[..start.len() - self.rest.len()];
        Ok(Field { number, value, raw })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, GraphError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let field = self.field();
        self.failed = field.is_err();
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_varint_field(out: &mut Vec<u8>, number: u32, v: u64) {
        put_varint(out, u64::from(number) << 3);
        put_varint(out, v);
    }

    fn tensor(name: &[u8], dims: &[u64], values: &[f32]) -> Vec<u8> {
        let mut t = Vec::new();
        for &d in dims {
            put_varint_field(&mut t, TENSOR_DIMS, d);
        }
        put_varint_field(&mut t, TENSOR_DATA_TYPE, TENSOR_FLOAT);
        put_bytes(&mut t, TENSOR_NAME, name);
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        put_bytes(&mut t, TENSOR_RAW_DATA, &raw);
        t
    }

    /// A model of `nodes` and `initializers` importing the default opset `opset`.
    fn model_of(opset: u64, nodes: &[Vec<u8>], initializers: &[Vec<u8>]) -> Vec<u8> {
        let mut g = Vec::new();
        for n in nodes {
            put_bytes(&mut g, GRAPH_NODE, n);
        }
        for t in initializers {
            put_bytes(&mut g, GRAPH_INITIALIZER, t);
        }
        let mut o = Vec::new();
        put_varint_field(&mut o, OPSET_VERSION, opset);
        let mut m = Vec::new();
        put_varint_field(&mut m, 1, 8); // ir_version, copied as is
        put_bytes(&mut m, MODEL_OPSET_IMPORT, &o);
        put_bytes(&mut m, MODEL_GRAPH, &g);
        m
    }

    fn prelu() -> Vec<u8> {
        encode_node(b"PRelu", &[b"x", b"a"], b"y")
    }

    /// One `PRelu` whose slope `a` is an initializer of shape [C, 1, 1].
    fn model(opset: u64, slopes: &[f32]) -> Vec<u8> {
        let a = tensor(b"a", &[slopes.len() as u64, 1, 1], slopes);
        model_of(opset, &[prelu()], &[a])
    }

    fn ops(model: &[u8]) -> Vec<String> {
        let graph = Fields::new(model)
            .map(Result::unwrap)
            .find(|f| f.number == MODEL_GRAPH)
            .unwrap();
        let Value::Bytes(g) = graph.value else {
            panic!()
        };
        Fields::new(g)
            .map(Result::unwrap)
            .filter(|f| f.number == GRAPH_NODE)
            .map(|f| {
                let Value::Bytes(b) = f.value else { panic!() };
                String::from_utf8(Node::parse(b).unwrap().op_type.to_vec()).unwrap()
            })
            .collect()
    }

    #[test]
    fn slopes_on_one_side_of_one_become_two_vector_ops() {
        let m = fast_prelu(&model(13, &[0.25, -0.5, 1.0])).unwrap().unwrap();
        assert_eq!(m.prelus, 1);
        assert_eq!(ops(&m.bytes), ["Mul", "Max"]);
        let m = fast_prelu(&model(13, &[1.0, 1.5])).unwrap().unwrap();
        assert_eq!(ops(&m.bytes), ["Mul", "Min"]);
        let m = fast_prelu(&model(13, &[0.5, 1.5])).unwrap().unwrap();
        assert_eq!(ops(&m.bytes), ["Relu", "Sub", "Mul", "Add"]);
    }

    #[test]
    fn the_rest_of_the_model_is_copied_byte_for_byte() {
        let before = model(13, &[0.25]);
        let after = fast_prelu(&before).unwrap().unwrap().bytes;
        let head = |m: &[u8]| -> Vec<Vec<u8>> {
            Fields::new(m)
                .map(Result::unwrap)
                .filter(|f| f.number != MODEL_GRAPH)
                .map(|f| f.raw.to_vec())
                .collect()
        };
        assert_eq!(head(&before), head(&after));
    }

    #[test]
    fn what_is_not_a_constant_finite_slope_is_left_alone() {
        assert!(fast_prelu(&model(7, &[0.25])).unwrap().is_none(), "opset 7");
        assert!(fast_prelu(&model(13, &[f32::NAN])).unwrap().is_none());
        // A slope whose element count does not match its shape.
        let short = tensor(b"a", &[4], &[0.1, 0.2]);
        assert!(
            fast_prelu(&model_of(13, &[prelu()], &[short]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_name_already_taken_is_not_reused() {
        let taken = encode_node(b"Relu", &[b"x"], b"y/arclock_prelu/ax");
        let a = tensor(b"a", &[1], &[0.1]);
        assert!(
            fast_prelu(&model_of(13, &[taken, prelu()], &[a]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn truncated_bytes_are_an_error_not_a_panic() {
        let m = model(13, &[0.25, 0.5]);
        for cut in 0..m.len() {
            let _ = fast_prelu(&m[..cut]);
        }
        assert!(fast_prelu(&[0x3a, 0xff]).is_err());
    }

    #[test]
    fn each_form_gives_prelu_bit_for_bit() {
        let xs = [-3.5f32, -1e-30, -0.0, 0.0, 1e-30, 2.25, -7.0, 1e30, -1e30];
        for a in [-1.6f32, -0.3, 0.0, 0.25, 1.0, 1.4] {
            for x in xs {
                let prelu = if x < 0.0 { x * a } else { x };
                let form = if a <= 1.0 { x.max(a * x) } else { x.min(a * x) };
                let relu = x.max(0.0);
                let mixed = relu + a * (x - relu);
                assert_eq!(prelu, form, "x={x} a={a}");
                assert_eq!(prelu, mixed, "x={x} a={a}");
            }
        }
    }
}
