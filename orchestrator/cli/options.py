"""The options several `kdorch` commands share, declared once (their help is part of each
command's `--help`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.frontend.overrides import SET_EXAMPLE

# Examples in help texts must work on pipelines/hinton_kd.yaml (tests/unit/test_help_examples.py).
PipelineArg = Annotated[
    Path, typer.Argument(help="Pipeline YAML file.", show_default=False, metavar="PIPELINE")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="PATH=VALUE",
        help="Override a value before validation (repeatable). PATH is dotted; a step is named "
        f"by its id, e.g. --set {SET_EXAMPLE}",
    ),
]
ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", "-p", metavar="NAME", help="Apply a profile from the file."),
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        metavar="URI",
        help="Artifact store (dir or fsspec URI). Default: $KDORCH_STORAGE, "
        "the file's `storage`, else ./.kdorch",
    ),
]
StorageOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        metavar="KEY=VALUE",
        help="A storage option (repeatable), over the file's storage_options: endpoint_url, "
        "region, profile, anon, client_kwargs.NAME, options.NAME; e.g. --storage-option "
        "endpoint_url=http://127.0.0.1:9000. Credentials: the AWS_* environment variables or "
        "profile=NAME.",
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        metavar="ADDRESS",
        help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray).",
    ),
]
JobAddressOpt = Annotated[
    str, typer.Option("--address", help="Ray dashboard/Jobs address, e.g. http://head:8265.")
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")]
TrackOpt = Annotated[
    str | None,
    typer.Option(
        "--track",
        metavar="URI",
        help="Track the run in MLflow (and TensorBoard): a tracking server "
        "(http://HOST:5000), a database URI, or 'local' for a SQLite store in the artifact "
        "store (docs/tracking.md).",
    ),
]
