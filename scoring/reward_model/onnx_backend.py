"""ONNX export of a reward model, and scoring it with ONNX Runtime on a CPU.

An ONNX reward model is a directory holding ``model.onnx`` (the sequence-classification graph:
``input_ids`` and ``attention_mask`` in, one logit per transcript out), the tokenizer and
``config.json`` of the checkpoint it came from, and ``arbiter_onnx.json`` (how it was exported).
:func:`.scorer.load_scorer` hands such a directory to :class:`OnnxRewardModel`, which has the
torch model's scoring API (the :class:`.scorer.Scorer` protocol) and renders, tokenizes and
truncates transcripts exactly as the torch model does (:mod:`.formatting`).

``quantize="int8"`` stores the weights of the matrix products as int8 in blocks of 32 input
channels (weight-only; see :func:`_quantize`); ``"int8-dynamic"`` is
``onnxruntime.quantization.quantize_dynamic`` (int8 activations and arithmetic too). Neither
needs calibration data. On GPUs, serve the ordinary checkpoint in bf16/FP16 instead (the default
of ``RewardModel.load(..., inference_only=True)``).

Pure: torch (only for the export), onnx, onnxruntime and transformers; no Django.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase

from .files import chmod_from_umask, fsync_tree, move_into_place, staging_directory
from .transcript_scoring import TranscriptScoring

if TYPE_CHECKING:
    import onnxruntime

    from .model import RewardModel

ONNX_FILE = "model.onnx"
MANIFEST_FILE = "arbiter_onnx.json"
QUANTIZATIONS = ("int8", "int8-dynamic")
# Encoders whose graphs ONNX Runtime's transformer optimizer fuses with its "bert" patterns.
FUSABLE_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta"})
# Input channels per int8 weight block (each block has its own scale).
INT8_BLOCK = 32
DEFAULT_OPSET = 17
DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_BATCH_TOKENS = 32_768
# A row joins a batch only while it is at most this share shorter than the batch's longest row.
# ONNX Runtime computes every padded position (this graph has no padding-free path, unlike the
# torch model's packed batches): batches of 32 cut from a length-sorted call of 64 hh-rlhf
# transcripts held 1.89x the real tokens and 3.1x the real attention work.
DEFAULT_MAX_PADDING = 0.1
# Kept in config.json by the torch model; an ONNX model keeps the same key for its window.
_MAX_POSITIONS_KEY = "max_position_embeddings"


class OnnxExportError(ValueError):
    """The model cannot be exported as asked (unknown quantisation, unsupported graph)."""


def is_onnx_model(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a directory written by :func:`export_onnx`."""
    directory = Path(path)
    return (directory / ONNX_FILE).is_file() and (directory / MANIFEST_FILE).is_file()


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((Path(path) / MANIFEST_FILE).read_text("utf-8"))
    return manifest


# --- export -----------------------------------------------------------------------------------


def export_onnx(
    model: RewardModel,
    path: str | os.PathLike[str],
    *,
    quantize: str | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write ``model`` as an ONNX reward model directory at ``path``, atomically.

    The graph is traced in float32 on the CPU with dynamic batch and sequence axes. The
    directory is written beside ``path`` and renamed into place once complete, so ``path``
    holds a whole model or none (an existing directory there is replaced). Returns the path.
    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise OnnxExportError(f"quantize must be one of {QUANTIZATIONS} or None, got {quantize!r}.")
    final_path = Path(path).absolute()
    final_path.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_directory(final_path)
    try:
        traced = staging / "traced.onnx"
        config = model.model.config.get_text_config()
        fusable = config.model_type in FUSABLE_MODEL_TYPES
        _trace(model, traced, opset=opset, eager_attention=fusable)
        graph, fusions, first_token_only = traced, {}, False
        if fusable:
            graph = staging / "fused.onnx"
            fusions = _fuse(traced, graph, config)
            traced.unlink()
            first_token_only = _last_layer_on_first_token(graph)
        if quantize is not None:
            _quantize(graph, staging / ONNX_FILE, quantize)
            graph.unlink()
        else:
            os.rename(graph, staging / ONNX_FILE)
        model.tokenizer.save_pretrained(staging)
        model.model.config.save_pretrained(staging)
        manifest = {
            "format": "onnx",
            "quantization": quantize,
            "fusions": fusions,
            "last_layer_first_token_only": first_token_only,
            "opset": opset,
            "max_length": model.max_length,
            "inputs": ["input_ids", "attention_mask"],
            "architecture": (model.model.config.architectures or [type(model.model).__name__])[0],
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        fsync_tree(staging)
        chmod_from_umask(staging)  # mkdtemp's 0700 would hide it from a server's other user
        move_into_place(staging, final_path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final_path


def _quantize(source: Path, target: Path, quantize: str) -> None:
    """``int8``: weight-only int8, in blocks of 32 input channels each with its own scale
    (ONNX Runtime's MatMulNBits, bits=8), activations kept in float32: a quarter of the weights'
    memory, and faithful (99.5% same preferred side as float32 on 200 hh-rlhf pairs with the
    head-mode MiniLM). ``int8-dynamic``: ``quantize_dynamic`` (per-channel int8 weights, int8
    activations with one scale per tensor and batch, int8 arithmetic): the classic CPU recipe,
    but its coarse activation scale moves the rewards of a head-mode model a lot (about 83%
    same side there), because the fitted head magnifies small feature errors.

    Measured and not kept (head-mode MiniLM, 96 hh-rlhf pairs, standard deviation of the error in
    the pair's logit r(A) − r(B) against torch, whose median |r(A) − r(B)| is 0.68; 98% same side
    needs about 0.05): ``quantize_dynamic`` of any one group of nodes alone is already too coarse
    (attention output projections 0.19, the fused QKV Attention 0.16, FFN input 0.35, FFN output
    0.38; all 0.57), and SmoothQuant (activation outliers, e.g. channel 99 at 28 against a median
    of 1.8 at the FFN input, moved into the weights) does not rescue it (0.41–0.61). Int8
    arithmetic with one activation scale per row and block of 32 channels (MatMulNBits,
    accuracy_level 4, which is what ``quantize_static`` QDQ becomes after ONNX Runtime's fusions)
    is faithful with SmoothQuant on the FFN input (0.05, 99–100% same side) but slower than
    float32 on this CPU, as is the weight-only form (ONNX Runtime's 8-bit MatMulNBits kernels
    lose to its float32 GEMM), so only the calibration-free weight-only form is offered.
    One activation scale per row over all channels (symmetric int8 per token, MatMulInteger with
    per-channel weights, the fused Attention left in float32) is no cure either (AMD Zen 4,
    128–256 pairs): 0.33 on the 18 MatMul nodes, 0.135 with SmoothQuant calibrated on 128
    other pairs (α 0.8), 0.28 on the FFN input alone; and its separate quantising nodes leave it
    at 1.25–1.32× ONNX float32, where ``quantize_dynamic``'s fused kernels reach 1.98×.
    On an Intel Xeon with AMX int8 tiles, ONNX Runtime's u8×s8 product runs 9.8× its float32
    one, yet ``int8-dynamic`` is 1.74× torch float32: the float32 kernels every form keeps
    (attention's softmax products, layer norms, GELU), with QAttention's int8 QKV product, take
    about 0.47 s of a batch that torch scores in 1.18 s (from its rate), the whole of a 2.5×
    budget; and MatMulNBits gets no AMX speed there."""
    import logging

    logging.disable(logging.INFO)  # both quantisers log every node at INFO
    try:
        if quantize == "int8-dynamic":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(
                source,
                target,
                weight_type=QuantType.QInt8,
                per_channel=True,
                # The fused nodes are ONNX Runtime's own (com.microsoft): shape inference
                # cannot type their outputs, which are float32.
                extra_options={"DefaultTensorType": 1},  # onnx.TensorProto.FLOAT
            )
            return
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

        config = DefaultWeightOnlyQuantConfig(block_size=INT8_BLOCK, is_symmetric=True, bits=8)
        quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), algo_config=config)
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
    finally:
        logging.disable(logging.NOTSET)


def _fuse(source: Path, target: Path, config: PretrainedConfig) -> dict[str, int]:
    """Rewrite a BERT-style graph with ONNX Runtime's transformer fusions (one ``Attention``
    node per layer, ``SkipLayerNormalization``, ``BiasGelu``, ``EmbedLayerNormalization``);
    returns how many of each it made. The graph computes the same function; the fused kernels
    skip the dozens of small nodes (reshapes, transposes, masks) the tracer writes per layer."""
    import logging

    from onnxruntime.transformers import optimizer

    logging.disable(logging.WARNING)  # the optimizer reports every pattern it tries
    try:
        optimized = optimizer.optimize_model(
            str(source),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            # ONNX Runtime's basic, hardware-independent rewrites first (constant folding,
            # redundant nodes), then the Python fusions.
            opt_level=1,
            use_gpu=False,
        )
        fusions = {
            name: int(count)
            for name, count in optimized.get_fused_operator_statistics().items()
            if count
        }
        optimized.save_model_to_file(str(target), use_external_data_format=False)
    finally:
        logging.disable(logging.NOTSET)
    return fusions


def _last_layer_on_first_token(path: Path) -> bool:
    """Where the head reads only the first token of the last layer (BERT's pooler: a Gather of
    position 0), rewrite that layer so that everything after its attention runs on that token
    alone; returns whether it did. The output projection, feed-forward block and layer norms of
    the last layer are about an eighth of the encoder's work and, for the other positions, feed
    nothing: their results were thrown away by the pooler. The rewards are unchanged (the first
    token's values are computed exactly as before)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producers: dict[str, onnx.NodeProto] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producers[name] = node
    constants = {tensor.name: tensor for tensor in graph.initializer}

    def is_zero(name: str) -> bool:
        if name in constants:
            value = numpy_helper.to_array(constants[name])
        elif name in producers and producers[name].op_type == "Constant":
            value = numpy_helper.to_array(producers[name].attribute[0].t)
        else:
            return False
        return value.size == 1 and int(value.reshape(())) == 0

    attentions = [node for node in graph.node if node.op_type == "Attention"]
    norms = [node for node in graph.node if node.op_type == "SkipLayerNormalization"]
    if not attentions or not norms:
        return False
    attention, last_norm = attentions[-1], norms[-1]
    readers = consumers.get(last_norm.output[0], [])
    reads_first_token = (
        len(readers) == 1
        and readers[0].op_type == "Gather"
        and not any(
            attribute.name == "axis" and attribute.i != 1 for attribute in readers[0].attribute
        )
        and is_zero(readers[0].input[1])
    )
    layer_input = attention.input[0]
    # The layer's first norm adds the attention output (projected) to the layer's input.
    residual_norms = [node for node in norms if node.input[1] == layer_input]
    projections = consumers.get(attention.output[0], [])
    if not reads_first_token or len(residual_norms) != 1 or not projections:
        return False
    graph.initializer.extend(
        numpy_helper.from_array(np.array([value], dtype=np.int64), name)
        for name, value in (
            ("first_token_start", 0),
            ("first_token_end", 1),
            ("first_token_axis", 1),
        )
    )
    slices = []
    for tensor in (attention.output[0], layer_input):
        slices.append(
            helper.make_node(
                "Slice",
                [tensor, "first_token_start", "first_token_end", "first_token_axis"],
                [f"{tensor}_first_token"],
                name=f"{tensor}_FirstToken",
            )
        )
    for projection in projections:
        projection.input[0] = slices[0].output[0]
    residual_norms[0].input[1] = slices[1].output[0]
    position = list(graph.node).index(attention) + 1
    for node in reversed(slices):
        graph.node.insert(position, node)
    onnx.save(model, str(path))
    return True


def _trace(model: RewardModel, target: Path, *, opset: int, eager_attention: bool = False) -> None:
    import copy

    import torch

    # A float32 CPU copy: the serving model may be bf16 or on a GPU, and must stay as it is.
    network = copy.deepcopy(model.model).to(device="cpu", dtype=torch.float32).eval()
    if eager_attention:
        # The eager attention's MatMul/Softmax graph is the pattern ONNX Runtime's optimizer
        # fuses into one Attention node; the SDPA path traces into a form it does not match.
        network.set_attn_implementation("eager")
    pad_id = model.tokenizer.pad_token_id
    # Two rows of different lengths, so padding and masking are part of the traced graph.
    input_ids = torch.arange(100, 116).repeat(2, 1)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 12:] = 0
    input_ids[1, 12:] = pad_id

    class _Logits(torch.nn.Module):  # type: ignore[misc]  # torch is untyped here
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=ids, attention_mask=mask).logits

    try:
        # The tracer's warnings are about shapes it records as constants; the graph is checked
        # against the torch model in the tests, across batch sizes, lengths and padding.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Logits(network),
                (input_ids, attention_mask),
                str(target),
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "sequence"},
                    "attention_mask": {0: "batch", 1: "sequence"},
                    "logits": {0: "batch"},
                },
                opset_version=opset,
                # The TorchScript exporter: needs no onnxscript and handles BERT-style encoders
                # and the small decoders we test with.
                dynamo=False,
            )
    except Exception as error:  # the exporter raises many types for unsupported operators
        raise OnnxExportError(f"ONNX export failed: {error}") from error


# --- scoring ----------------------------------------------------------------------------------


class OnnxRewardModel(TranscriptScoring):
    """An exported reward model scored by ONNX Runtime (CPU execution provider).

    Same API as :class:`RewardModel` for scoring: rewards r(x, y) per (conversation, response)
    and ``p(A ≻ B) = sigmoid(r(x, A) − r(x, B))``.
    """

    def __init__(
        self,
        session: onnxruntime.InferenceSession,
        tokenizer: PreTrainedTokenizerBase,
        config: PretrainedConfig,
        *,
        max_length: int,
        quantization: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_padding: float = DEFAULT_MAX_PADDING,
    ) -> None:
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ValueError("The tokenizer has no padding and no end-of-sequence token.")
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.truncation_side = "left"
        self.session = session
        self.tokenizer = tokenizer
        self.config = config
        self.quantization = quantization
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_padding = max_padding
        self._input_names = {node.name for node in session.get_inputs()}
        positions = getattr(config.get_text_config(), _MAX_POSITIONS_KEY, None)
        if positions and max_length > positions:
            raise ValueError(f"max_length={max_length} exceeds the model's {positions} positions.")
        self.max_length = max_length

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        max_length: int | None = None,
        threads: int | None = None,
    ) -> OnnxRewardModel:
        """Open an ONNX reward model directory; ``threads``: intra-op threads (default: ORT's)."""
        import onnxruntime

        directory = Path(path)
        if not is_onnx_model(directory):
            raise FileNotFoundError(f"No ONNX reward model at {directory}.")
        manifest = read_manifest(directory)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # Idle pool threads sleep instead of spinning: on a CPU shared with other processes
        # (web, workers, the database) spinning threads burn the time slices the work needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(
            str(directory / ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
        return cls(
            session,
            tokenizer,
            config,
            max_length=max_length or int(manifest["max_length"]),
            quantization=manifest.get("quantization"),
        )

    @property
    def precision(self) -> str:
        """``"float32"``, or the quantisation (``"int8"``, ``"int8-dynamic"``)."""
        return self.quantization or "float32"

    def rewards_for_ids(
        self,
        input_ids: Sequence[Sequence[int]],
        *,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Rewards (float64) for already tokenized transcripts, in length-sorted batches."""
        count = len(input_ids)
        rewards = np.zeros(count, dtype=np.float64)
        done = 0
        for batch_indices in length_sorted_batches(
            input_ids,
            batch_size=self.batch_size,
            max_batch_tokens=self.max_batch_tokens,
            max_padding=self.max_padding,
        ):
            ids, mask = self._pad([input_ids[index] for index in batch_indices])
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._input_names:
                feed["token_type_ids"] = np.zeros_like(ids)
            (logits,) = self.session.run(["logits"], feed)
            rewards[batch_indices] = logits.reshape(-1).astype(np.float64)
            done += len(batch_indices)
            if on_batch is not None:
                on_batch(done, count)
        return rewards

    def _pad(self, sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        width = max(len(sequence) for sequence in sequences)
        input_ids = np.full((len(sequences), width), self.tokenizer.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(sequences), width), dtype=np.int64)
        left = self.tokenizer.padding_side == "left"
        for row, sequence in enumerate(sequences):
            start = width - len(sequence) if left else 0
            input_ids[row, start : start + len(sequence)] = sequence
            attention_mask[row, start : start + len(sequence)] = 1
        return input_ids, attention_mask


def length_sorted_batches(
    input_ids: Sequence[Sequence[int]],
    *,
    batch_size: int,
    max_batch_tokens: int,
    max_padding: float = 1.0,
) -> Iterator[list[int]]:
    """Indices in batches of similar length, longest first, each at most ``batch_size`` rows
    and ``max_batch_tokens`` padded tokens (a single longer row still gets a batch), and no row
    more than ``max_padding`` (a share of the batch's width) shorter than the batch's first."""
    order = sorted(range(len(input_ids)), key=lambda index: len(input_ids[index]), reverse=True)
    batch: list[int] = []
    for index in order:
        width = len(input_ids[batch[0]]) if batch else len(input_ids[index])
        full = (
            len(batch) >= batch_size
            or (len(batch) + 1) * width > max_batch_tokens
            or len(input_ids[index]) < (1.0 - max_padding) * width
        )
        if batch and full:
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch
