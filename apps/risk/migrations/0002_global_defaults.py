"""The desk's default limits: one global row, every field set, with its creation in the change history."""

from decimal import Decimal

from django.db import migrations

DEFAULTS = {
    "max_order_value": Decimal("5000000"),  # 50 lakh, the OMS's fixed limit before limits were editable
    "max_quantity": 100000,
    "max_position_value": Decimal("10000000"),  # 1 crore per symbol
    "max_concentration_pct": Decimal("40"),
    "concentration_floor": Decimal("2500000"),  # a book under 25 lakh is measured as if it were 25 lakh
    "max_gross_exposure": Decimal("50000000"),  # 5 crore
    "max_open_orders": 200,
    "daily_loss_limit": Decimal("500000"),  # 5 lakh
    "orders_per_second": 10,  # SEBI's retail-algo threshold
    "orders_per_day": 5000,  # Kite's own daily cap per account
    "price_band_pct": Decimal("5"),
    "var_limit": Decimal("1000000"),  # 10 lakh
}


def create(apps, schema_editor):
    RiskLimit = apps.get_model("risk", "RiskLimit")
    RiskLimitChange = apps.get_model("risk", "RiskLimitChange")
    row, created = RiskLimit.objects.get_or_create(scope="global", defaults={**DEFAULTS, "updated_by": "migration"})
    if created:
        RiskLimitChange.objects.bulk_create(
            RiskLimitChange(
                limit=row,
                limit_label="global limits",
                field=name,
                old_value="",
                new_value=str(value),
                version=1,
                changed_by="migration",
                source="migration",
            )
            for name, value in DEFAULTS.items()
        )


class Migration(migrations.Migration):
    dependencies = [("risk", "0001_limits_snapshots_scenarios")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
