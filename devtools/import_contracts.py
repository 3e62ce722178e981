"""An import-linter contract for the app boundaries of CONVENTIONS.md.

An app may import another app only through its `services` and `selectors`
(and the pure computation modules listed in `shared_modules`, which import no
Django and so carry no hidden coupling to another app's tables). Everything
else of an app (models, tasks, apis, admin, ...) is private to it.
"""

from __future__ import annotations

from typing import Any

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class AppBoundariesContract(Contract):
    type_name = "app_boundaries"

    apps_package = fields.StringField()
    public_modules = fields.ListField(subfield=fields.StringField())
    shared_modules = fields.ListField(subfield=fields.StringField(), required=False)

    def _app_of(self, module: str) -> str | None:
        prefix = f"{self.apps_package}."
        if not module.startswith(prefix):
            return None
        return module[len(prefix) :].split(".", 1)[0]

    def _is_public(self, module: str, app: str) -> bool:
        rest = module[len(f"{self.apps_package}.{app}") :].lstrip(".")
        head = rest.split(".", 1)[0]
        shared: list[str] = self.shared_modules or []  # type: ignore[assignment]
        public: list[str] = self.public_modules  # type: ignore[assignment]
        return head in public or module in shared or rest == ""

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        violations: list[dict[str, Any]] = []
        for importer in sorted(graph.modules):
            source_app = self._app_of(importer)
            if source_app is None:
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                target_app = self._app_of(imported)
                if target_app is None or target_app == source_app or self._is_public(imported, target_app):
                    continue
                details = graph.get_import_details(importer=importer, imported=imported)
                lines = [d["line_number"] for d in details]
                violations.append({"importer": importer, "imported": imported, "lines": lines})
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for v in check.metadata["violations"]:
            where = ", ".join(f"l.{n}" for n in v["lines"])
            output.print_error(f"{v['importer']} -> {v['imported']} ({where})")
        output.print(
            f"Import another app only through its {' or '.join(self.public_modules)}."  # type: ignore[arg-type]
        )
