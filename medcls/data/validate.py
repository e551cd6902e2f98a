"""Validate stage: a Great Expectations suite over the manifest, built from `validate.*` params.

Three tables are checked: the manifest (one row per image), the patients (one row per patient
and split, so a patient in two splits is a duplicate) and the class counts (one row per split
and class). Writes `summary.json` and `report.md`; a failed blocking expectation raises
ValidationFailed naming each failure and how many rows broke it.
"""

from __future__ import annotations

import logging
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from medcls.catalog import PREPARED_SPLITS, SPLITS, RawData, ValidationReports
from medcls.config import ValidateConfig
from medcls.data.manifest import load_dataset_facts, load_manifest
from medcls.errors import ValidationFailed
from medcls.support.files import staged_dir, write_bytes, write_json


@dataclass(frozen=True)
class Check:
    """One expectation: what it means in words, the table it runs on, and whether it blocks."""

    description: str
    table: str
    expectation: str  # the Great Expectations class name
    kwargs: dict
    blocking: bool = True


@dataclass(frozen=True)
class Outcome:
    check: Check
    success: bool
    unexpected: int  # rows that broke the expectation
    examples: list


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    outcomes: tuple[Outcome, ...]
    report_dir: Path

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.check.blocking]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and not o.check.blocking]


def validate_data(cfg: ValidateConfig, raw_dir: Path, report_dir: Path) -> ValidationReport:
    """Run the suite on `raw_dir`, write the report (also when it fails), raise ValidationFailed
    on a blocking failure."""
    manifest = load_manifest(raw_dir)
    labels = cfg.expected_labels or load_dataset_facts(raw_dir)["class_names"]
    tables = _tables(manifest, RawData(raw_dir), labels)
    with staged_dir(report_dir) as staging:
        outcomes = tuple(_run_checks(tables, build_checks(cfg, labels), ValidationReports(staging).data_docs))
        success = all(o.success or not o.check.blocking for o in outcomes)
        report = ValidationReport(success, outcomes, report_dir)
        _write_report(report, tables, ValidationReports(staging))
    if not report.success:
        failed = "; ".join(_describe(o) for o in report.failures)
        raise ValidationFailed(f"validation failed: {failed} (see {ValidationReports(report_dir).report})")
    return report


def build_checks(cfg: ValidateConfig, labels: list[str]) -> list[Check]:
    """The suite, from params: (table, column, GE expectation, meaning, its arguments)."""
    low, high = cfg.image_size_range
    leakage = {"blocking": cfg.leakage == "fail"}
    in_set, between, unique = (
        "ExpectColumnValuesToBeInSet",
        "ExpectColumnValuesToBeBetween",
        "ExpectColumnValuesToBeUnique",
    )
    return [
        *(_check("manifest", column, "ExpectColumnValuesToNotBeNull", f"every image has a {column}")
          for column in ("label", "patient_id", "split")),
        _check("manifest", "label", in_set, "labels are the expected ones", value_set=labels),
        _check("manifest", "split", in_set, "splits are train/val/test/calibration", value_set=list(PREPARED_SPLITS)),
        _check("manifest", "split", "ExpectColumnDistinctValuesToContainSet", "every split is present",
               value_set=list(SPLITS)),
        _check("manifest", "file_present", in_set, "every image file is present", value_set=[True]),
        _check("manifest", "image_id", unique, "no image is in two splits (leakage)", **leakage),
        _check("manifest", "width", between, "image widths within bounds", min_value=low, max_value=high),
        _check("manifest", "height", between, "image heights within bounds", min_value=low, max_value=high),
        _check("manifest", "channels", in_set, "channels allowed", value_set=list(cfg.allowed_channels)),
        _check("manifest", "bit_depth", in_set, "bit depth is 8 or 16", value_set=[8, 16]),
        _check("manifest", "std", between, "no blank or constant image", min_value=cfg.min_intensity_std),
        _check("manifest", "max", between, "no all-black image", min_value=cfg.min_max_intensity),
        _check("patients", "patient_id", unique, "no patient in two splits (leakage)", **leakage),
        _check("classes", "images", between, "enough images per class in each split",
               min_value=cfg.min_images_per_class),
        _check("classes", "fraction", between, "class balance within bounds", min_value=cfg.min_class_fraction),
    ]  # fmt: skip


def _check(table: str, column: str, expectation: str, description: str, blocking: bool = True, **kwargs) -> Check:
    return Check(description, table, expectation, {"column": column, **kwargs}, blocking)


def _tables(manifest: pd.DataFrame, raw: RawData, labels: list[str]) -> dict[str, pd.DataFrame]:
    manifest = manifest.assign(file_present=[_non_empty_file(raw.image(file)) for file in manifest["file"]])
    patients = manifest[["patient_id", "split"]].drop_duplicates()
    grid = pd.MultiIndex.from_product([list(SPLITS), sorted(set(labels) | set(manifest["label"]))])
    counts = manifest.groupby(["split", "label"]).size().reindex(grid, fill_value=0)
    classes = counts.rename("images").rename_axis(["split", "label"]).reset_index()
    split_sizes = classes.groupby("split")["images"].transform("sum").clip(lower=1)
    classes["fraction"] = classes["images"] / split_sizes
    return {"manifest": manifest, "patients": patients, "classes": classes}


def _non_empty_file(path: Path) -> bool:
    try:
        status = path.stat()
    except OSError:
        return False
    return stat.S_ISREG(status.st_mode) and status.st_size > 0


def _run_checks(tables: dict[str, pd.DataFrame], checks: list[Check], docs_dir: Path) -> list[Outcome]:
    """Validate each table with its suite; the results also become Data Docs in `docs_dir`."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX forces this logger to INFO at import ("Created temporary directory ... docs site").
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site("medcls", _docs_site(docs_dir))
    source = context.data_sources.add_pandas("medcls")
    outcomes = []
    for table, frame in tables.items():
        suite = context.suites.add(gx.ExpectationSuite(name=f"medcls-{table}"))
        by_id = {}
        for check in (c for c in checks if c.table == table):
            expectation = suite.add_expectation(getattr(gx.expectations, check.expectation)(**check.kwargs))
            by_id[expectation.id] = check
        batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("all")
        validation = context.validation_definitions.add(gx.ValidationDefinition(name=table, data=batch, suite=suite))
        result = validation.run(batch_parameters={"dataframe": frame})
        # GE reports in its own order; match each result to its check by expectation id.
        outcomes += [_outcome(by_id[r.expectation_config.id], r) for r in result.results]
    context.build_data_docs(site_names=["medcls"])
    return sorted(outcomes, key=lambda outcome: checks.index(outcome.check))


def _docs_site(folder: Path) -> dict:
    return {
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }


def _outcome(check: Check, result) -> Outcome:
    details = result.result or {}
    examples = details.get("partial_unexpected_list") or details.get("observed_value") or []
    return Outcome(
        check=check,
        success=bool(result.success),
        unexpected=int(details.get("unexpected_count") or 0),
        examples=[_plain(value) for value in list(examples)[:5]],
    )


def _plain(value: object) -> object:
    """JSON-safe example values (GE returns numpy scalars)."""
    return value.item() if hasattr(value, "item") else value


def _describe(outcome: Outcome) -> str:
    check = outcome.check
    text = f"{check.description} [{check.expectation} on {check.table}.{check.kwargs['column']}]"
    if outcome.success:
        return text
    return f"{text}: " + (f"{outcome.unexpected} rows" if outcome.unexpected else f"observed {outcome.examples}")


def _write_report(report: ValidationReport, tables: dict[str, pd.DataFrame], folder: ValidationReports) -> None:
    """`summary.json` (stable: no dates, so DVC sees the same result as unchanged) and `report.md`."""
    docs = folder.data_docs.name
    write_json(
        folder.summary,
        {
            "success": report.success,
            "images": len(tables["manifest"]),
            "expectations": [asdict(o) for o in report.outcomes],
        },
    )
    lines = [
        f"# Data validation: {'PASSED' if report.success else 'FAILED'}",
        "",
        f"{len(tables['manifest'])} images, {tables['patients']['patient_id'].nunique()} patients. "
        f"Great Expectations Data Docs: [{docs}/index.html]({docs}/index.html).",
        "",
        "| result | check | examples |",
        "|---|---|---|",
    ]
    for o in report.outcomes:
        status = "ok" if o.success else ("FAIL" if o.check.blocking else "warn")
        lines.append(f"| {status} | {_describe(o)} | {o.examples if not o.success else ''} |")
    lines += ["", "## Images per split and class", "", "```", tables["classes"].to_string(index=False), "```"]
    write_bytes(folder.report, ("\n".join(lines) + "\n").encode())
