"""Open Inference Protocol v2 tensors: the request's JSON header and binary tail in, the response's out.

Pure functions on bytes and arrays, so every malformed input can be tested without a server; the routes
(app/routes/oip.py) add reading, limits, decoding and the batcher. Every refusal is a ``ServiceError``
(400, or 413 for a limit), whose message the route answers as OIP's ``{"error": ...}``.

The binary tensor data extension: with ``Inference-Header-Content-Length: n`` the body's first n bytes are
the JSON header and the rest is the inputs' raw data, back to back, each input saying how many bytes are
its own in ``parameters.binary_data_size``. BYTES elements, in binary, are each a 4-byte little-endian
length and then that many bytes. In JSON, BYTES elements are strings: here, base64 of the image file
(an image file is not UTF-8 text, so raw strings could not carry it; docs/oip.md).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.errors import BadRequest, PayloadTooLarge

IMAGES = "images"  # BYTES [N] (or [N, 1]): encoded image files, decoded exactly as /predict's uploads
PIXELS = "pixels"  # UINT8 [N, S, S, 3]: images already reduced to the model's source size
INPUT_TYPES = {IMAGES: "BYTES", PIXELS: "UINT8"}
HEADER_LENGTH = "inference-header-content-length"
_LENGTH = struct.Struct("<I")  # a BYTES element's length prefix in binary data
# numpy dtypes of the datatypes this service answers with, little-endian as the extension requires
_DTYPES = {"FP32": np.dtype("<f4"), "BOOL": np.dtype("?")}


@dataclass(frozen=True)
class InputTensor:
    """The request's one input: its name and shape, and either its images' bytes or its pixels."""

    name: str
    shape: list[int]
    files: list[bytes] = field(default_factory=list)  # IMAGES
    pixels: np.ndarray | None = None  # PIXELS: uint8 (N, S, S, 3)

    @property
    def count(self) -> int:
        return self.shape[0]


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    input: InputTensor
    outputs: dict[str, bool] | None  # requested name -> binary; None: every output
    binary_default: bool  # for outputs not listed: the request's parameters.binary_data_output


@dataclass(frozen=True)
class Limits:
    max_files: int
    max_file_bytes: int
    source_size: int


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tail), by the ``Inference-Header-Content-Length`` header when there is one."""
    if header_length is None:
        return body, b""
    value = header_length.strip()
    if not value.isdigit():  # also refuses "-1", "+3", "1e3" and "" before int() could accept any
        raise BadRequest(f"the Inference-Header-Content-Length header is not a non-negative integer: {value[:40]!r}")
    length = int(value)
    if length > len(body):
        raise BadRequest(f"Inference-Header-Content-Length is {length:,} but the body is only {len(body):,} bytes")
    return body[:length], body[length:]


def parse_request(header: bytes, binary: bytes, limits: Limits) -> InferRequest:
    """Parse and check an inference request; raises BadRequest or PayloadTooLarge with what is wrong."""
    try:
        document = json.loads(header)
    except (UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise BadRequest(f"the inference request header is not valid JSON ({exc})") from None
    except RecursionError:  # "[[[[...": the parser's own depth limit, which would otherwise be a 500
        raise BadRequest("the inference request header is nested too deeply") from None
    if not isinstance(document, dict):
        raise BadRequest("the inference request must be a JSON object")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise BadRequest(f"'inputs' must be a list of exactly one tensor: {IMAGES!r} (BYTES) or {PIXELS!r} (UINT8)")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    tensor = _parse_input(inputs[0], binary, limits)
    outputs = _requested_outputs(document.get("outputs"))
    binary_default = _binary_flag(document.get("parameters"), "binary_data_output", "the request")
    return InferRequest(request_id, tensor, outputs, binary_default)


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"'parameters' of {where} must be a JSON object")
    return value


def _binary_flag(parameters: Any, name: str, where: str) -> bool:
    flag = _parameters(parameters, where).get(name, False)
    if not isinstance(flag, bool):
        raise BadRequest(f"{where}: parameters.{name} must be true or false")
    return flag


def _requested_outputs(value: Any) -> dict[str, bool] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadRequest("'outputs' must be a list")
    requested: dict[str, bool] = {}
    for output in value:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise BadRequest("each requested output must be an object with a 'name'")
        name = output["name"]
        requested[name] = _binary_flag(output.get("parameters"), "binary_data", f"output {name!r}")
    return requested


def _parse_input(tensor: Any, binary: bytes, limits: Limits) -> InputTensor:
    if not isinstance(tensor, dict):
        raise BadRequest("the input tensor must be a JSON object")
    name, datatype = tensor.get("name"), tensor.get("datatype")
    if name not in INPUT_TYPES:
        raise BadRequest(f"unknown input {name!r}: send {IMAGES!r} (BYTES, image files) or {PIXELS!r} (UINT8 pixels)")
    if datatype != INPUT_TYPES[name]:
        raise BadRequest(f"input {name!r} must have datatype {INPUT_TYPES[name]}, got {datatype!r}")
    shape = _shape(tensor.get("shape"), name, limits)
    size = _parameters(tensor.get("parameters"), f"input {name!r}").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest(f"input {name!r}: parameters.binary_data_size must be a non-negative integer")
        if size != len(binary):  # one input: its size is the whole tail, no more and no less
            raise BadRequest(
                f"input {name!r}: binary_data_size is {size:,} but {len(binary):,} bytes follow the header"
            )
        if "data" in tensor:
            raise BadRequest(f"input {name!r} has both 'data' and binary data")
    elif binary:
        raise BadRequest(f"{len(binary):,} bytes follow the header but input {name!r} has no binary_data_size")
    elif "data" not in tensor:
        raise BadRequest(f"input {name!r} has no 'data' and no binary data")
    if name == IMAGES:
        files = _binary_files(binary, shape) if size is not None else _json_files(tensor["data"], shape)
        for index, data in enumerate(files):
            if len(data) > limits.max_file_bytes:
                raise PayloadTooLarge(
                    f"{IMAGES}[{index}] is {len(data):,} bytes, over the limit of {limits.max_file_bytes:,}"
                )
        return InputTensor(name, shape, files=files)
    pixels = _binary_pixels(binary, shape) if size is not None else _json_pixels(tensor["data"], shape)
    return InputTensor(name, shape, pixels=pixels)


def _shape(value: Any, name: str, limits: Limits) -> list[int]:
    """The declared shape, checked against what the input must be; its first dimension is the image count."""
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise BadRequest(f"input {name!r}: 'shape' must be a list of integers")
    s = limits.source_size
    if name == IMAGES and not (len(value) == 1 or (len(value) == 2 and value[1] == 1)):
        raise BadRequest(f"input {IMAGES!r} must have shape [N] or [N, 1], got {value}")
    if name == PIXELS and (len(value) != 4 or value[1:] != [s, s, 3]):
        raise BadRequest(f"input {PIXELS!r} must have shape [N, {s}, {s}, 3] (the model's source size), got {value}")
    if value[0] < 1:
        raise BadRequest(f"input {name!r}: the first dimension (images) must be at least 1, got {value[0]}")
    if value[0] > limits.max_files:
        raise PayloadTooLarge(f"too many images: {value[0]}, at most {limits.max_files} per request")
    return value


def _binary_files(binary: bytes, shape: list[int]) -> list[bytes]:
    """BYTES elements in binary: each a 4-byte little-endian length, then that many bytes."""
    files, offset = [], 0
    for index in range(shape[0]):
        if offset + _LENGTH.size > len(binary):
            raise BadRequest(f"input {IMAGES!r}: the binary data ends before element {index}'s length prefix")
        (length,) = _LENGTH.unpack_from(binary, offset)
        offset += _LENGTH.size
        if offset + length > len(binary):
            raise BadRequest(
                f"input {IMAGES!r}: element {index} claims {length:,} bytes but only {len(binary) - offset:,} remain"
            )
        files.append(binary[offset : offset + length])
        offset += length
    if offset != len(binary):
        raise BadRequest(f"input {IMAGES!r}: {len(binary) - offset:,} bytes left over after {shape[0]} element(s)")
    return files


def _json_files(data: Any, shape: list[int]) -> list[bytes]:
    elements = _flatten(data)
    if len(elements) != shape[0]:
        raise BadRequest(f"input {IMAGES!r}: shape {shape} needs {shape[0]} element(s), 'data' has {len(elements)}")
    files = []
    for index, element in enumerate(elements):
        if not isinstance(element, str):
            raise BadRequest(f"input {IMAGES!r}: element {index} must be a string (base64 of the image file)")
        try:
            files.append(base64.b64decode(element, validate=True))
        except (binascii.Error, ValueError):
            raise BadRequest(f"input {IMAGES!r}: element {index} is not valid base64") from None
    return files


def _binary_pixels(binary: bytes, shape: list[int]) -> np.ndarray:
    if len(binary) != math.prod(shape):
        raise BadRequest(f"input {PIXELS!r}: shape {shape} needs {math.prod(shape):,} bytes, got {len(binary):,}")
    return np.frombuffer(binary, dtype=np.uint8).reshape(shape).copy()  # writable, its own memory


def _json_pixels(data: Any, shape: list[int]) -> np.ndarray:
    elements = _flatten(data)  # the spec's row-major flat list; nested lists are accepted too
    if len(elements) != math.prod(shape):
        raise BadRequest(
            f"input {PIXELS!r}: shape {shape} needs {math.prod(shape):,} values, 'data' has {len(elements):,}"
        )
    if not all(type(v) is int and 0 <= v <= 255 for v in elements):  # type(): True is an int, but not a pixel
        raise BadRequest(f"input {PIXELS!r}: every value must be an integer from 0 to 255")
    return np.array(elements, dtype=np.uint8).reshape(shape)


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise BadRequest("'data' must be a list")
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:  # iterative: a deeply nested list must not hit the recursion limit (a 500)
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str
    values: np.ndarray  # numeric outputs; BYTES: an object array of bytes


def encode_response(head: dict[str, Any], outputs: list[tuple[OutputTensor, bool]]) -> tuple[bytes, int | None]:
    """(body, JSON header length or None when no output is binary) for outputs given as (tensor, binary)."""
    tail: list[bytes] = []
    described = []
    for tensor, binary in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.values.shape)}
        if binary:
            raw = raw_bytes(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        elif tensor.datatype == "BYTES":
            entry["data"] = [v.decode("utf-8", "replace") for v in tensor.values.reshape(-1)]
        else:
            entry["data"] = tensor.values.reshape(-1).tolist()
        described.append(entry)
    header = json.dumps({**head, "outputs": described}).encode()
    if not tail:
        return header, None
    return header + b"".join(tail), len(header)


def raw_bytes(tensor: OutputTensor) -> bytes:
    """A tensor's data as the binary extension and gRPC's raw contents carry it: little-endian, BYTES prefixed."""
    if tensor.datatype == "BYTES":
        return length_prefixed(tensor.values.reshape(-1))
    return np.ascontiguousarray(tensor.values, dtype=_DTYPES[tensor.datatype]).tobytes()


def length_prefixed(elements: Iterable[bytes]) -> bytes:
    """BYTES elements as binary data carries them: each a 4-byte little-endian length, then its bytes."""
    return b"".join(_LENGTH.pack(len(element)) + element for element in elements)
