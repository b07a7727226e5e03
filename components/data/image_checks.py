"""An image folder checked from its listing alone (no image is opened), for `kdorch validate`:
the folder exists and holds images in at least two class folders, none of them empty, with
enough images per class to learn from. A Parquet table of encoded images is checked from its
footers (`components.data.footer`)."""

from __future__ import annotations

from orchestrator.component import ConfigIssue
from schemas.kd.components.dataset import DatasetConfig

_LAYOUT = "the layout is <uri>/<class>/<image>, one folder per class (relative paths start at "
_LAYOUT += "the directory kdorch runs in)"
#: A real image folder to try, made from data bundled with the installed packages.
_BUNDLED = (
    "; a real one to try: `python -m components.data.bundled mnist-png data/mnist_png` writes the "
    "5,000 bundled MNIST digits as PNG files in that layout"
)


def check_image_folder(cfg: DatasetConfig) -> list[ConfigIssue]:
    """Issues with ``cfg``'s image folder (none for the other sources)."""
    if cfg.source != "image_folder" or cfg.uri is None:
        return []  # before the import: every `kdorch run` checks its dataset steps
    from components.data.images import ImageSourceError, list_image_folder

    try:
        list_image_folder(cfg.uri, cfg.storage_options)
    except ImageSourceError as e:
        missing = "does not exist" in str(e)
        return [ConfigIssue(str(e), "uri", _LAYOUT + (_BUNDLED if missing else ""))]
    except OSError as e:  # unreachable endpoint, refused credentials
        return [
            ConfigIssue(
                f"cannot list the image folder {cfg.uri}: {type(e).__name__}: {e}",
                "uri",
                "check the URI and the dataset's `storage_options` (endpoint_url, profile, or "
                "the AWS_* environment variables)",
            )
        ]
    return []
