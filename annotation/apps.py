from __future__ import annotations

from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from django.contrib.auth.signals import user_login_failed
        from django.db.models.signals import m2m_changed, post_delete, post_save
        from rest_framework.authtoken.models import Token

        from annotation.authentication import token_cache_clear
        from annotation.login_brake import login_failure_count

        user_login_failed.connect(login_failure_count, dispatch_uid="login-address-brake")

        user_model = get_user_model()
        for model in (user_model, Token, Group):
            post_save.connect(token_cache_clear, sender=model, dispatch_uid=f"tokens-{model}")
            post_delete.connect(token_cache_clear, sender=model, dispatch_uid=f"tokens-{model}")
        m2m_changed.connect(
            token_cache_clear, sender=user_model.groups.through, dispatch_uid="tokens-groups"
        )
