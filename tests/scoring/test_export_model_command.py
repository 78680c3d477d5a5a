"""`manage.py export_model`: a version written for serving, loaded back by load_scorer."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command

from scoring.models import ModelVersion
from scoring.reward_model import RewardModel, build_tiny_reward_model, load_scorer
from scoring.reward_model.onnx_backend import OnnxRewardModel

ITEMS = [
    ([{"role": "user", "content": "How do I boil an egg?"}], "Nine minutes in boiling water."),
    ([{"role": "user", "content": "How do I boil an egg?"}], "Eggs are oval."),
]


@pytest.fixture
def version(campaign, tmp_path: Path) -> ModelVersion:
    checkpoint = build_tiny_reward_model(tmp_path / "v1")
    return ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint=str(checkpoint), is_active=True
    )


def _export(*args: str, **options: object) -> dict:
    out = io.StringIO()
    call_command("export_model", *args, stdout=out, **options)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_it_exports_onnx_float32_and_int8_that_score_like_the_checkpoint(
    version, tmp_path: Path
) -> None:
    expected = RewardModel.load(version.checkpoint, device="cpu").score_batch(ITEMS)
    summary = _export(
        str(tmp_path / "fp32"), campaign=version.campaign.name, number=1, format="onnx"
    )
    assert summary["version"] == 1 and summary["dtype"] == "float32" and summary["bytes"] > 0
    fp32 = load_scorer(summary["path"])
    assert isinstance(fp32, OnnxRewardModel)
    np.testing.assert_allclose(fp32.score_batch(ITEMS), expected, atol=1e-3)

    # Without --version: the active one.
    summary = _export(str(tmp_path / "int8"), campaign=version.campaign.name, quantize="int8")
    assert summary["quantization"] == "int8"
    int8 = load_scorer(summary["path"])
    assert int8.precision == "int8"
    assert np.all(np.isfinite(int8.score_batch(ITEMS)))


def test_it_exports_a_bf16_checkpoint_for_gpus(version, tmp_path: Path) -> None:
    summary = _export(str(tmp_path / "hf"), campaign=version.campaign.name, format="hf")
    assert summary["dtype"] == "bfloat16"
    loaded = RewardModel.load(summary["path"], device="cpu", dtype=torch.bfloat16)
    assert next(loaded.model.parameters()).dtype == torch.bfloat16


def test_it_refuses_bad_requests_clearly(version, tmp_path: Path) -> None:
    name = version.campaign.name
    with pytest.raises(CommandError, match="no version 7"):
        _export(str(tmp_path / "x"), campaign=name, number=7)
    with pytest.raises(CommandError, match="no campaign"):
        _export(str(tmp_path / "x"), campaign="nope")
    with pytest.raises(CommandError, match="onnx format only"):
        _export(str(tmp_path / "x"), campaign=name, format="hf", quantize="int8")
    version.checkpoint = str(tmp_path / "gone")
    version.save()
    with pytest.raises(CommandError, match="no checkpoint"):
        _export(str(tmp_path / "x"), campaign=name)
    assert not (tmp_path / "x").exists()


def test_an_out_directory_that_cannot_be_written_is_a_clear_error(version, tmp_path: Path) -> None:
    """Review 19: an OSError from the file system was a traceback."""
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(CommandError, match="cannot export to .*a-file"):
        _export(str(tmp_path / "a-file" / "out"), campaign=version.campaign.name, format="hf")
    assert (tmp_path / "a-file").read_text() == "not a directory"


def test_it_replaces_an_earlier_export_and_nothing_else(version, tmp_path: Path, settings) -> None:
    name = version.campaign.name
    out = tmp_path / "served"
    _export(str(out), campaign=name)
    # An earlier export, of either format, is replaced.
    assert _export(str(out), campaign=name, format="hf")["format"] == "hf"
    assert _export(str(out), campaign=name)["format"] == "onnx"
    (out.parent / "empty").mkdir()
    assert _export(str(out.parent / "empty"), campaign=name)["format"] == "onnx"

    # A directory holding anything else is refused and left as it was.
    notes = tmp_path / "project"
    (notes / "sub").mkdir(parents=True)
    (notes / "notes.txt").write_text("keep me")
    with pytest.raises(CommandError, match="no export wrote"):
        _export(str(notes), campaign=name)
    assert (notes / "notes.txt").read_text() == "keep me" and (notes / "sub").is_dir()
    with pytest.raises(CommandError, match="not a directory"):
        _export(str(notes / "notes.txt"), campaign=name)

    # The version's own checkpoint, and anything overlapping the model store, are refused.
    checkpoint_files = sorted(path.name for path in Path(version.checkpoint).iterdir())
    for inside in (version.checkpoint, str(Path(version.checkpoint) / "onnx"), str(tmp_path)):
        with pytest.raises(CommandError, match="overlaps the model store"):
            _export(inside, campaign=name)
    assert sorted(path.name for path in Path(version.checkpoint).iterdir()) == checkpoint_files
    RewardModel.load(version.checkpoint, device="cpu")  # still a torch checkpoint
    store = tmp_path / "store"
    settings.ARBITER = {**settings.ARBITER, "MODEL_DIR": str(store)}
    for inside in (str(store), str(store / "campaign-1" / "v9")):
        with pytest.raises(CommandError, match="overlaps the model store"):
            _export(inside, campaign=name)
    assert not store.exists()


def test_an_export_removes_what_killed_exports_left_and_keeps_live_ones(
    version, tmp_path: Path
) -> None:
    import os
    import time

    from scoring.reward_model.files import STALE_STAGING_SECONDS

    def staged(name: str, age_seconds: float) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "model.safetensors").write_text("half an export")
        then = time.time() - age_seconds
        for entry in (path / "model.safetensors", path):
            os.utime(entry, (then, then))
        return path

    old = STALE_STAGING_SECONDS + 60
    killed = staged(".hf.export-killed", old)  # killed after its save, before the rename
    killed_inside = staged("..hf.export-killed.partial-x", old)  # killed during the save
    live = staged(".hf.export-writing", 60)
    summary = _export(str(tmp_path / "hf"), campaign=version.campaign.name, format="hf")
    assert Path(summary["path"]).is_dir()
    assert not killed.exists() and not killed_inside.exists()
    assert live.exists()
