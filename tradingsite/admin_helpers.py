"""What several apps' admins share."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponseRedirect


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only services write (orders, snapshots): operators read them and act through admin actions."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    """An append-only history shown under its row (limit changes, config events): read, never edited here."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ServiceSavedAdmin(admin.ModelAdmin):
    """A change form whose `save_model` goes through a service that may refuse (a stale version, a bad value).

    `save_model` raises ValidationError with the service's message; the operator sees "Not saved: ..." on the
    same form again, and nothing was written.
    """

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().changeform_view(request, *args, **kwargs)
        except ValidationError as exc:
            self.message_user(request, f"Not saved: {'; '.join(exc.messages)}", messages.ERROR)
            return HttpResponseRedirect(request.path)
