"""The login form: Django's, with its user-name bound enforced before anyone is asked."""

from __future__ import annotations

from django.contrib.auth.forms import AuthenticationForm


class LoginForm(AuthenticationForm):
    """Django's login form, refusing a user name longer than any can be as a failed login.

    Django sets the field's max_length after building it, so no validator checks it: a longer
    name reached authenticate(), whose failure django-axes records in a 255-character column,
    and the INSERT failed in the database (a 500). Refused here, it gets the same answer as any
    wrong user name; no account can have it, so the lockout and the address brake lose nothing
    by not counting it (nor is a password hashed for it).
    """

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"]
        longest = self.username_field.max_length
        if longest is not None and len(username) > longest:
            raise self.get_invalid_login_error()
        return username
