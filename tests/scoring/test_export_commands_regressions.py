"""Export command defects a reviewer reproduced: export_model replacing directories no export
wrote and writing them mode 0700; export_dataset's tracebacks on bad paths, case-sensitive
suffix, stale companion files, a failed rename losing the earlier export, and options it
ignored."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotation.models import Label, Outcome
from scoring.datasets.export import ExportFilters, export_write, outcomes_path, unranked_path
from scoring.models import ModelVersion
from scoring.reward_model import RewardModel, build_tiny_reward_model
from scoring.reward_model.checkpoint import save_checkpoint
from tests.scoring.test_export import voted_pair

# --- export_model ------------------------------------------------------------------------


@pytest.fixture
def version(campaign, tmp_path: Path) -> ModelVersion:
    checkpoint = build_tiny_reward_model(tmp_path / "store" / "v1")
    return ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint=str(checkpoint), is_active=True
    )


@pytest.fixture
def umask() -> Iterator[None]:
    """A known umask for the test, the process's own restored after it."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _export_model(*args: str, **options: object) -> dict:
    out = io.StringIO()
    call_command("export_model", *args, stdout=out, **options)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(file.relative_to(path)): file.read_bytes() for file in path.rglob("*") if file.is_file()
    }


@pytest.mark.parametrize("file_format", ["onnx", "hf"])
def test_a_base_model_directory_with_other_files_is_refused_and_left_whole(
    version, tmp_path: Path, file_format
) -> None:
    base = build_tiny_reward_model(tmp_path / "base-model")  # config.json + *.safetensors
    (base / "NOTES.md").write_text("my notes")
    (base / "runs").mkdir()
    (base / "runs" / "log.txt").write_text("training log")
    before = _tree(base)
    with pytest.raises(CommandError, match="no export wrote"):
        _export_model(str(base), campaign=version.campaign.name, format=file_format)
    assert _tree(base) == before
    # Without the extra files it is still not an export: refused too.
    plain = build_tiny_reward_model(tmp_path / "plain-model")
    before = _tree(plain)
    with pytest.raises(CommandError, match="no export wrote"):
        _export_model(str(plain), campaign=version.campaign.name, format=file_format)
    assert _tree(plain) == before


@pytest.mark.parametrize("first", ["onnx", "hf"])
@pytest.mark.parametrize("second", ["onnx", "hf"])
def test_an_earlier_export_of_either_format_is_replaced_but_not_once_files_were_added(
    version, tmp_path: Path, first, second
) -> None:
    name = version.campaign.name
    out = tmp_path / "served"
    _export_model(str(out), campaign=name, format=first)
    marker = json.loads((out / "arbiter_export.json").read_text())
    assert (marker["format"], marker["version"], marker["campaign"]) == (first, 1, name)
    assert _export_model(str(out), campaign=name, format=second)["format"] == second
    marker = json.loads((out / "arbiter_export.json").read_text())
    assert marker["format"] == second
    # Something of the user's put into the export makes it not (only) an export any more.
    (out / "NOTES.md").write_text("keep me")
    before = _tree(out)
    with pytest.raises(CommandError, match="no export wrote"):
        _export_model(str(out), campaign=name, format=first)
    assert _tree(out) == before


def test_an_onnx_export_from_before_the_marker_is_replaced_if_it_holds_only_its_files(
    version, tmp_path: Path
) -> None:
    name = version.campaign.name
    out = tmp_path / "served"
    _export_model(str(out), campaign=name)
    (out / "arbiter_export.json").unlink()  # as written before the marker (arbiter_onnx.json)
    assert _export_model(str(out), campaign=name, format="hf")["format"] == "hf"
    _export_model(str(out), campaign=name)
    (out / "arbiter_export.json").unlink()
    (out / "NOTES.md").write_text("keep me")
    with pytest.raises(CommandError, match="no export wrote"):
        _export_model(str(out), campaign=name)
    assert (out / "NOTES.md").read_text() == "keep me"


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize("file_format", ["onnx", "hf"])
def test_an_export_directory_takes_its_mode_from_the_umask(
    version, tmp_path: Path, file_format
) -> None:
    out = tmp_path / "served"
    _export_model(str(out), campaign=version.campaign.name, format=file_format)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    for file in out.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) & 0o044 == 0o044, file.name
    # Replacing a 0755 export keeps it readable; another umask gives another mode.
    os.umask(0o027)
    _export_model(str(out), campaign=version.campaign.name, format=file_format)
    assert stat.S_IMODE(out.stat().st_mode) == 0o750


@pytest.mark.usefixtures("umask")
def test_a_saved_checkpoint_directory_takes_its_mode_from_the_umask(version, tmp_path) -> None:
    model = RewardModel.load(version.checkpoint, device="cpu")
    path = save_checkpoint(model.model, model.tokenizer, tmp_path / "checkpoint")
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert {file.name: stat.S_IMODE(file.stat().st_mode) for file in path.iterdir()} == {
        file.name: 0o644 for file in path.iterdir()
    }


def test_dtype_with_the_onnx_format_is_refused(version, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="hf format only"):
        _export_model(
            str(tmp_path / "x"), campaign=version.campaign.name, format="onnx", dtype="float16"
        )
    assert not (tmp_path / "x").exists()


def test_a_campaign_without_an_active_version_is_named_in_plain_words(version, tmp_path) -> None:
    version.is_active = False
    version.save()
    with pytest.raises(CommandError, match=r"has no active version$"):
        _export_model(str(tmp_path / "x"), campaign=version.campaign.name)


# --- export_dataset ----------------------------------------------------------------------


@pytest.fixture
def annotators(annotator_a, annotator_b, annotator_c):
    return [annotator_a, annotator_b, annotator_c]


@pytest.fixture
def pairs(campaign, annotators):
    """A chosen pair, a tie and a both-bad pair."""
    chosen = voted_pair(campaign, annotators, [1, 1, 1], consensus=1, provenance="unanimous")
    tie = voted_pair(campaign, annotators, [0, 0, 0], consensus=0, provenance="unanimous")
    both_bad = voted_pair(
        campaign,
        annotators,
        [0, 0, 0],
        consensus=0,
        provenance="unanimous",
        consensus_outcome=Outcome.BOTH_BAD,
    )
    Label.objects.filter(pair=both_bad).update(outcome=Outcome.BOTH_BAD)
    return {"chosen": chosen, "tie": tie, "both_bad": both_bad}


def _export_dataset(*args: str, **options: object) -> dict:
    out = io.StringIO()
    call_command("export_dataset", *args, stdout=out, stderr=io.StringIO(), **options)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_an_out_that_is_a_directory_is_refused(campaign, pairs, tmp_path: Path) -> None:
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    with pytest.raises(CommandError, match="is a directory"):
        _export_dataset(str(folder), campaign=campaign.name)
    assert list(folder.iterdir()) == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["folder.jsonl"]


def test_an_empty_out_is_refused(campaign, pairs, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CommandError, match="OUT"):
        _export_dataset("", campaign=campaign.name)
    assert list(tmp_path.iterdir()) == []


def test_a_manifest_that_is_a_directory_is_refused_before_out_is_written(
    campaign, pairs, tmp_path: Path
) -> None:
    (tmp_path / "manifest").mkdir()
    out = tmp_path / "out.jsonl"
    with pytest.raises(CommandError, match="is a directory"):
        _export_dataset(str(out), campaign=campaign.name, manifest=str(tmp_path / "manifest"))
    assert not out.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["manifest"]


def test_a_manifest_that_cannot_be_written_is_a_command_error(
    campaign, pairs, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    with pytest.raises(CommandError, match="manifest"):
        _export_dataset(str(out), campaign=campaign.name, manifest=str(tmp_path / "no" / "m.json"))


def test_the_format_follows_the_suffix_whatever_its_case(campaign, pairs, tmp_path: Path) -> None:
    out = tmp_path / "x.JSONL"
    manifest = _export_dataset(str(out), campaign=campaign.name)
    assert manifest["format"] == "jsonl"
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["pair_id"] for row in rows] == [pairs["chosen"].pk]


def test_a_ties_file_of_an_earlier_export_goes_when_ties_are_left_out(
    campaign, pairs, tmp_path: Path
) -> None:
    out = tmp_path / "x.jsonl"
    first = _export_dataset(str(out), campaign=campaign.name, ties="separate")
    assert first["counts"]["unranked_written"] == 1 and unranked_path(out).is_file()
    second = _export_dataset(str(out), campaign=campaign.name)
    assert second["counts"]["unranked_written"] == 0
    assert not unranked_path(out).exists()
    assert [entry["role"] for entry in second["files"]] == ["main", "outcomes"]


def test_an_outcomes_file_of_an_earlier_export_goes_when_none_is_written(
    campaign, pairs, tmp_path: Path
) -> None:
    out = tmp_path / "x.jsonl"
    export_write(campaign=campaign, filters=ExportFilters(), file_format="jsonl", destination=out)
    assert outcomes_path(out).is_file()
    result = export_write(
        campaign=campaign,
        filters=ExportFilters(outcomes="exclude"),
        file_format="jsonl",
        destination=out,
    )
    assert result.manifest["counts"]["outcomes_written"] == 0
    assert not outcomes_path(out).exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["x.jsonl"]


def test_a_ties_path_that_is_a_directory_leaves_the_earlier_export_whole(
    campaign, pairs, tmp_path: Path
) -> None:
    out = tmp_path / "x.jsonl"
    _export_dataset(str(out), campaign=campaign.name)
    before = out.read_bytes()
    unranked_path(out).mkdir()
    (unranked_path(out) / "keep.txt").write_text("mine")
    with pytest.raises(CommandError, match="is a directory"):
        _export_dataset(str(out), campaign=campaign.name, ties="separate")
    assert out.read_bytes() == before
    assert (unranked_path(out) / "keep.txt").read_text() == "mine"
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "x.jsonl",
        "x.outcomes.jsonl",
        "x.ties.jsonl",
    ]


def test_a_rename_failing_after_out_was_replaced_puts_the_earlier_export_back(
    campaign, pairs, tmp_path: Path
) -> None:
    out = tmp_path / "x.jsonl"
    export_write(campaign=campaign, filters=ExportFilters(), file_format="jsonl", destination=out)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert sorted(before) == ["x.jsonl", "x.outcomes.jsonl"]

    def block_the_ties_path(done: int, total: int) -> None:
        # Something else takes the ties path between the checks and the renames.
        unranked_path(out).mkdir()
        (unranked_path(out) / "keep.txt").write_text("mine")

    with pytest.raises(OSError):  # noqa: PT011 - whichever OSError the rename raises
        export_write(
            campaign=campaign,
            filters=ExportFilters(ties="separate", outcomes="exclude"),
            file_format="jsonl",
            destination=out,
            on_progress=block_the_ties_path,
        )
    after = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    assert after == before
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "x.jsonl",
        "x.outcomes.jsonl",
        "x.ties.jsonl",
    ]


def test_silver_curated_only_without_include_silver_is_refused(
    campaign, pairs, tmp_path: Path
) -> None:
    with pytest.raises(CommandError, match="--include-silver"):
        _export_dataset(str(tmp_path / "x.jsonl"), campaign=campaign.name, silver_curated_only=True)
    assert list(tmp_path.iterdir()) == []


def test_a_manifest_write_that_fails_halfway_leaves_the_earlier_manifest_whole(
    campaign, pairs, tmp_path: Path, monkeypatch
) -> None:
    out, manifest = tmp_path / "out.jsonl", tmp_path / "manifest.json"
    _export_dataset(str(out), campaign=campaign.name, manifest=str(manifest))
    earlier = manifest.read_text()
    real_write_text = Path.write_text

    def disk_full_halfway(self, data, *args, **kwargs):  # noqa: ANN001, ANN202
        real_write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full_halfway)
    with pytest.raises(CommandError, match="manifest"):
        _export_dataset(str(out), campaign=campaign.name, manifest=str(manifest))
    monkeypatch.undo()
    assert manifest.read_text() == earlier  # written in place, it was cut in half
    assert json.loads(earlier)["counts"]["rows"] == 1
    assert not [path for path in tmp_path.iterdir() if path.name.endswith(".part")]
