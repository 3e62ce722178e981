"""Writes of the security area."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction


@transaction.atomic
def operator_ensure(*, username: str, password: str, email: str = "") -> bool:
    """Create the operator's superuser if it does not exist; returns whether it was created.

    An existing account is left as it is: its password may have been changed in
    the admin since, and a restart must not undo that.
    """
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        return False
    user_model.objects.create_superuser(username=username, email=email, password=password)
    return True
