"""The one settings module. Every value comes from the environment (see .env.example)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from config.env import envbool, envfloat, envint, envlist, envsecret, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
# A local .env is a convenience for `make run`; real environment variables win. The test
# script points ARBITER_ENV_FILE at /dev/null so that a developer's .env never leaks in.
load_dotenv(os.environ.get("ARBITER_ENV_FILE") or BASE_DIR / ".env", override=False)

VAR_DIR = Path(envstr("ARBITER_VAR_DIR", str(BASE_DIR / "var")) or BASE_DIR / "var")

DEBUG = envbool("DEBUG", False)
SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set. Set SECRET_KEY (or SECRET_KEY_FILE) in the environment or in "
        ".env; `make run` writes a random one for local use."
    )
# Placeholders that have been published (ours in .env.example, Django's startproject prefix):
# a server started with one of them signs sessions and tokens with a key anyone knows.
_PLACEHOLDER_KEY_MARKS = ("change-me", "changeme", "django-insecure", "your-secret", "replace-me")
if not DEBUG and (
    any(mark in SECRET_KEY.lower() for mark in _PLACEHOLDER_KEY_MARKS)
    or len(SECRET_KEY) < 50
    or len(set(SECRET_KEY)) < 5
):
    raise ImproperlyConfigured(
        "SECRET_KEY is a placeholder or too weak (it needs 50 or more random characters when "
        "DEBUG is off). Generate one with: "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",  # intcomma: the dashboard's counts run to tens of millions
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "axes",
    "csp",
    "annotation",
    "reviewers",
    "scoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The framing and content-security headers come next, so that every answer gets them:
    # static files, and the 400 of a Host outside ALLOWED_HOSTS that CommonMiddleware raises.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.CSPMiddleware",  # django-csp's, with the headers built once
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before the CSRF check, which reads a form post whole: 413 for an upload over its bound.
    "config.middleware.UploadBoundMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A page asks the user's roles several times: one query reads them all, once.
    "config.middleware.RolesOncePerRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # 400 for out-of-range numbers and over-deep input, 503 for a lost database connection.
    "config.middleware.RequestFaultMiddleware",
    # An ApplicationError a page view lets through becomes its page or htmx fragment.
    "core.http.ApplicationErrorMiddleware",
    # Last, as django-axes asks, so that it sees the outcome of authentication.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "annotation.context_processors.nav",
            ],
        },
    }
]

# --- Database -----------------------------------------------------------------------------
_database_url = envstr("DATABASE_URL")
if _database_url:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and envbool(
        "DATABASE_PREPARED_STATEMENTS", True
    ):
        # Django turns psycopg's prepared statements off for the sake of transaction-pooling
        # PgBouncers older than 1.21. Only the hot path asks for them (ORM queries bind on
        # the client and are never prepared): planned once per connection, not per call.
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": envstr("ARBITER_SQLITE_PATH") or str(VAR_DIR / "arbiter.sqlite3"),
            "OPTIONS": {
                # WAL lets the web server read while the worker writes; IMMEDIATE avoids
                # "database is locked" upgrades inside transactions.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
    # The agreement index's INCLUDE (annotation.Label "label_regular_votes") is a PostgreSQL
    # index-only read; SQLite keeps the key columns, which is all the demo needs, and `make
    # run`'s migrate printed this warning on every start.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
_test_database_name = envstr("TEST_DATABASE_NAME")
if _test_database_name:
    DATABASES["default"]["TEST"] = {"NAME": _test_database_name}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth ---------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "annotation.login_brake.AddressBrakeBackend",
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AXES_FAILURE_LIMIT = envint("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = envfloat("AXES_COOLOFF_HOURS", 0.25, positive=True)
# A username is locked only together with the address guessing it, so that a stranger cannot
# lock anyone out; annotation/login_brake.py brakes an address spraying many usernames.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
LOGIN_ADDRESS_FAILURE_LIMIT = envint("LOGIN_ADDRESS_FAILURE_LIMIT", 50, minimum=1)
# Behind a reverse proxy every request's REMOTE_ADDR is the proxy's: the lockout and the brake
# key on the address the trusted proxies appended to X-Forwarded-For (core/client_ip.py).
TRUSTED_PROXY_HOPS = envint(
    "TRUSTED_PROXY_HOPS", 1 if envbool("BEHIND_TLS_PROXY", False) else 0, minimum=0
)
AXES_CLIENT_IP_CALLABLE = "core.client_ip.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

# --- Security headers ---------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads no cookie; the token travels in hx-headers.
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if envbool("BEHIND_TLS_PROXY", False) else None
)

# No inline script anywhere: every script is a static file. Inline styles stay off too.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# --- I18N / static ------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(BASE_DIR / "staticfiles")) or "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if envbool("STATIC_MANIFEST", not DEBUG)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(VAR_DIR / "media")) or VAR_DIR / "media")

# --- Cache --------------------------------------------------------------------------------
# Shared between web and worker processes (import progress, dashboard aggregates): Redis
# when configured, else files under var/ so that the embedded default needs no server.
_redis_cache_url = envstr("CACHE_URL")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _redis_cache_url}
        if _redis_cache_url
        else {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    )
}

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "annotation.authentication.TokenWithRolesAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "config.schema.AutoSchema",
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "config.negotiation.ContentNegotiation",
    # JSON only, in every environment. DRF's browsable API (its default second renderer) writes
    # inline <style> and style="" attributes, which CONTENT_SECURITY_POLICY's style-src 'self'
    # blocks; loosening the policy for it would weaken every page. Swagger UI at /api/docs/ is
    # the page for people (our own static files, no inline script or style).
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON through orjson with a bound on nesting depth (config/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # ApplicationError -> {"detail", "code"} with its status; everything else as DRF does.
    "EXCEPTION_HANDLER": "core.http.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Arbiter API",
    "DESCRIPTION": "Pairwise preference annotation for reward-model training data.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from our own static files: no CDN (offline installs) and no inline script.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Ties and "both bad/good" pairs of an export: one choice set, one name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "ExportSideFileEnum": ["exclude", "separate"],
        # Two choice sets are both called "role": a member's in a campaign, a turn's speaker.
        "MemberRoleEnum": "annotation.models.CampaignMember.Role",
        "TurnRoleEnum": ["system", "user", "assistant"],
    },
}

# --- Celery -------------------------------------------------------------------------------
# Without a broker URL, Celery uses kombu's file-system transport so that the embedded
# default needs no server at all.
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "celery-broker"
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Redis redelivers unacknowledged tasks after this many seconds: it must exceed the
    # longest job (training), or acks_late tasks would run twice concurrently.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 4 * 3600 + 600, minimum=1),
        # How often a worker looks for unacknowledged tasks past their visibility timeout.
        "unacked_restore_interval": envint("CELERY_UNACKED_RESTORE_INTERVAL", 60, minimum=1),
    }
# A Dawid-Skene campaign re-estimates its weighted consensus at most once per this many
# seconds, that long after the label that asked for it (reviewers.services.weighted_consensus).
CONSENSUS_REESTIMATE_DEBOUNCE_SECONDS = envint(
    "CONSENSUS_REESTIMATE_DEBOUNCE_SECONDS", 30, minimum=1
)
CELERY_RESULT_BACKEND = None  # Job rows are the truth, never the result backend.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
# Routing lives here, by task name only: tasks are sent by name (a lower layer never imports a
# task module), so a queue given on the task itself would not be seen by the sender. Exact names
# win over the pattern. Light scoring work (exports, periodic checks) stays on `default`.
CELERY_TASK_ROUTES = {
    "scoring.export_snapshot": {"queue": "default"},
    "scoring.check_round_completion": {"queue": "default"},
    "scoring.recover_stale_jobs": {"queue": "default"},
    "scoring.refresh_dashboards": {"queue": "default"},
    "scoring.evaluate_pending": {"queue": "default"},
    "scoring.remove_campaign_files": {"queue": "default"},
    "scoring.*": {"queue": "gpu"},
    "annotation.run_code": {"queue": "sandbox"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
TRAINING_TIME_LIMIT_S = envint("TRAINING_TIME_LIMIT_S", 4 * 3600, minimum=60)
CELERY_BEAT_SCHEDULE = {
    # Expired leases give their slot back to the queue.
    "expire-leases": {"task": "annotation.expire_leases", "schedule": 30.0},
    "fail-stale-imports-and-code-runs": {"task": "annotation.fail_stale_work", "schedule": 120.0},
    # Opens the next round (and retrains, when the campaign asks) once a round is complete.
    "check-round-completion": {"task": "scoring.check_round_completion", "schedule": 60.0},
    # Model jobs whose worker died without a trace are retried or failed.
    "recover-stale-model-jobs": {"task": "scoring.recover_stale_jobs", "schedule": 300.0},
    # The dashboard's slow panels (agreement, annotators) are recomputed here, not in a page.
    # One not started within its minute is dropped: the next is as good, and a busy worker
    # does not pile them up behind imports and exports.
    "refresh-dashboards": {
        "task": "scoring.refresh_dashboards",
        "schedule": 60.0,
        "options": {"expires": 55.0},
    },
    # Ready model versions without a result on an evaluation set get an evaluate job.
    "evaluate-pending": {"task": "scoring.evaluate_pending", "schedule": 60.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- E-mail (experts hear of new escalations) ---------------------------------------------
# The console by default (as `make run` wants it); set EMAIL_BACKEND and EMAIL_HOST… to send.
EMAIL_BACKEND = envstr("EMAIL_BACKEND") or "django.core.mail.backends.console.EmailBackend"
EMAIL_HOST = envstr("EMAIL_HOST", "localhost") or "localhost"
EMAIL_PORT = envint("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER", "") or ""
EMAIL_HOST_PASSWORD = envsecret("EMAIL_HOST_PASSWORD", "") or ""
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "arbiter@localhost") or "arbiter@localhost"

# --- Arbiter ------------------------------------------------------------------------------
ARBITER: dict[str, Any] = {  # heterogeneous: each reader knows its key's type
    # This server's address as people reach it (https://arbiter.example.org), for links in
    # e-mails; empty gives paths only.
    "BASE_URL": (envstr("ARBITER_BASE_URL", "") or "").rstrip("/"),
    "DEFAULT_LEASE_SECONDS": envint("ARBITER_LEASE_SECONDS", 900, minimum=30),
    "IMPORT_MAX_BYTES": envint("ARBITER_IMPORT_MAX_BYTES", 2 * 1024**3, minimum=1),
    "IMPORT_MAX_DECOMPRESSED_BYTES": envint(
        "ARBITER_IMPORT_MAX_DECOMPRESSED_BYTES", 8 * 1024**3, minimum=1
    ),
    "IMPORT_MAX_ROWS": envint("ARBITER_IMPORT_MAX_ROWS", 20_000_000, minimum=1),
    # An upload is imported within the request when reading it costs at most this many bytes
    # (decompressed, as measured), and must be read within the first limit of seconds there,
    # the second in a worker.
    "IMPORT_INLINE_MAX_BYTES": envint("ARBITER_IMPORT_INLINE_MAX_BYTES", 5 * 1024**2, minimum=0),
    "IMPORT_INLINE_MAX_SECONDS": envfloat("ARBITER_IMPORT_INLINE_MAX_SECONDS", 20.0, positive=True),
    "IMPORT_MAX_SECONDS": envfloat("ARBITER_IMPORT_MAX_SECONDS", 4 * 3600.0, positive=True),
    "MODEL_DIR": Path(envstr("ARBITER_MODEL_DIR", str(VAR_DIR / "models")) or "models"),
    "EXPORT_DIR": Path(envstr("ARBITER_EXPORT_DIR", str(VAR_DIR / "exports")) or "exports"),
    "BASE_MODEL": envstr("ARBITER_BASE_MODEL", "") or "",
    # Where a retrain asked for from the web (dashboard or API) may take its base model from:
    # directories separated by the OS path separator; empty, any local directory the worker
    # reads. The model store's checkpoints are always allowed (to the admins of their campaign).
    "BASE_MODEL_ROOTS": [
        Path(root)
        for root in (envstr("ARBITER_BASE_MODEL_ROOTS", "") or "").split(os.pathsep)
        if root.strip()
    ],
    "SEARCH_BACKEND": envstr("ARBITER_SEARCH_BACKEND", "") or "",
    # The longest one corpus search may run on PostgreSQL (its statement_timeout); past it the
    # annotator is told to narrow the query. A search takes milliseconds on 100,000 documents.
    "SEARCH_TIMEOUT_S": envfloat("ARBITER_SEARCH_TIMEOUT_S", 5.0, positive=True),
    "WEB_SEARCH_URL": envstr("ARBITER_WEB_SEARCH_URL", "") or "",
    "WEB_SEARCH_KEY": envsecret("ARBITER_WEB_SEARCH_KEY", "") or "",
    "LLM_URL": envstr("ARBITER_LLM_URL", "") or "",
    "LLM_MODEL": envstr("ARBITER_LLM_MODEL", "") or "",
    "LLM_KEY": envsecret("ARBITER_LLM_KEY", "") or "",
    "LLM_TIMEOUT_S": envfloat("ARBITER_LLM_TIMEOUT_S", 60.0, positive=True),
    # Model asks waiting on the provider at once in one web process (0: no cap); each holds a
    # server thread, so the cap keeps threads free for next and label.
    "LLM_CONCURRENT_ASKS": envint("ARBITER_LLM_CONCURRENT_ASKS", 2, minimum=0),
    "CODE_RUN_WAIT_S": envfloat("ARBITER_CODE_RUN_WAIT_S", 5.0, minimum=0),
    "CODE_RUN_MAX_PENDING": envint("ARBITER_CODE_RUN_MAX_PENDING", 8, minimum=1),
    # Tool calls per user per minute (0: unlimited); over it a call is refused (API: 429).
    "SEARCHES_PER_MINUTE": envint("ARBITER_SEARCHES_PER_MINUTE", 60, minimum=0),
    "CODE_RUNS_PER_MINUTE": envint("ARBITER_CODE_RUNS_PER_MINUTE", 20, minimum=0),
    "LLM_ASKS_PER_MINUTE": envint("ARBITER_LLM_ASKS_PER_MINUTE", 10, minimum=0),
    "ATTACHES_PER_MINUTE": envint("ARBITER_ATTACHES_PER_MINUTE", 60, minimum=0),
    # How long a web process trusts what it read for an API token (0: it reads every call).
    "TOKEN_CACHE_SECONDS": envfloat("ARBITER_TOKEN_CACHE_SECONDS", 5.0, minimum=0),
    # Bytes a JSON request body may hold (413 above); above the score endpoint's characters
    # as \u-escaped JSON spells them (six bytes each).
    "API_MAX_JSON_BYTES": envint("ARBITER_API_MAX_JSON_BYTES", 16 * 1024**2, minimum=1024),
    # The scoring endpoint: items per request, characters per request, how long the web
    # request waits for a worker's answer before a 504, and the queue of those workers.
    "SCORE_MAX_ITEMS": envint("ARBITER_SCORE_MAX_ITEMS", 64, minimum=1),
    "SCORE_MAX_CHARS": envint("ARBITER_SCORE_MAX_CHARS", 2_000_000, minimum=1),
    "SCORE_TIMEOUT_S": envfloat("ARBITER_SCORE_TIMEOUT_S", 30.0, positive=True),
    "SCORE_QUEUE": envstr("ARBITER_SCORE_QUEUE", "gpu") or "gpu",
    # A running job whose heartbeat is silent this long is taken over by another worker.
    "JOB_STALE_SECONDS": envfloat("ARBITER_JOB_STALE_SECONDS", 60.0, positive=True),
    # Pair vectors (part files per encoder) and the retrieval index: a local directory or any
    # fsspec URL (s3://…, a shared volume) that every worker can reach.
    "VECTOR_ROOT": envstr("ARBITER_VECTOR_ROOT", str(VAR_DIR / "vectors"))
    or str(VAR_DIR / "vectors"),
    # How vectors are stored: i8 (int8 + a scale per row), i12, f16 or f32; the features of A
    # and B also mid-diff (midpoint i8, difference i12) (README: their effect).
    "VECTOR_FEATURE_CODEC": envstr("ARBITER_VECTOR_FEATURE_CODEC", "mid-diff") or "mid-diff",
    "VECTOR_CONTEXT_CODEC": envstr("ARBITER_VECTOR_CONTEXT_CODEC", "i8") or "i8",
    # Retrieval index: exact up to this many vectors, IVF above (searching nprobe lists).
    "INDEX_EXACT_MAX": envint("ARBITER_INDEX_EXACT_MAX", 50_000, minimum=1),
    "INDEX_NPROBE": envint("ARBITER_INDEX_NPROBE", 48, minimum=1),
    # An IVF search takes k × this many candidates and ranks them by exact inner product
    # against the stored vectors (8-bit codes cannot order near-duplicates; README: measured).
    "INDEX_REFINE": envint("ARBITER_INDEX_REFINE", 8, minimum=1),
    # faiss's OpenMP threads: 1 suits a shared or busy host (README: measured), more a
    # dedicated one.
    "INDEX_THREADS": envint("ARBITER_INDEX_THREADS", 1, minimum=1),
    # Score stages split their pairs into shards of this many, run by every gpu worker.
    "SHARD_SIZE": envint("ARBITER_SHARD_SIZE", 20_000, minimum=1),
    # Pairs a shard reads, embeds, scores and commits at a time.
    "SCORE_CHUNK": envint("ARBITER_SCORE_CHUNK", 2048, minimum=1),
}
for _codec, _allowed in (
    ("VECTOR_FEATURE_CODEC", ("mid-diff", "i8", "i12", "f16", "f32")),
    ("VECTOR_CONTEXT_CODEC", ("i8", "i12", "f16", "f32")),
):
    if ARBITER[_codec] not in _allowed:
        raise ImproperlyConfigured(f"ARBITER_{_codec} must be one of {', '.join(_allowed)}")
if envstr("ARBITER_JOB_HEARTBEAT_SECONDS"):  # default: a quarter of the stale time, at most 10 s
    ARBITER["JOB_HEARTBEAT_SECONDS"] = envfloat(
        "ARBITER_JOB_HEARTBEAT_SECONDS", 10.0, positive=True
    )
# --- Task time limits (README: "Time limits") ------------------------------------------------
# Soft limits, in seconds, of the default-queue tasks whose work grows with the data; each
# task's hard limit (its worker process killed) comes 120 s later. A task stopped by its soft
# limit fails its job, saying so, and keeps nothing. An import reads for at most
# ARBITER_IMPORT_MAX_SECONDS (4 h; a 20M-row file, the most one may hold, takes about 31 min at
# the slowest import rate the README records, 10,795 pairs/s), plus half an hour for the
# batches in flight and the commit. An export of 40M pairs, deduplicated by exact repeats
# (5,600 pairs/s measured), takes about two hours; four hours stays under the broker's
# visibility timeout (4 h 10 min).
IMPORT_TIME_LIMIT_S = envint(
    "ARBITER_IMPORT_TIME_LIMIT_S", int(ARBITER["IMPORT_MAX_SECONDS"]) + 1800, minimum=1
)
EXPORT_TIME_LIMIT_S = envint("ARBITER_EXPORT_TIME_LIMIT_S", 4 * 3600, minimum=1)
# A Dawid-Skene re-estimate took 29-79 s per million pairs end to end (README: agreement.py):
# 20-55 min at 40M pairs.
CONSENSUS_REESTIMATE_TIME_LIMIT_S = envint("CONSENSUS_REESTIMATE_TIME_LIMIT_S", 2 * 3600, minimum=1)
# The dashboard refresh (every minute) recomputes the agreement and annotator panels of every
# campaign labelled that day: 3.9 s and 1.1 s for 100,000 pairs under load (README:
# dashboard.py), so about 35 min for a campaign of 40M pairs.
DASHBOARD_REFRESH_TIME_LIMIT_S = envint(
    "ARBITER_DASHBOARD_REFRESH_TIME_LIMIT_S", 2 * 3600, minimum=1
)
# Seconds an SMTP connection may wait on the server (Django's default: for ever), so that a
# hung mail server fails the expert notification (which retries) instead of holding a worker.
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 30, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
}
