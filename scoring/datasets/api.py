"""REST API for curated exports and Stage-2 curation (admins only): one APIView per action."""

from __future__ import annotations

import copy
from collections.abc import Mapping

from django.http import FileResponse, Http404
from django.utils.text import get_valid_filename
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.selectors import campaign_for_admin
from core.paging import page_parameters, page_response
from core.requests import SignedInApiRequest
from scoring.datasets.curation import CurationParams, curation_create
from scoring.datasets.export import (
    FORMATS,
    ExportFilters,
    export_create,
    export_file,
)
from scoring.datasets.selectors import export_for_admin, exports_of_campaign
from scoring.jobs.params import params_serializer


class ExportOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    format = serializers.CharField()
    filters = serializers.JSONField()
    status = serializers.CharField(source="job.status")
    progress = serializers.FloatField(source="job.progress")
    message = serializers.CharField(source="job.message")
    error = serializers.CharField(source="job.error")
    manifest = serializers.JSONField()
    created_at = serializers.DateTimeField()
    download_url = serializers.SerializerMethodField()

    def get_download_url(self, snapshot) -> str | None:  # noqa: ANN001 - an ExportSnapshot
        if export_file(snapshot=snapshot) is None:
            return None
        return f"/api/exports/{snapshot.pk}/download"


@extend_schema_view(
    get=extend_schema(summary="The campaign's export snapshots"),
    post=extend_schema(summary="Start an export snapshot"),
)
class ExportsApi(APIView):
    """GET: the campaign's export snapshots, newest first, a page at a time (``core.paging``).
    POST: start a new one (a job).

    The body is the export's format and its ExportFilters (parsed by ExportFilters.from_params;
    the serializer below only documents it)."""

    class InputSerializer(params_serializer(ExportFilters)):  # type: ignore[misc]
        format = serializers.ChoiceField(choices=FORMATS, default="parquet")

    @extend_schema(parameters=page_parameters(), responses={200: ExportOutputSerializer(many=True)})
    def get(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        return page_response(
            request,
            exports_of_campaign(campaign=campaign),
            order=("-version", "-id"),
            serialize=lambda rows: ExportOutputSerializer(rows, many=True).data,
        )

    @extend_schema(request=InputSerializer, responses={202: ExportOutputSerializer})
    def post(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        data, file_format = request.data, "parquet"
        if isinstance(data, Mapping):
            # A shallow copy: QueryDict.copy() deep-copies, and a multipart upload spooled to a
            # temporary file cannot be (a 500, not the 400 "unknown parameter" below).
            data = copy.copy(data)
            file_format = data.get("format") or "parquet"
            data.pop("format", None)
        filters = ExportFilters.from_params(data)  # refuses anything but an object
        snapshot = export_create(
            campaign=campaign, file_format=file_format, filters=filters, user=request.user
        )
        return Response(ExportOutputSerializer(snapshot).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(summary="Download an export snapshot")
class ExportDownloadApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("file", str, enum=["main", "ties", "outcomes"], required=False)
        ],
        responses={200: OpenApiResponse(description="The export file, as an attachment.")},
    )
    def get(self, request: SignedInApiRequest, export_id: int) -> FileResponse:
        snapshot = export_for_admin(export_id=export_id, user=request.user)
        role = request.query_params.get("file", "main")
        path = (
            export_file(snapshot=snapshot, role=role)
            if role in ("main", "ties", "outcomes")
            else None
        )
        if path is None:
            raise Http404("This export has no such file (yet).")
        # Letters, digits, "-", "_" and ".": a campaign's name may hold ":" (which Windows
        # refuses in a file name) or "/" (a folder to a saving client).
        filename = get_valid_filename(f"{snapshot.campaign.name}-{path.name}")
        return FileResponse(path.open("rb"), as_attachment=True, filename=filename)


@extend_schema(summary="Start curating the silver pool")
class CurationsApi(APIView):
    """POST: start Stage-2 curation of the campaign's silver pool (a job on the gpu queue)."""

    @extend_schema(request=params_serializer(CurationParams), responses={202: dict, 400: dict})
    def post(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        params = CurationParams.from_params(request.data)
        job = curation_create(campaign=campaign, params=params, user=request.user)
        return Response({"job": job.pk, "status": job.status}, status=status.HTTP_202_ACCEPTED)
