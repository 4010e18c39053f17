//! The bounds every read is held to, so that a hostile file costs at most a
//! known amount of memory and time before it is refused.

/// Bounds on what a model may contain. Every limit is checked before the
/// memory it guards is allocated (the file size before the file is read, a
/// tensor's byte size before its external data is read, the structure of the
/// protobuf before it is decoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest `.onnx` file (or byte slice) accepted. Default 4 GiB. Protobuf
    /// itself caps a message at 2 GiB, so this mostly guards the read.
    pub max_file_bytes: u64,
    /// Memory the decoded message structs may take beyond the payload bytes
    /// themselves, estimated by `scan.rs` from the wire format before decoding.
    /// An empty protobuf message is two bytes on the wire but a struct of up to a
    /// few hundred bytes in memory, so without this a small file of empty nodes
    /// could ask for a hundred times its size. Default 1 GiB.
    pub max_struct_bytes: u64,
    /// Deepest nesting of graphs: the main graph is depth 1, a subgraph
    /// attribute (`If`, `Loop`, `Scan` bodies) of one of its nodes depth 2. Default 8.
    pub max_graph_depth: usize,
    /// Nodes in all graphs together, subgraphs included. Default 1,000,000.
    pub max_nodes: usize,
    /// Rank of a tensor or of a declared value shape. Default 16.
    pub max_rank: usize,
    /// Bytes of one tensor's data (element count × element size, checked
    /// arithmetic). Default 4 GiB.
    pub max_tensor_bytes: u64,
    /// Bytes read from external data files over the whole model. Default 16 GiB.
    pub max_external_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        const GIB: u64 = 1 << 30;
        Limits {
            max_file_bytes: 4 * GIB,
            max_struct_bytes: GIB,
            max_graph_depth: 8,
            max_nodes: 1_000_000,
            max_rank: 16,
            max_tensor_bytes: 4 * GIB,
            max_external_bytes: 16 * GIB,
        }
    }
}
