"""Label Studio: the review queue as tasks to import (image, heat map, the model's label as a
pre-annotation) with the labelling interface, and reviewed labels read back from its JSON export."""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pandas as pd

from medcls.catalog import ScoringOutputs
from medcls.errors import DataError
from medcls.support.files import read_json, write_bytes


def export_label_studio(queue: pd.DataFrame, class_names: list[str], out_dir: Path, files_root: Path) -> Path:
    """`review_tasks.json` for Label Studio's import, and `label_studio.xml` for its labelling
    setup. Images are served as local files relative to `files_root` (Label Studio's
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)."""
    outputs = ScoringOutputs(out_dir)
    tasks = [_task(row, out_dir, files_root) for row in queue.to_dict("records")]
    write_bytes(outputs.review_tasks, json.dumps(tasks, indent=1).encode())
    choices = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in class_names)
    config = (
        "<View>\n"
        '  <Image name="image" value="$image" zoom="true"/>\n'
        '  <Image name="heatmap" value="$heatmap"/>\n'
        '  <Choices name="label" toName="image" choice="single" showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )
    write_bytes(outputs.label_config, config.encode())
    return outputs.review_tasks


def _task(row: dict, out_dir: Path, files_root: Path) -> dict:
    """One task: the review image scoring wrote (pixels only, named by id: no inbox file name, no
    DICOM header reaches Label Studio), or for a label-audit row its stored training image."""
    heatmap, shown = row.get("heatmap"), row.get("review_image")
    image = out_dir / shown if isinstance(shown, str) and shown else Path(row["path"])
    data = {
        "image": _local_file(image, files_root),
        "image_id": row["image_id"],
        "model_version": str(row["model_version"]),
        "confidence": round(float(row["confidence"]), 4),
    }
    if isinstance(heatmap, str) and heatmap:
        data["heatmap"] = _local_file(out_dir / heatmap, files_root)
    prediction = {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [row["label"]]}}
    return {
        "data": data,
        "predictions": [
            {"model_version": f"v{row['model_version']}", "score": float(row["confidence"]), "result": [prediction]}
        ],
    }


def _local_file(path: Path, root: Path) -> str:
    resolved, root = path.resolve(), root.resolve()
    relative = resolved.relative_to(root) if resolved.is_relative_to(root) else resolved
    return f"/data/local-files/?d={relative.as_posix().lstrip('/')}"


def read_label_studio_export(path: Path) -> pd.DataFrame:
    """The latest non-cancelled annotation of each task that has one; a file of another shape is
    one DataError, never a traceback."""
    try:
        tasks = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a Label Studio JSON export: {exc}") from None
    rows = [row for task in (tasks if isinstance(tasks, list) else []) if (row := _reviewed(task)) is not None]
    if not rows:
        raise DataError(f"{path}: no annotated task with an image_id (is it a Label Studio JSON export?)")
    return pd.DataFrame(rows)


def _reviewed(task: object) -> dict | None:
    """A task's reviewed label, or None when it has none a reviewer gave (or is malformed)."""
    data = task.get("data") if isinstance(task, dict) else None
    annotations = task.get("annotations") if isinstance(task, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("image_id"), str) or not isinstance(annotations, list):
        return None
    given = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    results = given[-1].get("result") if given else None
    choices = [
        result["value"]["choices"][0]
        for result in (results if isinstance(results, list) else [])
        if isinstance(result, dict) and result.get("type") == "choices" and isinstance(result.get("value"), dict)
        and isinstance(result["value"].get("choices"), list) and result["value"]["choices"]
        and isinstance(result["value"]["choices"][0], str)
    ]  # fmt: skip
    if not choices:
        return None
    reviewer = given[-1].get("completed_by")
    return {
        "image_id": data["image_id"],
        "label": choices[0],
        "reviewer": str(reviewer.get("email", reviewer) if isinstance(reviewer, dict) else reviewer or ""),
        "reviewed_at": str(given[-1].get("updated_at") or given[-1].get("created_at") or ""),
    }
