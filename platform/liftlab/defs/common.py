"""Small helpers shared by the asset modules (no business logic here)."""


from datetime import timedelta
from pathlib import Path

import dagster as dg

from liftlab.specs import LoadedSpec, load_specs
from liftlab.tables import markdown_table  # noqa: F401 - the asset modules' preview tables

OWNER = "team:experimentation-platform"

#: Retry policy of every asset and check that touches Postgres or files. A dropped connection or
#: a restarting server raises (psycopg.OperationalError, or DatabaseUnavailable when it cannot
#: connect) and Dagster runs the step again after 2 s, then 4 s. Every write replaces its slice
#: in one transaction, so a retried step starts from the state before the failed attempt.
#: Errors that a retry cannot fix (a bad spec or file) raise ``Failure(allow_retries=False)``.
io_retry = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)

#: Data older than this is stale: the daily chain runs every 24 h, plus slack for a slow day.
DAILY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=30), warn_window=timedelta(hours=26))


def specs_by_id() -> dict[str, LoadedSpec]:
    return {loaded.spec.id: loaded for loaded in load_specs()}


def spec_for_partition(partition_key: str) -> LoadedSpec:
    specs = specs_by_id()
    if partition_key not in specs:
        raise KeyError(f"no experiment spec with id {partition_key!r} in experiments/ (known: {sorted(specs)})")
    return specs[partition_key]


#: A PNG up to this size is embedded in metadata as written; a larger one is downscaled first
#: (every materialization event stores its metadata in Dagster's event log).
INLINE_PNG_MAX_BYTES = 300_000


def _smaller_png(png: bytes, max_bytes: int) -> bytes:
    """``png`` re-encoded with a 256-colour palette (plots have few colours), shrunk by a quarter
    at a time until it fits in ``max_bytes``."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGBA")
    image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")  # no black holes
    scale = 1.0
    while True:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        frame = image if scale == 1.0 else image.resize(size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        frame.quantize(colors=256).save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= max_bytes or min(size) <= 64:
            return buffer.getvalue()
        scale *= 0.75


def inline_png(png: str | Path | bytes, alt: str, max_bytes: int = INLINE_PNG_MAX_BYTES) -> dg.MetadataValue:
    """A plot as Markdown metadata that the Dagster UI shows inline: the PNG embedded as a
    ``data:image/png;base64`` image (downscaled when larger than ``max_bytes``), then — for a
    file — its path as plain text. Every plot of every asset goes through here: the UI cannot
    open a ``file://`` link (it renders it as ``javascript:void(0)``) nor show a path's image."""
    import base64

    path = None if isinstance(png, bytes) else Path(png)
    data = png if path is None else path.read_bytes()
    if len(data) > max_bytes:
        data = _smaller_png(data, max_bytes)
    label = " ".join(alt.replace("[", "(").replace("]", ")").split())
    text = f"![{label}](data:image/png;base64,{base64.b64encode(data).decode()})"
    if path is not None:
        text += f"\n\n`{path}`"
    return dg.MetadataValue.md(text)


def partitioned_check(name: str, *, asset, partitions_def: dg.PartitionsDefinition, **kwargs) -> dg.AssetCheckSpec:
    """An asset check of a partitioned asset that reports **per partition**.

    Dagster 1.13 evaluates a check per partition when its spec has the asset's
    ``partitions_def``: each evaluation records the step's partition
    (``AssetCheckEvaluation.partition``), so the UI and the instance keep one result per
    experiment. A check without it is unpartitioned: every experiment's run replaced the one
    result, and the UI showed whichever experiment ran last. ``partitions_def`` on a check spec
    is a preview feature in 1.13; its PreviewWarning is silenced here so that loading the
    definitions (every run and step process loads them) does not repeat it.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(name, asset=asset, partitions_def=partitions_def, **kwargs)
