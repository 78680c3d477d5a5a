"""Training a campaign's reward model on its verified labels, and evaluating it on gold.

Training data: non-gold pairs with a human consensus (provenance unanimous, majority or
adjudicated) whose consensus is not a tie; the sign of the consensus says which side was
chosen. Gold pairs are the held-out evaluation set and are never trained on, unless the job
asks for ``train_on_gold_share`` (a fixed, id-hashed share of them moves to training and the
rest stays held out).

Base model: the job's ``base_model`` parameter (recorded when the job is created from
``settings.ARBITER["BASE_MODEL"]``), else the packaged all-MiniLM-L6-v2. Mode ``head`` (the
default: seconds on a CPU) fits the reward head on cached encoder vectors (see
``scoring.loop.embeddings``); ``full`` fine-tunes every weight, in this process or, with
``processes`` > 1 or the ``fsdp`` strategy, as that many torchrun ranks
(``scoring.reward_model.launcher``).

A train or loop job (or a curation job's gold model) registers at most one version: an attempt
restarted after the version was registered (its worker lost, or released after a transient
error) does not train again but goes on from that version
(``registry.model_version_registered_by``): the activation gate, then the rest of the job.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User

from annotation.models import Campaign, Pair, Round
from annotation.selectors import is_campaign_admin
from scoring.jobs.runner import JobCancelled, JobContext, JobError
from scoring.loop.embeddings import (
    PairVectors,
    compute_pair_vectors,
    encoder_key,
    head_rewards,
    pair_embeddings_ensure,
    pair_vectors_load,
)
from scoring.loop.judged_pairs import (
    TEXT_CHUNK,
    JudgedPairs,
    gold_pairs,
    gold_training_pairs,
    heldout_pairs,
    label_snapshot,
    pair_texts,
    pair_texts_at,
    training_pairs,
)
from scoring.loop.params import LoopParams, TrainParams
from scoring.loop.registry import (
    NOT_JUDGED,
    model_version_activate_if_better,
    model_version_register,
    model_version_registered_by,
)
from scoring.models import Job, ModelVersion


def resolve_base_model(params: dict[str, Any]) -> Path:
    from scoring.reward_model import default_base_path

    configured = params.get("base_model") or settings.ARBITER.get("BASE_MODEL") or ""
    base = Path(configured) if configured else default_base_path()
    try:
        is_model = (base / "config.json").is_file()
    except OSError as error:
        # is_file() answers False only for a missing path; a name over 255 bytes or a folder
        # this user may not search raises, and is the user's to fix like a missing one.
        raise JobError(f"base model {base} cannot be read: {error.strerror or error}") from None
    if not is_model:
        raise JobError(f"base model {base} is not a model directory (no config.json)")
    return base


def base_model_check_access(*, base_model: str | None, campaign: Campaign, user: User) -> None:
    """Refuse (JobError) a base model asked for from the web that ``user`` may not train
    from: a checkpoint in the model store of a campaign they do not administer (its weights
    learnt that campaign's labels, and its versions answer them 404), or, where
    ``BASE_MODEL_ROOTS`` is set, a directory under none of those roots (judged before the
    path is read, so a refusal says nothing of what exists outside them). A campaign's
    current setting passes as it stands: someone allowed chose it (``training_settings_for``).
    """
    base_model = (base_model or "").strip()  # as parse_training_settings reads it
    if not base_model or base_model == training_settings_for(campaign=campaign)["base_model"]:
        return
    chosen = Path(base_model)
    roots = [Path(root) for root in settings.ARBITER.get("BASE_MODEL_ROOTS") or []]
    outside_roots = JobError(
        f"bad training settings: base_model: {base_model} is not under a directory that "
        "base models may be taken from (ARBITER_BASE_MODEL_ROOTS; an absolute path)"
    )
    if roots and not chosen.is_absolute():
        # The worker reads a relative path from its own directory, not the web process's.
        raise outside_roots
    resolved: Path | None
    store: Path | None
    try:
        # resolve(): "campaign-1/../campaign-2/v1" and links are judged by where they lead.
        resolved = chosen.resolve()
        store = Path(settings.ARBITER["MODEL_DIR"]).resolve()
    except (OSError, RuntimeError):  # a loop of links, or unreadable: judged as outside
        resolved = store = None
    if resolved is not None and store is not None and resolved.is_relative_to(store):
        parts = resolved.relative_to(store).parts
        owner = parts[0].removeprefix("campaign-") if parts else ""
        if (
            owner.isascii()
            and owner.isdigit()
            and not is_campaign_admin(campaign_id=int(owner), user=user)
        ):
            raise JobError(
                f"bad training settings: base_model: {base_model} is a model of another campaign"
            )
        return
    if roots and not (
        resolved is not None and any(resolved.is_relative_to(root.resolve()) for root in roots)
    ):
        raise outside_roots


def base_model_positions(base: Path) -> int | None:
    """The base model's position limit from its ``config.json`` (read as JSON: no transformers
    import in a web request), or None where it names none."""
    try:
        config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    text_config = config.get("text_config")
    text = text_config if isinstance(text_config, dict) else config
    positions = text.get("max_position_embeddings") or config.get("max_position_embeddings")
    return int(positions) if isinstance(positions, int) and positions > 0 else None


def check_max_length(params: Mapping[str, Any], base: Path) -> None:
    """Refuse a ``max_length`` longer than the base model's positions (JobError)."""
    max_length = params.get("max_length")
    positions = base_model_positions(base)
    if max_length and positions and int(max_length) > positions:
        raise JobError(
            f"bad training settings: max_length: {max_length} exceeds the base model's "
            f"{positions} positions"
        )


def training_preflight(params: Mapping[str, Any]) -> Path:
    """What a worker checks before a loop job changes anything (closes the round): the base
    model, its window, and what this host's devices can do for the settings. Returns the
    base model's directory; raises JobError naming the problem."""
    import torch

    from scoring.reward_model.devices import supports_bf16

    training_config_from_params(dict(params))
    base = resolve_base_model(dict(params))
    check_max_length(params, base)
    _check_processes_fit(int(params.get("processes") or 1))
    if torch.cuda.is_available():
        if params.get("precision") == "bf16" and not supports_bf16(torch.device("cuda")):
            raise JobError("this GPU has no bf16 arithmetic: train with precision float32 or auto")
    return base


def _check_processes_fit(processes: int) -> None:
    """Refuse more processes than this host's GPUs, or its CPU cores on a CPU host."""
    import torch

    from scoring.reward_model.devices import check_processes_fit

    try:
        check_processes_fit(processes, cuda=torch.cuda.is_available())
    except ValueError as error:
        raise JobError(str(error)) from error


def job_params_for_training(
    *, mode: str = "head", base_model: str | None = None, **options: Any
) -> dict[str, Any]:
    """Parameters recorded on a train or loop job when it is created (see the module doc):
    TrainParams' (LoopParams' for the loop's own options), with the base model filled in."""
    if base_model is None:
        base_model = settings.ARBITER["BASE_MODEL"]
    given = {"mode": mode, "base_model": base_model, **options}
    schema = TrainParams if set(given) <= set(TrainParams.field_types()) else LoopParams
    return schema.from_params(given).as_params()


# What a loop does beyond training (LoopParams), kept from one loop to the next like the
# training settings: an admin who kept gold out of retrieval keeps it out in later rounds.
LOOP_OPTIONS = ("prioritise", "retrieve_from_gold")


def loop_options_for(*, campaign: Campaign) -> dict[str, bool]:
    """The campaign's latest loop job's ``LOOP_OPTIONS``, else LoopParams' defaults (a train
    job has none, so it changes nothing here)."""
    values = {name: bool(getattr(LoopParams, name)) for name in LOOP_OPTIONS}
    latest = (
        Job.objects.filter(campaign=campaign, kind=Job.Kind.LOOP)
        .order_by("-id")
        .only("params")
        .first()
    )
    if latest is not None:
        values.update({name: bool(latest.params[name]) for name in values if name in latest.params})
    return values


def training_settings_for(*, campaign: Campaign) -> dict[str, Any]:
    """The Retrain form's starting values: the defaults, overlaid with what the campaign's
    latest train or loop job chose (so a campaign keeps its base model and settings), and the
    loop options of its latest loop job (``loop_options_for``)."""
    from scoring.reward_model.job_settings import training_defaults

    values = training_defaults()
    latest = (
        Job.objects.filter(campaign=campaign, kind__in=(Job.Kind.TRAIN, Job.Kind.LOOP))
        .order_by("-id")
        .only("params")
        .first()
    )
    if latest is not None:
        values.update({name: latest.params[name] for name in values if name in latest.params})
    return {**values, **loop_options_for(campaign=campaign)}


def job_params_from_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Checked job parameters from submitted settings (form, API, command line).

    Raises JobError naming each bad field; a base model must be a model directory here.
    """
    from scoring.reward_model.job_settings import SettingsError, parse_training_settings

    try:
        parsed = parse_training_settings(values)
    except SettingsError as error:
        raise JobError(f"bad training settings: {error}") from error
    if parsed.get("base_model"):
        check_max_length(parsed, resolve_base_model(parsed))
    elif parsed.get("max_length"):
        try:
            base = resolve_base_model(parsed)
        except JobError:
            base = None  # the default may live on the training host only: the worker checks
        if base is not None:
            check_max_length(parsed, base)
    return job_params_for_training(**parsed)


def job_params_for_campaign(
    *,
    campaign: Campaign,
    submitted: Mapping[str, Any] | None = None,
    check_base_model: bool = True,
) -> dict[str, Any]:
    """Checked loop job parameters for a retrain of ``campaign``: its settings
    (``training_settings_for``: its latest train or loop job's choice, else the defaults, and
    its latest loop job's loop options) with the ``submitted`` ones over them, as the Retrain
    form starts. Without ``check_base_model`` the base model is left to the worker's
    ``training_preflight``."""
    values = {**training_settings_for(campaign=campaign), **(submitted or {})}
    options = {name: values[name] for name in LOOP_OPTIONS}
    if check_base_model:
        return job_params_for_training(**job_params_from_settings(values), **options)
    from scoring.reward_model.job_settings import SettingsError, parse_training_settings

    try:
        return job_params_for_training(**parse_training_settings(values), **options)
    except SettingsError as error:
        raise JobError(f"bad training settings: {error}") from error


class JudgedExamples(Sequence[tuple[Any, ...]]):
    """``data`` as training examples ``(conversation, chosen, rejected, category)``, whose texts
    are read from the database when sliced (``pair_texts``): training reads them a chunk at a
    time (``reward_model.examples.example_chunks``), so they are never held whole."""

    def __init__(self, data: JudgedPairs) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    @overload
    def __getitem__(self, index: int) -> tuple[Any, ...]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[Any, ...]]: ...

    def __getitem__(self, index: int | slice) -> tuple[Any, ...] | list[tuple[Any, ...]]:
        if isinstance(index, int):
            position = index + len(self) if index < 0 else index
            if not 0 <= position < len(self):
                raise IndexError(index)
            return self._examples(position, position + 1)[0]
        start, stop, step = index.indices(len(self))
        if step != 1:
            return [self[position] for position in range(start, stop, step)]
        return self._examples(start, stop)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for start in range(0, len(self), TEXT_CHUNK):
            yield from self._examples(start, start + TEXT_CHUNK)

    def _examples(self, start: int, stop: int) -> list[tuple[Any, ...]]:
        examples = []
        texts = pair_texts(self.data, start, stop)
        for position, (conversation, a, b) in zip(range(start, stop), texts, strict=False):
            chosen, rejected = (a, b) if self.data.preferences[position] > 0 else (b, a)
            category = self.data.pairs[position].task_category or None
            examples.append((conversation, chosen, rejected, category))
        return examples


def _examples(data: JudgedPairs) -> JudgedExamples:
    return JudgedExamples(data)


def _accuracy_report(correct: np.ndarray, data: JudgedPairs) -> dict[str, Any]:
    by_category: dict[str, list[bool]] = defaultdict(list)
    for pair, hit in zip(data.pairs, correct, strict=True):
        if pair.task_category:
            by_category[pair.task_category].append(bool(hit))
    return {
        "accuracy": float(np.mean(correct)),
        "n": len(data),
        "per_category": {
            category: {"accuracy": float(np.mean(hits)), "n": len(hits)}
            for category, hits in sorted(by_category.items())
        },
    }


def evaluate_pairs(*, model: Any, data: JudgedPairs, key: str | None) -> dict[str, Any] | None:
    """Pairwise accuracy (ties count as misses). Head mode reads cached vectors (``key``)."""
    if not len(data):
        return None
    if key is not None:
        vector_a, vector_b = _training_vectors(model, data, key)
        vectors = PairVectors(
            pair_ids=np.array(data.pair_ids, dtype=np.int64),
            context=np.zeros((len(data), 0), dtype=np.float32),
            a=vector_a,
            b=vector_b,
        )
        reward_a, reward_b = head_rewards(model, vectors)
    else:
        # A chunk of texts at a time, as training reads them.
        reward_a, reward_b = np.zeros(len(data)), np.zeros(len(data))
        for start in range(0, len(data), TEXT_CHUNK):
            texts = pair_texts(data, start, start + TEXT_CHUNK)
            items = [(conversation, a) for conversation, a, _b in texts]
            items += [(conversation, b) for conversation, _a, b in texts]
            rewards = model.score_batch(items)
            reward_a[start : start + len(texts)] = rewards[: len(texts)]
            reward_b[start : start + len(texts)] = rewards[len(texts) :]
    signs = np.sign(np.array(data.preferences, dtype=np.float64))
    correct = (reward_a - reward_b) * signs > 0
    return _accuracy_report(correct, data)


def training_config_from_params(params: dict[str, Any]) -> Any:
    """The TrainingConfig of a train or loop job's recorded params (LoopParams' superset)."""
    return LoopParams.from_params(params, ignore_unknown=True).training_config()


@dataclass
class TrainedModel:
    version: ModelVersion
    model: Any  # the RewardModel, still in memory for scoring right after


def model_train(*, job: Job, context: JobContext, round_: Round | None = None) -> TrainedModel:
    """Train, evaluate on held-out gold, register a new version and activate it when the
    activation gate lets it (``registry.model_version_activate_if_better``). A version an
    earlier attempt of the job registered is not trained again (see the module docstring)."""
    campaign = job.campaign
    params = job.params
    typed = LoopParams.from_params(params, ignore_unknown=True)  # train params are a subset
    earlier = model_version_registered_by(job=job, kind=ModelVersion.Kind.LOOP)
    if earlier is not None:
        from scoring.loop.pool_scoring import load_version_model

        context.log(f"resuming: v{earlier.number} was registered by an earlier attempt")
        version = _activation_gate(version=earlier, activate=typed.activate, context=context)
        return TrainedModel(version, load_version_model(version))
    config = typed.training_config()
    gold_share = typed.train_on_gold_share or 0.0
    data = training_pairs(campaign=campaign, train_on_gold_share=gold_share)
    if not len(data):
        raise JobError(
            "no verified pairs to train on yet: a pair needs a unanimous, majority or "
            "adjudicated consensus other than a tie (gold pairs are held out)"
        )
    heldout = heldout_pairs(campaign=campaign, train_on_gold_share=gold_share)
    base = resolve_base_model(params)
    context.log(
        # The whole path: the packaged default's folder is called "model".
        f"training a {config.mode} model on {len(data)} pairs from {base}; "
        f"{len(heldout)} gold pairs held out"
    )
    processes = int(params.get("processes") or 1)
    # FSDP needs a process group, so it runs through torchrun even as one process.
    if processes > 1 or config.strategy == "fsdp":
        model, metrics = _train_in_processes(
            base=base,
            data=data,
            config=config,
            params=params,
            context=context,
            processes=processes,
        )
        key = encoder_key(base, model.max_length)
        head_mode = False
    else:
        model, metrics, key, head_mode = train_in_process(
            base=base, data=data, heldout=heldout, config=config, params=params, context=context
        )
    if metrics.cancelled:
        raise JobCancelled
    context.check()
    evaluation = evaluate_pairs(model=model, data=heldout, key=key if head_mode else None)
    all_metrics: dict[str, Any] = {
        "training": metrics.as_dict(),
        "heldout": evaluation,
        # The base encoder that computes this version's cached vectors (retrieval; head mode).
        "encoder": key,
        "encoder_max_length": model.max_length,
    }
    accuracy = evaluation["accuracy"] if evaluation else None
    context.log(
        "held-out gold accuracy: "
        + (f"{accuracy:.3f} on {evaluation['n']} pairs" if evaluation else "no gold pairs")
    )
    context.check()  # a cancel during the evaluation still registers nothing
    with context.stage(0.9, 1.0, "saving the checkpoint"):
        version = model_version_register(
            campaign=campaign,
            job=job,
            model=model,
            base=str(base),
            mode=config.mode,
            label_snapshot=label_snapshot(campaign=campaign, data=data, heldout=heldout),
            metrics=all_metrics,
            heldout_accuracy=accuracy,
            round_=round_,
        )
    context.log(f"registered v{version.number} at {version.checkpoint}")
    version = _activation_gate(version=version, activate=typed.activate, context=context)
    return TrainedModel(version, model)


def _activation_gate(*, version: ModelVersion, activate: bool, context: JobContext) -> ModelVersion:
    """Put the job's registered ``version`` through the activation gate (when the job asks to
    activate), unless an earlier attempt already did. A cancel asked since the registration
    stops the job here (JobCancelled): the version stays registered, unjudged and inactive."""
    context.cancel_leaves = f"v{version.number} was registered and not activated"
    if version.is_active:  # activated by an earlier attempt
        context.log(f"v{version.number} is the active model")
    elif version.activation_note != NOT_JUDGED:  # judged by an earlier attempt
        why = version.activation_note or "another version was activated since"
        context.log(f"v{version.number} registered but not activated: {why}")
    elif activate:
        version, refused = model_version_activate_if_better(version=version, job=context.job)
        if refused:
            context.log(f"v{version.number} registered but not activated: {refused}")
        else:
            context.log(f"v{version.number} is now the active model")
    if version.is_active:
        context.cancel_leaves = f"v{version.number} was registered and is the active model"
    return version


def train_in_process(
    *,
    base: Path,
    data: JudgedPairs,
    heldout: JudgedPairs,
    config: Any,
    params: dict[str, Any],
    context: JobContext,
) -> tuple[Any, Any, str, bool]:
    from scoring.reward_model import PairEmbeddings, RewardModel, train

    # The head's initial weights from the job's seed, as every torchrun rank draws them
    # (reward_model.distributed): one process and N processes train the same model.
    model = RewardModel.from_base(base, max_length=params.get("max_length"), seed=config.seed)
    key = encoder_key(base, model.max_length)
    head_mode = config.mode == "head"
    embeddings = None
    if head_mode:
        stored = [i for i in range(len(data)) if not data.is_expanded(i)]
        with context.stage(0.0, 0.7, "embedding pairs with the frozen encoder"):
            computed = pair_embeddings_ensure(
                pair_ids=[data.pairs[i].pk for i in stored] + heldout.pair_ids,
                model=model,
                key=key,
                on_progress=context.on_progress,
                check=context.check,
            )
        context.log(f"embedded {computed} new pairs (the rest were cached)")
        chosen, rejected = _training_vectors(model, data, key)
        # Swapped in place where B was chosen: a second pair of (pairs x width) arrays, 3 KB
        # a pair at 384 dimensions, would otherwise be held through the whole fit.
        b_chosen = np.array(data.preferences) <= 0
        chosen[b_chosen], rejected[b_chosen] = rejected[b_chosen], chosen[b_chosen]
        embeddings = PairEmbeddings(chosen=chosen, rejected=rejected)
    fit_start = 0.7 if head_mode else 0.0
    with context.stage(fit_start, 0.9, f"training ({config.mode} mode)"):
        metrics = train(
            model,
            _examples(data),
            config,
            embeddings=embeddings,
            on_progress=context.on_progress,
            should_stop=context.should_stop,
        )
    return model, metrics, key, head_mode


def _training_vectors(model: Any, data: JudgedPairs, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Response vectors of A and B for every pair of ``data``, in order: cached ones for stored
    pairs, computed here for pairs expanded from rankings (no cache describes them), a chunk of
    texts at a time."""
    expanded = [i for i in range(len(data)) if data.is_expanded(i)]
    if not expanded:
        vectors = pair_vectors_load(pair_ids=data.pair_ids, key=key, context=False)
        return vectors.a, vectors.b
    stored = [i for i in range(len(data)) if not data.is_expanded(i)]
    parts = []
    if stored:
        stored_ids = [data.pairs[i].pk for i in stored]
        parts.append((stored, pair_vectors_load(pair_ids=stored_ids, key=key, context=False)))
    for first in range(0, len(expanded), TEXT_CHUNK):
        positions = expanded[first : first + TEXT_CHUNK]
        texts = pair_texts_at(data, positions)
        copies = [
            Pair(pk=data.pairs[p].pk, conversation=conversation, response_a=a, response_b=b)
            for p, (conversation, a, b) in zip(positions, texts, strict=True)
        ]
        parts.append((positions, compute_pair_vectors(model, copies)))
    width = parts[0][1].a.shape[1]
    vector_a = np.zeros((len(data), width), dtype=parts[0][1].a.dtype)
    vector_b = np.zeros_like(vector_a)
    for positions, vectors in parts:
        vector_a[positions] = vectors.a
        vector_b[positions] = vectors.b
    return vector_a, vector_b


def _train_in_processes(
    *,
    base: Path,
    data: JudgedPairs,
    config: Any,
    params: dict[str, Any],
    context: JobContext,
    processes: int,
) -> tuple[Any, Any]:
    """Full fine-tuning as ``processes`` torchrun ranks (see ``reward_model.launcher``): a
    cancel or a lost job kills the whole process group; nothing is registered then."""
    import torch

    if config.mode != "full":
        raise JobError("several processes train only in full mode")
    from scoring.reward_model.launcher import (
        DistributedTrainingCancelled,
        DistributedTrainingError,
        train_distributed,
    )

    device = "cuda" if torch.cuda.is_available() else "cpu"
    _check_processes_fit(processes)
    context.log(f"launching {processes} training processes (torchrun, {device}, {config.strategy})")
    try:
        with context.stage(0.0, 0.9, f"training (full mode, {processes} processes)"):
            result = train_distributed(
                base_model=base,
                examples=_examples(data),
                config=config,
                processes=processes,
                max_length=params.get("max_length"),
                seed=config.seed,
                device=device,
                on_progress=context.on_progress,
                should_stop=context.should_stop,
            )
    except DistributedTrainingCancelled:
        raise JobCancelled from None
    except DistributedTrainingError as error:
        raise JobError(str(error)) from error
    return result.model, result.metrics


# --- Stage 2's gold model -------------------------------------------------------------------
def gold_model_train(
    *, job: Job, context: JobContext, sources: Sequence[str], mode: str = "head"
) -> ModelVersion:
    """Train Stage 2's gold model on ``gold_training_pairs`` and register it as a version of
    kind ``gold`` (never activated). Its base model is the campaign's latest training
    setting; held out: the gold pairs, when they are not among its sources. A gold model an
    earlier attempt of the job registered is not trained again (see the module docstring)."""
    campaign = job.campaign
    earlier = model_version_registered_by(job=job, kind=ModelVersion.Kind.GOLD)
    if earlier is not None:
        context.log(f"resuming: v{earlier.number} was registered by an earlier attempt")
        return earlier
    data = gold_training_pairs(campaign=campaign, sources=sources)
    if not len(data):
        raise JobError(
            f"no human-verified pairs ({', '.join(sources)}) to train the gold model on; "
            "choose other sources, name a gold_version, or set train_gold to false"
        )
    heldout = gold_pairs(campaign=campaign) if "gold" not in sources else JudgedPairs([], [])
    params = TrainParams(
        mode=mode, base_model=training_settings_for(campaign=campaign).get("base_model") or None
    ).as_params()
    config = TrainParams.from_params(params).training_config()
    base = resolve_base_model(params)
    context.log(
        f"training the gold model ({mode} mode) on {len(data)} human-verified pairs "
        f"({', '.join(sources)}); {len(heldout)} gold pairs held out"
    )
    model, metrics, key, head_mode = train_in_process(
        base=base, data=data, heldout=heldout, config=config, params=params, context=context
    )
    if metrics.cancelled:
        raise JobCancelled
    evaluation = evaluate_pairs(model=model, data=heldout, key=key if head_mode else None)
    snapshot = label_snapshot(campaign=campaign, data=data, heldout=heldout)
    snapshot["sources"] = list(sources)
    with context.stage(0.9, 1.0, "saving the gold model"):
        version = model_version_register(
            campaign=campaign,
            job=job,
            model=model,
            base=str(base),
            mode=config.mode,
            label_snapshot=snapshot,
            metrics={
                "training": metrics.as_dict(),
                "heldout": evaluation,
                "encoder": key,
                "encoder_max_length": model.max_length,
                "gold_sources": list(sources),
            },
            heldout_accuracy=evaluation["accuracy"] if evaluation else None,
            kind=ModelVersion.Kind.GOLD,
        )
    context.log(f"registered the gold model as v{version.number}")
    return version


def train_job_work(context: JobContext) -> dict[str, Any]:
    trained = model_train(job=context.job, context=context)
    return version_result(trained.version)


def version_result(version: ModelVersion) -> dict[str, Any]:
    return {
        "version": version.number,
        "version_id": version.pk,
        "checkpoint": version.checkpoint,
        "heldout_accuracy": version.heldout_accuracy,
        "mode": version.mode,
        "active": version.is_active,
        "activation_note": version.activation_note,
        "pairs": version.label_snapshot.get("pairs"),
        "world_size": (version.metrics.get("training") or {}).get("world_size", 1),
        "strategy": (version.metrics.get("training") or {}).get("strategy"),
    }
