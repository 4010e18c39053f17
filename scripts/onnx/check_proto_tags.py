#!/usr/bin/env python3
"""Checks every field number and enum value of `crates/onnx/src/proto.rs`
against the protobuf descriptors compiled into the installed `onnx` package.

    /work/venv/bin/python scripts/onnx/check_proto_tags.py

The Rust messages are written by hand (no protoc), so this is what keeps a
typo in a `tag = "N"` from silently reading the wrong field. Exits 1 and lists
every difference if there is one.
"""

import os
import re
import sys

import onnx
from onnx import onnx_ml_pb2 as pb

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_RS = os.path.join(HERE, "..", "..", "crates", "onnx", "src", "proto.rs")

# Rust struct / enum name -> protobuf descriptor.
MESSAGES = {
    "ModelProto": pb.ModelProto.DESCRIPTOR,
    "OperatorSetIdProto": pb.OperatorSetIdProto.DESCRIPTOR,
    "StringStringEntryProto": pb.StringStringEntryProto.DESCRIPTOR,
    "GraphProto": pb.GraphProto.DESCRIPTOR,
    "NodeProto": pb.NodeProto.DESCRIPTOR,
    "AttributeProto": pb.AttributeProto.DESCRIPTOR,
    "TensorProto": pb.TensorProto.DESCRIPTOR,
    "Segment": pb.TensorProto.Segment.DESCRIPTOR,
    "ValueInfoProto": pb.ValueInfoProto.DESCRIPTOR,
    "TypeProto": pb.TypeProto.DESCRIPTOR,
    "Tensor": pb.TypeProto.Tensor.DESCRIPTOR,
    "TensorShapeProto": pb.TensorShapeProto.DESCRIPTOR,
    "Dimension": pb.TensorShapeProto.Dimension.DESCRIPTOR,
}
ENUMS = {
    "AttributeType": pb.AttributeProto.AttributeType.DESCRIPTOR,
    "DataType": pb.TensorProto.DataType.DESCRIPTOR,
    "DataLocation": pb.TensorProto.DataLocation.DESCRIPTOR,
}
# Oneof arms: Rust variant -> protobuf field name.
ONEOF_ARMS = {"TensorType": "tensor_type", "DimValue": "dim_value", "DimParam": "dim_param"}


def snake(name):
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).upper()


def main():
    src = open(PROTO_RS).read().split("\n")
    errors = []
    checked = 0
    current = None
    kind = None
    pending_tag = None
    oneof_owner = {"Value": None}
    for line in src:
        m = re.match(r"\s*pub (struct|enum) (\w+)", line)
        if m:
            kind, current = m.group(1), m.group(2)
            continue
        m = re.search(r'#\[prost\((.*)\)\]', line)
        if m:
            t = re.search(r'tags? = "([0-9, ]+)"', m.group(1))
            pending_tag = [int(x) for x in t.group(1).split(",")] if t else None
            continue
        m = re.match(r"\s*(?:pub )?(r#)?(\w+)(?:: |\()", line)
        if m and pending_tag is not None:
            field = m.group(2)
            if current in MESSAGES:
                desc = MESSAGES[current]
                if field == "value" and current in ("TypeProto", "Dimension"):
                    # A oneof: its arms are checked below, with the owner's descriptor.
                    oneof_owner["Value"] = desc
                    want = sorted(
                        f.number for f in desc.oneofs_by_name["value"].fields if f.name in ONEOF_ARMS.values()
                    )
                    if sorted(pending_tag) != want:
                        errors.append(f"{current}.value: tags {pending_tag}, onnx has {want} for the declared arms")
                elif field not in desc.fields_by_name:
                    errors.append(f"{current}.{field}: no such field in onnx")
                elif desc.fields_by_name[field].number != pending_tag[0]:
                    errors.append(f"{current}.{field}: tag {pending_tag[0]}, onnx {desc.fields_by_name[field].number}")
                checked += 1
            elif current == "Value" and field in ONEOF_ARMS:
                desc = pb.TypeProto.DESCRIPTOR if field == "TensorType" else pb.TensorShapeProto.Dimension.DESCRIPTOR
                number = desc.fields_by_name[ONEOF_ARMS[field]].number
                if number != pending_tag[0]:
                    errors.append(f"oneof arm {field}: tag {pending_tag[0]}, onnx {number}")
                checked += 1
            pending_tag = None
            continue
        m = re.match(r"\s*(\w+) = (\d+),$", line)
        if m and kind == "enum" and current in ENUMS:
            desc = ENUMS[current]
            name = m.group(1)
            proto_name = name.upper() if current == "DataType" else snake(name)
            if proto_name not in desc.values_by_name:
                errors.append(f"{current}::{name}: no value {proto_name} in onnx")
            elif desc.values_by_name[proto_name].number != int(m.group(2)):
                errors.append(f"{current}::{name} = {m.group(2)}, onnx {desc.values_by_name[proto_name].number}")
            checked += 1
    for e in errors:
        print(e)
    print(f"onnx {onnx.__version__}: {checked} fields and enum values checked, {len(errors)} differences")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
