"""One image as the model saw it, for the pages that show a full image (detail, review queue).

A phone photo's EXIF orientation tag makes every photo viewer (and a browser given the raw file)
turn it upright, while the model, like torchvision's default loader, got the stored pixels. Pages
therefore never hand the raw file to the browser: they show the decoded pixels the run used, and
:func:`orientation_note` says in words when that differs from how a viewer opens the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import schema
from ..loading.images import ORIENTATION_WORDS
from ..store.runstore import Run

#: Longest side of the image a page shows, px (a 3024 px photo is not sent to a browser whole).
VIEW_SIDE = 1024


@dataclass(frozen=True)
class ImageView:
    """What a page shows for one image.

    Attributes
    ----------
    rgb : np.ndarray or None
        uint8 [H, W, 3], the pixels the model was given (before resize and crop), at most
        ``VIEW_SIDE`` on the longest side; None when the file cannot be read any more.
    orientation : int
        The file's EXIF orientation tag (0: none).
    exif_transpose : bool
        Whether the run applied it.
    note : str or None
        A sentence for the page when what is shown differs from how a viewer opens the file.
    error : str or None
        Why the file could not be read (moved, unreadable), or that it changed since the run
        (then ``rgb`` is the file as it is now).
    """

    rgb: np.ndarray | None
    orientation: int
    exif_transpose: bool
    note: str | None
    error: str | None = None


def run_exif_transpose(run: Run) -> bool:
    """Did the run apply EXIF orientation (``--exif-transpose``)?"""
    return bool((run.manifest.get("preprocessing") or {}).get("exif_transpose", False))


def orientation_note(orientation: int, exif_transpose: bool) -> str | None:
    """Words for an image whose EXIF orientation makes a viewer show it otherwise than the model
    saw it; None when viewer and model agree."""
    if orientation <= 1:
        return None
    turn = ORIENTATION_WORDS.get(int(orientation), "turned")
    if exif_transpose:
        return (
            f"This file carries an EXIF orientation tag ({orientation}: shown {turn}); the run"
            " applied it (--exif-transpose), so the model saw it as a photo viewer shows it."
        )
    return (
        f"Shown as the model saw it: the pixels as stored in the file. The file carries an EXIF"
        f" orientation tag ({orientation}), so a photo viewer shows it {turn} compared with this;"
        " the model, like torchvision's default loader, ignored the tag. If your pipeline"
        " rotates images by their tag, analyse again with --exif-transpose."
    )


def model_view(run: Run, row: int, *, max_side: int = VIEW_SIDE) -> ImageView:
    """Samples row ``row`` of ``run`` as its model saw it, with the note for the page."""
    from PIL import Image

    from ..loading.images import ImageReadError, decode_image, run_decode_limits

    s = run.samples.iloc[int(row)]
    transpose = run_exif_transpose(run)
    tag = int(s.get(schema.EXIF_ORIENTATION, 0) or 0)
    try:
        limits = run_decode_limits(run.manifest)
        img = decode_image(s[schema.PATH], exif_transpose=transpose, **limits)
    except (ImageReadError, OSError, ValueError) as e:
        return ImageView(None, tag, transpose, orientation_note(tag, transpose), str(e))
    im = Image.fromarray(img.rgb)
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side))
    changed = None
    if s.get(schema.CONTENT_HASH) and img.content_hash != s[schema.CONTENT_HASH]:
        changed = "the file changed since the run was made: this is the file as it is now"
    note = orientation_note(img.orientation, transpose)
    return ImageView(np.asarray(im), img.orientation, transpose, note, changed)
