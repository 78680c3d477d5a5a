"""The scalar reward head of a sequence-classification model, and the vector it reads.

Every Hugging Face ``*ForSequenceClassification`` model with ``num_labels=1`` ends in one
``nn.Linear(hidden, 1)``: ``classifier`` for BERT (fed the pooler output of ``[CLS]``), ``score``
for decoder models such as Qwen/Llama (applied to every position, then the rightmost non-padding
token is kept), ``classifier.out_proj`` for RoBERTa. The reward is ``head(features)``, so a head
trained on exactly these features can be written back into that layer and the checkpoint stays a
plain HF model. We capture the layer's input with a forward hook rather than re-implementing each
architecture's pooling, and check that ``head(features)`` reproduces the model's own logits.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

_HEAD_NAMES = ("score", "classifier", "classifier.out_proj")


def find_reward_head(model: PreTrainedModel) -> nn.Linear:
    """Return the final ``Linear(hidden, 1)`` layer that produces the reward."""
    modules = dict(model.named_modules())
    for name in _HEAD_NAMES:
        module = modules.get(name)
        if isinstance(module, nn.Linear) and module.out_features == 1:
            return module
    candidates = [
        module
        for module in modules.values()
        if isinstance(module, nn.Linear) and module.out_features == 1
    ]
    if len(candidates) != 1:
        raise ValueError(
            f"Cannot identify the reward head of {type(model).__name__}: expected one "
            f"Linear layer with a single output, found {len(candidates)}."
        )
    return candidates[0]


def _last_non_padding_index(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    # Mirrors transformers' GenericForSequenceClassification: the rightmost non-pad token,
    # which handles left and right padding alike.
    if pad_token_id is None:
        return torch.full((input_ids.shape[0],), input_ids.shape[1] - 1, device=input_ids.device)
    non_pad = (input_ids != pad_token_id).to(torch.int32)
    positions = torch.arange(input_ids.shape[-1], device=input_ids.device, dtype=torch.int32)
    return (positions * non_pad).argmax(-1)


class HeadInputCapture:
    """Context manager recording, per forward pass, the pooled vector the reward head reads."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.head = find_reward_head(model)
        self._captured: torch.Tensor | None = None
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def __enter__(self) -> HeadInputCapture:
        def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            self._captured = inputs[0].detach()

        self._handle = self.head.register_forward_pre_hook(record)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def pooled(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The captured head input for the last forward pass, one row per sequence (float32)."""
        if self._captured is None:
            raise RuntimeError("No forward pass went through the reward head.")
        features = self._captured.float()
        self._captured = None
        if features.dim() == 3:
            pad_token_id = self.model.config.get_text_config().pad_token_id
            rows = torch.arange(features.shape[0], device=features.device)
            features = features[rows, _last_non_padding_index(input_ids, pad_token_id)]
        self._check_reproduces(features, logits)
        return features

    def _check_reproduces(self, features: torch.Tensor, logits: torch.Tensor) -> None:
        # In float32 even inside a bf16 autocast region, so both sides have one dtype.
        with torch.autocast(device_type=features.device.type, enabled=False):
            recomputed = features.float() @ self.head.weight.detach().float().T
            if self.head.bias is not None:
                recomputed = recomputed + self.head.bias.detach().float()
        expected = logits.detach().float().reshape(recomputed.shape)
        # Loose tolerance: under bf16 autocast the head itself ran in bf16.
        if not torch.allclose(recomputed, expected, rtol=2e-2, atol=2e-2):
            raise RuntimeError(
                f"The reward head of {type(self.model).__name__} does not read the captured "
                "features directly; head-only training is not supported for this architecture."
            )
