"""The annotator tools: search, attached results, sandboxed code runs and model consultations.

Whatever a tool does while an assignment is open is stored as Evidence on that assignment;
label_submit links the evidence to the label, and `evidence_summary` tells an expert or an
export what the annotator relied on.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import nh3
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import DataError, transaction
from django.utils import timezone

from annotation.models import Assignment, CodeRun, Document, Evidence, Label
from annotation.models.tools import CODE_RUN_UNFINISHED
from annotation.roles import Role, user_has_role
from annotation.selectors import shown_pair
from annotation.tools import search as search_tools
from annotation.tools.llm import LlmUnavailable, chat, pair_messages, ranking_messages
from core import errors
from core.counters import counter_incr
from core.queue import QUEUE_UNAVAILABLE_REASON, send_task_on_commit

logger = logging.getLogger(__name__)

MAX_CODE_CHARS = 256 * 1024
MAX_STDIN_CHARS = 1024 * 1024
MAX_TESTS_CHARS = 64 * 1024
# Evidence keeps the head of long outputs; the CodeRun row keeps them whole.
EVIDENCE_OUTPUT_CHARS = 4000
EVIDENCE_CODE_CHARS = 64 * 1024
# Attached results one assignment may hold: more than any real judgement cites, and a bound on
# what the review page and the export read back (each result keeps up to about 9 KB).
MAX_ATTACHED_PER_ASSIGNMENT = 50
# What a run whose every retry found the sandbox slots taken tells the annotator.
SANDBOX_BUSY_REASON = "every sandbox slot stayed busy; try again"


class ToolError(errors.ApplicationError):
    code = "tool_error"


class AssignmentClosed(errors.Conflict, ToolError):
    code = "assignment_closed"


class TooManyRuns(errors.RateLimited, ToolError):
    code = "too_many_runs"


class TooManyAttachedResults(errors.Conflict, ToolError):
    code = "too_many_attached_results"


class ToolUnavailable(errors.Unavailable, ToolError):
    code = "tool_unavailable"


class RateLimited(errors.RateLimited, ToolError):
    code = "rate_limited"


# What each tool's per-minute limit is called in settings.ARBITER, and in messages.
_RATE_LIMITS = {
    "search": ("SEARCHES_PER_MINUTE", "searches"),
    "code_run": ("CODE_RUNS_PER_MINUTE", "code runs"),
    "llm": ("LLM_ASKS_PER_MINUTE", "questions to the model"),
    "attach": ("ATTACHES_PER_MINUTE", "attached results"),
}


def tool_rate_check(*, user_id: int, tool: str, now: float | None = None) -> None:
    """Count one call of ``tool`` by the user; refuse it past the per-minute limit.

    Fixed one-minute windows counted in the shared cache (Redis in production), so every web
    process sees the same count, with an increment that is atomic on every cache backend
    (core/counters.py); a refused call counts too, so hammering does not pay.
    """
    setting, what = _RATE_LIMITS[tool]
    limit = int(settings.ARBITER.get(setting, 0))
    if limit <= 0:
        return
    now = time.time() if now is None else now
    window = int(now // 60)
    count = counter_incr(f"tool-rate:{tool}:{user_id}:{window}", timeout=120)
    if count > limit:
        wait_s = max(1, int(60 - now % 60))
        raise RateLimited(
            f"You have reached the limit for {what} ({limit} a minute); try again in {wait_s} s.",
            retry_after=wait_s,
        )


def tools_allowed(user: User | AnonymousUser) -> bool:
    """Annotators use the tools while judging; experts while reviewing (admins may do both)."""
    return user_has_role(user, Role.ANNOTATOR) or user_has_role(user, Role.EXPERT)


def assignment_require_open(*, assignment: Assignment, now: datetime | None = None) -> None:
    now = now or timezone.now()
    if assignment.status != Assignment.Status.ACTIVE or assignment.lease_expires_at < now:
        raise AssignmentClosed("This assignment is no longer open; its tools are closed too.")


def _evidence_create(*, assignment: Assignment, kind: str, payload: dict[str, Any]) -> Evidence:
    evidence = Evidence(assignment=assignment, kind=kind, payload=payload)
    evidence.full_clean(exclude=["assignment", "label"])
    evidence.save()
    return evidence


# --- search -----------------------------------------------------------------------------------


def tool_search(
    *,
    query: str,
    k: int = 10,
    corpus_id: int | None = None,
    assignment: Assignment | None = None,
    user: User | None = None,
) -> list[search_tools.SearchHit]:
    """Search, and record the search as evidence when it was made for an open assignment.

    With ``user``, the search counts against that user's per-minute limit.
    """
    if assignment is not None:
        assignment_require_open(assignment=assignment)
    if user is not None:
        tool_rate_check(user_id=user.pk, tool="search")
    k = search_tools.clamp_k(k)
    hits = search_tools.search(query, k, corpus_id=corpus_id)
    if assignment is not None and search_tools.clean_query(query):
        with transaction.atomic():
            # Under the assignment's row lock, as an attach: a label submitted while the search
            # ran would not link evidence written after it, which would then belong to no label.
            locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
            assignment_require_open(assignment=locked)
            _evidence_create(
                assignment=locked,
                kind=Evidence.Kind.SEARCH,
                payload={
                    "query": search_tools.clean_query(query),
                    "k": k,
                    "corpus": corpus_id,
                    "backend": search_tools.backend_name(),
                    "hits": [
                        {"id": hit.document_id, "title": hit.title, "source": hit.source}
                        for hit in hits
                    ],
                },
            )
    return hits


def safe_snippet(snippet: str) -> str:
    """A snippet sent back by a client, reduced to text and <mark>: safe to render as HTML."""
    return nh3.clean(snippet[:4000], tags={"mark"}, attributes={})


def evidence_attach(
    *,
    assignment: Assignment,
    title: str = "",
    snippet: str = "",
    source: str = "",
    document_id: int | None = None,
    query: str = "",
    note: str = "",
) -> Evidence:
    """Attach one search result to the assignment as evidence. For a corpus document the title,
    source and attribution come from the database, not from the client.

    Counts against the annotator's attached results a minute; an assignment holds at most
    MAX_ATTACHED_PER_ASSIGNMENT of them.
    """
    assignment_require_open(assignment=assignment)
    tool_rate_check(user_id=assignment.annotator_id, tool="attach")
    attribution = ""
    if document_id is not None:
        document = Document.objects.filter(pk=document_id).first()
        if document is None:
            raise ToolError("No such document.")
        title, source, attribution = document.title, document.source, document.attribution
    if not title.strip():
        raise ToolError("An attached result needs a title or a document.")
    payload = {
        "document_id": document_id,
        "title": search_tools.strip_control_chars(title)[:500],
        "source": search_tools.strip_control_chars(source)[:1000],
        "attribution": attribution,
        "snippet": safe_snippet(snippet),
        "query": search_tools.clean_query(query),
        "note": search_tools.strip_control_chars(note)[:2000],
    }
    with transaction.atomic():
        # Under the assignment's row lock, simultaneous attaches each count the ones before
        # them (none passes the cap), and none lands after the label was submitted.
        locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
        assignment_require_open(assignment=locked)
        attached = Evidence.objects.filter(
            assignment=locked, kind=Evidence.Kind.ATTACHED_RESULT
        ).count()
        if attached >= MAX_ATTACHED_PER_ASSIGNMENT:
            raise TooManyAttachedResults(
                f"This assignment already holds {attached} attached results, the most one may "
                f"hold ({MAX_ATTACHED_PER_ASSIGNMENT}); cite any further source in your rationale."
            )
        return _evidence_create(
            assignment=locked, kind=Evidence.Kind.ATTACHED_RESULT, payload=payload
        )


# --- code runs --------------------------------------------------------------------------------


def code_run_max_pending() -> int:
    return int(settings.ARBITER.get("CODE_RUN_MAX_PENDING", 8))


def code_run_create(
    *,
    user: User,
    language: str,
    code: str,
    stdin: str = "",
    tests: str = "",
    assignment: Assignment | None = None,
) -> CodeRun:
    """Queue a sandboxed run on the `sandbox` Celery queue; the task fills in the result.

    A run made for an open assignment is recorded as evidence at once (so a label submitted
    before the run ends still lists it), and the task adds the outcome. The evidence is
    written under the assignment's row lock, as an attached result's is: a label submitted
    meanwhile lists it, or the run is refused (AssignmentClosed) once the label is in.
    """
    if assignment is not None:
        assignment_require_open(assignment=assignment)
    if len(code) > MAX_CODE_CHARS or len(stdin) > MAX_STDIN_CHARS or len(tests) > MAX_TESTS_CHARS:
        raise ToolError("The code, stdin or tests are too long.")
    with transaction.atomic():
        # Count and insert under the user's row lock: of simultaneous requests each counts the
        # runs of those before it, so none passes the cap. NO KEY: rows that merely reference
        # the user are not held up. (SQLite has no row locks; it runs one writer at a time.)
        User.objects.select_for_update(no_key=True).only("pk").get(pk=user.pk)
        if assignment is not None:
            # Then the assignment's row, as an attach takes it: a submit, which takes it too,
            # comes either after this run's evidence (and links it) or before (and the run is
            # refused); checked without it, a submit could commit between check and insert.
            # Nothing holds an assignment's lock and then waits for its user's: no deadlock.
            assignment = Assignment.objects.select_for_update().get(pk=assignment.pk)
            assignment_require_open(assignment=assignment)
        pending = CodeRun.objects.filter(CODE_RUN_UNFINISHED, user=user).count()
        if pending >= code_run_max_pending():
            raise TooManyRuns(
                f"You already have {pending} runs waiting or running; wait for one to finish."
            )
        tool_rate_check(user_id=user.pk, tool="code_run")
        run = CodeRun(
            user=user,
            assignment=assignment,
            language=language,
            code=code,
            stdin=stdin,
            tests=tests,
        )
        run.full_clean(exclude=["user", "assignment"])
        run.save()
        if assignment is not None:
            _evidence_create(
                assignment=assignment,
                kind=Evidence.Kind.CODE_RUN,
                payload={
                    "code_run_id": run.pk,
                    "language": language,
                    "code": code[:EVIDENCE_CODE_CHARS],
                    "stdin": stdin[:EVIDENCE_OUTPUT_CHARS],
                    "tests": tests[:EVIDENCE_CODE_CHARS],
                    "status": CodeRun.Status.QUEUED.value,
                },
            )
        # By name (routed to the sandbox queue): the task module imports this one.
        send_task_on_commit(
            "annotation.run_code", args=(run.pk,), on_unavailable=lambda: _code_run_fail_unsent(run)
        )
    return run


def _code_run_fail_unsent(run: CodeRun) -> None:
    """The broker was down: the run ends failed now rather than waiting for a task never sent."""
    run.status = CodeRun.Status.FAILED
    run.result = {"status": "failed", "error": QUEUE_UNAVAILABLE_REASON}
    run.finished_at = timezone.now()
    with transaction.atomic():
        failed = CodeRun.objects.filter(pk=run.pk, status=CodeRun.Status.QUEUED).update(
            status=run.status, result=run.result, finished_at=run.finished_at
        )
        if failed and run.assignment_id is not None:
            _code_run_evidence_update(run)


def _run_summary(run: CodeRun) -> dict[str, Any]:
    result = run.result or {}
    return {
        "status": run.status,
        "result_status": result.get("status"),
        "tests_outcome": result.get("tests"),
        "exit_code": result.get("exit_code"),
        "duration_ms": result.get("duration_ms"),
        "message": result.get("message") or result.get("error") or "",
        "stdout": (result.get("stdout") or "")[:EVIDENCE_OUTPUT_CHARS],
        "stderr": (result.get("stderr") or "")[:EVIDENCE_OUTPUT_CHARS],
    }


def code_run_execute(*, code_run_id: int, last_try: bool = False) -> CodeRun | None:
    """Claim a queued run, execute it in the sandbox and store the result.

    Idempotent: a run that is not queued any more (done, or claimed by another delivery of the
    same task) is left alone and None is returned. SandboxBusy puts the run back in the queue
    and propagates, so that the task can retry; on the task's ``last_try`` it fails the run
    instead (nothing would run it again), and still propagates for the task's own record.
    """
    from annotation.tools import (
        SandboxBusy,
        SandboxUnavailable,
        UnsupportedLanguage,
        run_code,
    )

    # The conditional UPDATE is the claim: of two deliveries, one changes the row.
    claimed = CodeRun.objects.filter(pk=code_run_id, status=CodeRun.Status.QUEUED).update(
        status=CodeRun.Status.RUNNING
    )
    if not claimed:
        return None
    run = CodeRun.objects.get(pk=code_run_id)
    try:
        result = run_code(run.language, run.code, stdin=run.stdin, tests=run.tests)
    except SandboxBusy:
        if last_try or _no_time_for_another_try(run):
            _code_run_finish(
                run, CodeRun.Status.FAILED, {"status": "failed", "error": SANDBOX_BUSY_REASON}
            )
        else:
            CodeRun.objects.filter(pk=run.pk, status=CodeRun.Status.RUNNING).update(
                status=CodeRun.Status.QUEUED
            )
        raise
    except (UnsupportedLanguage, SandboxUnavailable, ValueError) as exc:
        run.status, run.result = CodeRun.Status.FAILED, {"status": "failed", "error": str(exc)}
    except Exception:
        # A stuck worker hit its time limit, or a bug: the row must not stay "running".
        _code_run_finish(run, CodeRun.Status.FAILED, {"status": "failed", "error": "internal"})
        raise
    else:
        run.status, run.result = CodeRun.Status.DONE, result.to_dict()
    _code_run_finish(run, run.status, run.result)
    return run


# What a try may take beyond its wait for a slot: the task's longest back-off before it (30 s),
# then compiling (20 s) and running (30 s at most).
_TRY_BEYOND_SLOT_WAIT_S = 80


def _no_time_for_another_try(run: CodeRun) -> bool:
    """Whether the stale sweep would fail the run before one more try could end.

    Each try waits up to ARBITER_SANDBOX_SLOT_WAIT_S (60 s) for a slot, and the task tries 11
    times: a run that every try finds busy outlives CODE_RUN_STALE_SECONDS, and the sweep
    would fail it saying its worker stopped. The try that leaves no time for another is its
    last, so that the run fails with the true reason."""
    from annotation.tools.sandbox import SandboxConfig

    try:
        slot_wait_s = SandboxConfig.from_env().slot_wait_s
    except ValueError:  # a bad setting: run_code reported it already, as SandboxUnavailable
        slot_wait_s = SandboxConfig.slot_wait_s
    age_s = (timezone.now() - run.created_at).total_seconds()
    return age_s + slot_wait_s + _TRY_BEYOND_SLOT_WAIT_S >= CODE_RUN_STALE_SECONDS


def _code_run_finish(run: CodeRun, status: str, result: dict[str, Any]) -> None:
    try:
        _code_run_store(run, status, result)
    except DataError:
        # A result the database refuses must not leave the run "running" until the sweep.
        logger.exception("code run %s: the database refused its result", run.pk)
        _code_run_store(
            run,
            CodeRun.Status.FAILED,
            {"status": "failed", "error": "the run's output could not be stored"},
        )


def _code_run_store(run: CodeRun, status: str, result: dict[str, Any]) -> None:
    finished_at = timezone.now()
    # One transaction: whoever sees the run finished (a waiting API call) sees its evidence
    # updated too, and a worker killed in between leaves neither half written.
    with transaction.atomic():
        stored = CodeRun.objects.filter(pk=run.pk, status=CodeRun.Status.RUNNING).update(
            status=status, result=result, finished_at=finished_at
        )
        if not stored:
            # The sweep failed it meanwhile: its evidence already tells that outcome.
            run.refresh_from_db()
            return
        run.status, run.result, run.finished_at = status, result, finished_at
        if run.assignment_id is not None:
            _code_run_evidence_update(run)


def _code_run_evidence_update(run: CodeRun) -> None:
    assert run.assignment_id is not None  # noqa: S101 - the caller checked
    evidence_rows = Evidence.objects.filter(
        assignment_id=run.assignment_id, kind=Evidence.Kind.CODE_RUN
    ).filter(payload__code_run_id=run.pk)
    for evidence in evidence_rows:
        evidence.payload = {**evidence.payload, **_run_summary(run)}
        evidence.save(update_fields=["payload"])


# Requests waiting on runs at once in a web process. A wait holds a server thread (the API's up
# to 15 s); while the sandbox queue backs up (no sandbox worker, or slow programs) every run
# waits its whole timeout, and unbounded waits would take every thread from next and label, as
# unbounded model asks would (LLM_CONCURRENT_ASKS). A request past the cap does not wait: the
# run as it stands (queued) is answered at once, to poll.
CODE_RUN_CONCURRENT_WAITS = 2
_code_run_waits = threading.BoundedSemaphore(CODE_RUN_CONCURRENT_WAITS)


def code_run_wait(*, code_run_id: int, timeout_s: float, poll_s: float = 0.05) -> CodeRun:
    """The run once it is finished, or as it stands after `timeout_s` (polling the row); as it
    stands at once while CODE_RUN_CONCURRENT_WAITS other requests of this process wait."""
    if timeout_s <= 0 or not _code_run_waits.acquire(blocking=False):
        return CodeRun.objects.get(pk=code_run_id)
    try:
        return _code_run_poll(code_run_id=code_run_id, timeout_s=timeout_s, poll_s=poll_s)
    finally:
        _code_run_waits.release()


def _code_run_poll(*, code_run_id: int, timeout_s: float, poll_s: float) -> CodeRun:
    deadline = time.monotonic() + timeout_s
    while True:
        run = CodeRun.objects.get(pk=code_run_id)
        if run.status in (CodeRun.Status.DONE, CodeRun.Status.FAILED):
            return run
        if time.monotonic() >= deadline:
            return run
        time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))
        poll_s = min(poll_s * 1.5, 0.5)


def code_run_for_user(*, code_run_id: int, user: User) -> CodeRun | None:
    return CodeRun.objects.filter(pk=code_run_id, user=user).first()


# --- model consultation -----------------------------------------------------------------------


@dataclass(frozen=True)
class LlmSettings:
    url: str
    model: str
    key: str
    timeout_s: float
    concurrent_asks: int  # per web process; 0: no cap


def llm_settings() -> LlmSettings | None:
    """The configured model endpoint, or None while the tool is off (the default)."""
    config = settings.ARBITER
    url = (config.get("LLM_URL") or "").strip()
    if not url:
        return None
    return LlmSettings(
        url=url,
        model=(config.get("LLM_MODEL") or "").strip() or "default",
        key=config.get("LLM_KEY") or "",
        timeout_s=float(config.get("LLM_TIMEOUT_S") or 60),
        concurrent_asks=int(config.get("LLM_CONCURRENT_ASKS") or 0),
    )


_llm_slots_lock = threading.Lock()
_llm_slots_by_cap: dict[int, threading.BoundedSemaphore] = {}


def _llm_slots(cap: int) -> threading.BoundedSemaphore | None:
    """This process's semaphore for ``cap`` asks at once (None: no cap).

    An ask waits on the provider for up to LLM_TIMEOUT_S while holding a server thread; a
    few annotators asking at once must not take every thread from next and label.
    """
    if cap <= 0:
        return None
    with _llm_slots_lock:
        return _llm_slots_by_cap.setdefault(cap, threading.BoundedSemaphore(cap))


def _without_nul(text: str) -> str:
    # A model's text is stored as jsonb, which refuses NUL.
    return text.replace("\x00", "\ufffd")


# The most of a model's answer kept (and shown): a few pages. The endpoint may send up to
# 4 MiB (a model repeating itself until its context is full), and each ask keeps its answer
# as evidence, which the panel, the review page and the export read back.
MAX_ANSWER_CHARS = 20_000
ANSWER_CUT_MARK = "\n[… the rest of the answer was cut for length …]"


def _answer_kept(answer: str) -> str:
    answer = _without_nul(answer)
    if len(answer) <= MAX_ANSWER_CHARS:
        return answer
    return answer[:MAX_ANSWER_CHARS] + ANSWER_CUT_MARK


def llm_ask(*, assignment: Assignment, question: str) -> Evidence:
    """Ask the configured model about the pair (or every response of a ranking item) as this
    annotator sees it; log it as evidence.

    Once a model was consulted, label_submit requires the annotator's own rationale.
    """
    config = llm_settings()
    if config is None:
        raise ToolUnavailable("No model is configured (ARBITER_LLM_URL).")
    question = question.strip()
    if not question:
        raise ToolError("Ask a question.")
    if "\x00" in question:
        # Refused before the model is asked: the evidence could not store it (jsonb), and an
        # answer nobody can keep must not count against the annotator or the provider.
        raise ToolError("The question holds a NUL character; remove it and ask again.")
    assignment_require_open(assignment=assignment)
    tool_rate_check(user_id=assignment.annotator_id, tool="llm")
    shown = shown_pair(assignment)
    if "responses" in shown:
        # A ranking item: every response, as numbered on the page, not just the first two.
        messages = ranking_messages(
            conversation=shown["conversation"],
            responses=shown["responses"],
            question=question[:4000],
        )
    else:
        messages = pair_messages(
            conversation=shown["conversation"],
            response_a=shown["response_a"],
            response_b=shown["response_b"],
            question=question[:4000],
        )
    slots = _llm_slots(config.concurrent_asks)
    if slots is not None and not slots.acquire(blocking=False):
        raise ToolUnavailable(
            "The model is answering other questions on this server; ask again in a moment."
        )
    try:
        answer = chat(
            base_url=config.url,
            model=config.model,
            key=config.key,
            messages=messages,
            timeout_s=config.timeout_s,
        )
    except LlmUnavailable as exc:
        raise ToolUnavailable(str(exc)) from exc
    finally:
        if slots is not None:
            slots.release()
    with transaction.atomic():
        # The label may have been submitted while the model was thinking; then the answer
        # cannot have shaped it, and it is neither shown nor kept.
        locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
        assignment_require_open(assignment=locked)
        return _evidence_create(
            assignment=locked,
            kind=Evidence.Kind.LLM,
            payload={
                "question": question[:4000],
                "answer": _answer_kept(answer.answer),
                "model": _without_nul(answer.model)[:200],
            },
        )


# --- summary ----------------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def evidence_line(evidence: Evidence) -> str:
    payload = evidence.payload or {}
    if evidence.kind == Evidence.Kind.SEARCH:
        titles = [hit.get("title", "") for hit in payload.get("hits", [])][:3]
        found = f"{len(payload.get('hits', []))} hits"
        return f'Searched "{_clip(payload.get("query", ""), 80)}" ({found}: {", ".join(titles)})'
    if evidence.kind == Evidence.Kind.ATTACHED_RESULT:
        source = f" <{payload['source']}>" if payload.get("source") else ""
        note = f" — {_clip(payload['note'], 200)}" if payload.get("note") else ""
        return f'Attached "{_clip(payload.get("title", ""), 120)}"{source}{note}'
    if evidence.kind == Evidence.Kind.CODE_RUN:
        outcome = payload.get("result_status") or payload.get("status", "queued")
        outcome_of_tests = payload.get("tests_outcome")
        tests = f", tests {outcome_of_tests}" if outcome_of_tests else ""
        duration = payload.get("duration_ms")
        took = f" in {duration} ms" if duration is not None else ""
        return f"Ran {payload.get('language', 'code')}: {outcome}{tests}{took}"
    if evidence.kind == Evidence.Kind.LLM:
        return (
            f'Asked {payload.get("model", "a model")}: "{_clip(payload.get("question", ""), 160)}"'
            f' → "{_clip(payload.get("answer", ""), 240)}"'
        )
    return f"{evidence.kind}: {_clip(str(payload), 200)}"


def evidence_summary(label: Label) -> str:
    """One line per piece of evidence behind `label`, oldest first; "" when there is none."""
    return "\n".join(evidence_line(evidence) for evidence in label.evidence.all())


# Longer than a run's slot wait, retries and wall clock together (a try that would end later
# fails the run itself: _no_time_for_another_try).
CODE_RUN_STALE_SECONDS = 600
_STALE_REASONS: dict[str, str] = {
    CodeRun.Status.QUEUED: "no sandbox worker took this run within 10 minutes; try again later",
    CodeRun.Status.RUNNING: "the worker running this program stopped",
}


def code_runs_fail_stale(*, now: datetime | None = None) -> int:
    """Fail runs left queued or running by a worker that died, so nobody waits on them."""
    now = now or timezone.now()
    # CODE_RUN_UNFINISHED is the partial index's condition: the sweep reads only that index.
    stale = CodeRun.objects.filter(
        CODE_RUN_UNFINISHED, created_at__lt=now - timedelta(seconds=CODE_RUN_STALE_SECONDS)
    )
    failed = 0
    with transaction.atomic():
        for run in stale.only("pk", "assignment_id", "status"):
            # A run still queued was never taken (its tries end before the sweep: see
            # _no_time_for_another_try): no sandbox worker consumes the queue, or it lags.
            reason = _STALE_REASONS[run.status]
            result = {"status": "failed", "error": reason}
            # Guarded row by row: a run that finished (or started) since the SELECT keeps its
            # outcome (or is left to its worker until the next sweep).
            if not CodeRun.objects.filter(pk=run.pk, status=run.status).update(
                status=CodeRun.Status.FAILED, result=result, finished_at=now
            ):
                continue
            failed += 1
            if run.assignment_id is not None:
                run.status, run.result, run.finished_at = CodeRun.Status.FAILED, result, now
                _code_run_evidence_update(run)
    return failed
