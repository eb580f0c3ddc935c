"""Edits of a converted ``.tflite`` flatbuffer, each leaving what the model computes as it was.

* :func:`widen_empty_ranges`: calibrated activation ranges narrower than int8 can resolve are
  widened (so XNNPACK accepts the graph);
* :func:`fold_flatten_into_fully_connected`: the organisers' graph for a Keras Flatten + Dense;
* :func:`fold_stride_into_channels`: a strided convolution of a one-channel input as an unstrided
  one over channels (the same int8 outputs, about half the time in XNNPACK);
* :func:`single_op_models`: every operator as a model of its own (the per-operator profile).

The flatbuffer is edited through LiteRT's generated schema objects (``ModelT``).
"""

from __future__ import annotations

import numpy as np


def _unpacked(flatbuffer: bytes):
    """The ``.tflite`` flatbuffer as LiteRT's editable schema object (``ModelT``)."""
    from ai_edge_litert import schema_py_generated as schema

    return schema.ModelT.InitFromPackedBuf(flatbuffer, 0)


def _packed(model, size_hint: int) -> bytes:
    """An edited ``ModelT`` written back as a ``.tflite`` flatbuffer."""
    import flatbuffers

    builder = flatbuffers.Builder(size_hint)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _op_kinds(model) -> list[str]:
    """The builtin operator name of each entry of ``model.operatorCodes`` ('CONV_2D', ...)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return [
        names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "CUSTOM")
        for c in model.operatorCodes
    ]


def single_op_models(flatbuffer: bytes) -> list[tuple[str, bytes]]:
    """Each operator of the main graph as a model of its own, in execution order: (operator name,
    ``.tflite`` flatbuffer) whose inputs are the operator's non-constant inputs and whose outputs
    are its outputs, with their quantisation as in the whole model.

    What a per-operator profile times one by one (LiteRT's Python API has no op profiler; its
    C++ ``benchmark_model --enable_op_profiling`` is not in the wheel).  Every other tensor and
    buffer stays in each file, unreferenced; signatures are dropped (they name the whole model's
    inputs).
    """
    model = _unpacked(flatbuffer)
    kinds = _op_kinds(model)
    graph = model.subgraphs[0]
    ops, saved = list(graph.operators), (graph.inputs, graph.outputs, model.signatureDefs)

    def constant(t: int) -> bool:
        data = model.buffers[graph.tensors[t].buffer].data
        return data is not None and len(data) > 0

    out = []
    for op in ops:
        graph.operators = [op]
        graph.inputs = [int(t) for t in op.inputs if t >= 0 and not constant(t)]
        graph.outputs = [int(t) for t in op.outputs]
        model.signatureDefs = []
        out.append((kinds[op.opcodeIndex], _packed(model, len(flatbuffer))))
    graph.operators, (graph.inputs, graph.outputs, model.signatureDefs) = ops, saved
    return out


def widen_empty_ranges(calibrated: bytes, floor: float = 1e-3) -> bytes:
    """A calibrated model whose activation ranges narrower than ``floor`` are widened to it.

    Why: a ReLU unit that stays at zero on every calibration input (seen: a SERFR-CNN's
    squeeze-and-excitation 'reduce' units after a short training) is calibrated to [0, 1e-38]
    and quantised with a scale of ~1e-8.  Its convolution's requantisation scale (input scale x
    weight scale / output scale) is then ~1e4, beyond the 256 XNNPACK accepts, and LiteRT runs
    the whole graph on its slower builtin kernels.  A tensor whose values all lie within
    ``floor`` of each other carries nothing at int8 resolution, so widening its range changes
    no output the calibration data saw; ranges of ``floor`` or more are left as they are.
    """
    model = _unpacked(calibrated)
    changed = False
    for graph in model.subgraphs:
        for t in graph.tensors:
            q = t.quantization
            if q is None or q.min is None or q.max is None or not len(q.min):
                continue
            lo, hi = np.asarray(q.min, np.float64), np.asarray(q.max, np.float64)
            narrow = hi - lo < floor
            if narrow.any():
                q.max = np.where(narrow, lo + floor, hi).astype(np.float32).tolist()
                changed = True
    if not changed:
        return calibrated
    return _packed(model, len(calibrated))


def fold_flatten_into_fully_connected(flatbuffer: bytes) -> bytes:
    """Feed each FULLY_CONNECTED the unflattened tensor of the RESHAPE (a Keras Flatten) before it.

    TFLite's FULLY_CONNECTED flattens its input itself (to rows of the weights' input size), so a
    RESHAPE that only flattens for it is a no-op; the converter of the DCASE baselines' era folded
    it away, today's keeps it (plus a SHAPE / STRIDED_SLICE / PACK chain for a free batch axis).
    Removing them gives the organisers' graph -- the one their NeSsi counts were made on -- with
    the same outputs at any batch size.  Operators whose outputs nothing reads any more are
    dropped; their tensors stay in the file, unreferenced.  Files without such a pair are returned
    unchanged.
    """
    model = _unpacked(flatbuffer)
    kinds = _op_kinds(model)
    changed = False
    for g in model.subgraphs:

        def kind(op):
            return kinds[op.opcodeIndex]

        readers: dict[int, int] = {}
        for op in g.operators:
            for t in op.inputs:
                readers[int(t)] = readers.get(int(t), 0) + 1
        producer = {int(op.outputs[0]): op for op in g.operators if len(op.outputs)}
        for op in g.operators:
            src = producer.get(int(op.inputs[0])) if kind(op) == "FULLY_CONNECTED" else None
            if src is not None and kind(src) == "RESHAPE" and readers.get(int(src.outputs[0])) == 1:
                op.inputs = [int(src.inputs[0])] + [int(t) for t in op.inputs[1:]]
                changed = True
        while (
            changed
        ):  # drop operators whose outputs nobody reads (the RESHAPE and its shape chain)
            read = {int(t) for op in g.operators for t in op.inputs} | {int(t) for t in g.outputs}
            alive = [op for op in g.operators if any(int(t) in read for t in op.outputs)]
            if len(alive) == len(g.operators):
                break
            g.operators = alive
    if not changed:
        return flatbuffer
    return _packed(model, len(flatbuffer))


def fold_stride_into_channels(flatbuffer: bytes) -> bytes:
    """Run each CONV_2D of a one-channel input with width stride ``s`` > 1 (SERFR-CNN's 5x5 stem,
    stride (1, 2) over 256 mel bins) as a RESHAPE of its input to ``s`` channels of adjacent bins
    (width W -> W / s) and a CONV_2D with stride 1 along the width.

    Why: XNNPACK's int8 convolution kernels take input channels in groups, so one channel wastes
    most of each step; measured (LiteRT, 1 thread): the stem alone 0.82 ms as written, 0.49 ms
    folded, the whole student's largest operator.  It computes the same: output column j of the
    original reads bins s*j - pl .. s*j - pl + k - 1 (SAME padding, ``pl`` on the left); the
    folded kernel reads bin groups j - h .. j + h (SAME, ``h`` on each side), holds the original's
    int8 weights at the bins it read and zeros elsewhere, so every accumulator, hence every
    output, is the same integer.  The folded graph multiplies by those zeros too (+20 % of the
    stem's multiply-adds for s = 2, k = 5), and NeSsi counts a file's MACs from its shapes, so
    the files we write stay unfolded and :class:`~asc_keras.compress.tflite.TFLiteModel` folds
    them in memory when it loads them.  Other convolutions, and files without such a stem, are
    returned as they are.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = _unpacked(flatbuffer)
    kinds = _op_kinds(model)
    changed = False
    for g in model.subgraphs:
        for op in g.operators:
            if kinds[op.opcodeIndex] == "CONV_2D" and _fold_stride(model, g, op, schema):
                changed = True
    return _packed(model, len(flatbuffer)) if changed else flatbuffer


def _fold_stride(model, g, op, schema) -> bool:
    """Fold one convolution (see :func:`fold_stride_into_channels`); False when it does not apply."""
    o = op.builtinOptions
    x, w = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]]
    data = model.buffers[w.buffer].data
    applies = o.strideW > 1 and o.padding == schema.Padding.SAME and o.dilationWFactor == 1
    applies = applies and x.shape[-1] == 1 and x.shape[-2] % o.strideW == 0
    if not (applies and w.type == schema.TensorType.INT8 and data is not None and len(data)):
        return False
    s, width = o.strideW, int(x.shape[-2])
    kernel = np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.int8).reshape(
        w.shape
    )  # (O, kh, kw, 1)
    kw = kernel.shape[2]
    pl = max((width // s - 1) * s + kw - width, 0) // 2  # the left padding of SAME
    h = max(-((-pl) // s), (kw - 1 - pl) // s)  # bin groups either side of column j
    folded = np.zeros((kernel.shape[0], kernel.shape[1], 2 * h + 1, s), np.int8)
    for dp in range(2 * h + 1):
        for c in range(s):
            t = s * (dp - h) + c + pl  # the original tap reading this bin
            if 0 <= t < kw:
                folded[:, :, dp, c] = kernel[:, :, t, 0]
    model.buffers.append(schema.BufferT())
    model.buffers[-1].data = np.frombuffer(folded.tobytes(), np.uint8).copy()
    w.buffer, w.shape = len(model.buffers) - 1, np.array(folded.shape, np.int32)
    grouped = schema.TensorT()
    grouped.name, grouped.type, grouped.quantization = (
        f"{_name(x)}_in_{s}_channels".encode(),
        x.type,
        x.quantization,
    )
    grouped.shape = np.array([*x.shape[:-2], width // s, s], np.int32)
    if x.shapeSignature is not None and len(x.shapeSignature):
        grouped.shapeSignature = np.array([*x.shapeSignature[:-2], width // s, s], np.int32)
    grouped.buffer = 0
    g.tensors.append(grouped)
    reshape = schema.OperatorT()
    reshape.opcodeIndex = _opcode(model, schema.BuiltinOperator.RESHAPE, schema)
    reshape.inputs, reshape.outputs = [int(op.inputs[0])], [len(g.tensors) - 1]
    reshape.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
    reshape.builtinOptions = schema.ReshapeOptionsT()
    signature = grouped.shapeSignature if grouped.shapeSignature is not None else grouped.shape
    reshape.builtinOptions.newShape = [int(d) for d in signature]  # -1: the free batch axis
    g.operators.insert(list(g.operators).index(op), reshape)
    op.inputs = [len(g.tensors) - 1] + [int(t) for t in op.inputs[1:]]
    o.strideW = 1
    return True


def _name(t) -> str:
    return t.name.decode() if isinstance(t.name, bytes) else str(t.name)


def _opcode(model, builtin: int, schema) -> int:
    """The index of ``builtin``'s entry in ``model.operatorCodes``, added when missing."""
    for i, c in enumerate(model.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1
