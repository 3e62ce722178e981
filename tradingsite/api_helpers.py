"""What several apps' REST serializers share."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, naming them: a typo (`confidance`) or a server-owned field must not be
    ignored silently, nor silently get the default."""

    unknown_message = "not accepted: unknown field"

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: [self.unknown_message] for name in unknown})
        return super().to_internal_value(data)
