"""``rgbxseg annotate``: serve the annotation UI for a folder, export its annotations, make a demo folder.

    rgbxseg annotate FOLDER [--modalities depth,thermal] [--classes classes.yaml] [--port 8765] [--token T]
    rgbxseg annotate export FOLDER [--out DIR] [--format png --format coco]
    rgbxseg annotate make-demo OUT [--images 6]

``annotate FOLDER`` is short for ``annotate serve FOLDER`` (a click group with a default command).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

if TYPE_CHECKING:
    from rgbxseg.data import SyntheticStreets

console = Console()


class _DefaultServe(TyperGroup):
    """A group whose first argument, when it is not a subcommand, goes to ``serve``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


annotate_app = typer.Typer(cls=_DefaultServe, no_args_is_help=True, help=__doc__.splitlines()[0])

ProjectOption = typer.Option(
    None, "--project", help="Project folder (default: FOLDER.annotations, else ./rgbxseg-annotations/NAME)."
)
ClassesOption = typer.Option(
    None, "--classes", help="YAML list of class names (or {name, color}); default: one class 'object'."
)


def default_project(folder: Path) -> Path:
    """``FOLDER.annotations`` next to the data when that place is writable, else under the working directory."""
    beside = folder.resolve().with_name(folder.resolve().name + ".annotations")
    if beside.is_dir() or os.access(beside.parent, os.W_OK):
        return beside
    return Path.cwd() / "rgbxseg-annotations" / folder.resolve().name


@annotate_app.command("serve")
def serve(
    folder: Path = typer.Argument(..., help="Images (or an RGB-X folder: rgb/, one folder per modality)."),
    modalities: str = typer.Option(
        "", "--modalities", help="Comma-separated modality folders to show (and feed the engine)."
    ),
    classes: Path | None = ClassesOption,
    project: Path | None = ProjectOption,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (127.0.0.1: this machine only)."),
    port: int = typer.Option(8765, "--port"),
    token: str | None = typer.Option(
        None, "--token", help="Require this bearer token on every API request ('auto': generate one)."
    ),
    weights: str = typer.Option("vit_s14", "--weights", help="MMMS weights: a shipped name or a .safetensors file."),
    cache: Path | None = typer.Option(None, "--cache", help="Backbone feature cache folder."),
) -> None:
    """Serve the annotation UI for FOLDER and print its URL."""
    import uvicorn

    from rgbxseg.interactive.engine import MMMSEngine
    from rgbxseg.web.annotator import Annotator, load_classes
    from rgbxseg.web.project import AnnotationProject
    from rgbxseg.web.server import create_app

    names = tuple(n.strip() for n in modalities.split(",") if n.strip())
    store = AnnotationProject(project or default_project(folder))
    engine = MMMSEngine.from_weights(weights, cache)
    annotator = Annotator(folder, engine, store, load_classes(classes), names)
    secret = secrets.token_urlsafe(16) if token == "auto" else token
    url = f"http://{host}:{port}/" + (f"#token={secret}" if secret else "")
    console.print(f"annotating {len(annotator.images)} images of {folder} → {store.folder}\nopen {url}")
    uvicorn.run(create_app(annotator, secret), host=host, port=port, log_level="warning")


@annotate_app.command("export")
def export(
    folder: Path = typer.Argument(..., help="The annotated folder."),
    project: Path | None = ProjectOption,
    classes: Path | None = ClassesOption,
    out: Path | None = typer.Option(None, "--out", help="Export folder (default: PROJECT/export)."),
    formats: list[str] = typer.Option(
        ["png", "surfaces", "coco"], "--format", help="png, surfaces, coco (repeatable)."
    ),
) -> None:
    """Write PNG label maps, per-surface masks and COCO JSON (RLE) of the saved annotations."""
    from rgbxseg.errors import DataError
    from rgbxseg.web.annotator import load_classes
    from rgbxseg.web.export import export_annotations
    from rgbxseg.web.project import AnnotationProject

    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    store = AnnotationProject(project or default_project(folder))
    target = out or store.folder / "export"
    files = export_annotations(store, [(c.id, c.name) for c in load_classes(classes)], target, formats)
    console.print(f"wrote {len(files)} files to {target}")


DEMO_SIZE, DEMO_SEED = (360, 480), 7


def demo_scenes(images: int) -> SyntheticStreets:
    """The scenes ``make-demo`` writes: SyntheticStreets by day with depth and thermal (their labels are the
    ground truth the tests annotate against)."""
    from rgbxseg.data import SyntheticStreets

    return SyntheticStreets(images, DEMO_SIZE, seed=DEMO_SEED, conditions=("day",), modalities=("depth", "thermal"))


@annotate_app.command("make-demo")
def make_demo(
    out: Path = typer.Argument(..., help="Folder to create (RGB-X layout: rgb/, depth/, thermal/, classes.yaml)."),
    images: int = typer.Option(6, "--images", min=1),
) -> None:
    """Write SyntheticStreets scenes as an RGB-X folder to try the annotation UI on (no files needed), with
    the scenes' classes and colours in classes.yaml."""
    import cv2
    import numpy as np
    import yaml

    from rgbxseg.atomic import atomic_path, atomic_write_text

    scenes = demo_scenes(images)
    for index in range(images):
        raw = scenes.load(index)
        files = {"rgb": cv2.cvtColor((raw.image * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR)}
        files |= {name: (m[..., 0] * 65535).round().astype(np.uint16) for name, m in raw.modalities.items()}
        for name, array in files.items():
            with atomic_path(out / name / f"scene{index:03d}.png") as tmp:
                cv2.imwrite(str(tmp), array)
    colours = ["#{:02x}{:02x}{:02x}".format(*rgb) for rgb in np.asarray(scenes.palette)[: len(scenes.classes)]]
    entries = [{"name": name, "color": colour} for name, colour in zip(scenes.classes, colours, strict=True)]
    atomic_write_text(out / "classes.yaml", yaml.safe_dump(entries, sort_keys=False))
    console.print(
        f"wrote {images} scenes to {out}; try: rgbxseg annotate {out} --modalities depth,thermal "
        f"--classes {out / 'classes.yaml'}"
    )
