"""`rtresnet digits`: the bundled digits ResNet-18 (trained once, cached) and held-out digit images."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--images", "images_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write held-out digits here as PNG files named <index>_label<digit>.png.")
@click.option("--count", type=click.IntRange(1, 360), default=10, show_default=True,
              help="How many held-out digits --images writes.")
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the class names (0..9), one per line, for `rtresnet export --labels`.")
def digits(images_dir: Path | None, count: int, labels_path: Path | None) -> None:
    """Print the path of the digits ResNet-18 checkpoint (1x32x32 input, 10 classes), training it first if this
    machine has none cached (about a minute on 2 cores; $RTRESNET_HOME/digits).

    \b
    Example:
      CKPT=$(rtresnet digits --images digit_pngs --count 4)
      rtresnet export --arch resnet18 --weights "$CKPT" --in-channels 1 --num-classes 10 --input-size 32 ...
    """
    import logging

    from rtresnet.data.digits import checkpoint_top1, digits_checkpoint, digits_labels, write_digit_images
    from rtresnet.fileutil import atomic_write_text

    path = digits_checkpoint()
    top1 = checkpoint_top1(path)
    if top1 is not None:
        logging.getLogger("rtresnet.cli").info("digits ResNet-18: held-out top-1 %.2f %% on 360 digits", 100 * top1)
    if images_dir is not None:
        written = write_digit_images(images_dir, count)
        logging.getLogger("rtresnet.cli").info("wrote %d held-out digits to %s", len(written), images_dir)
    if labels_path is not None:
        atomic_write_text(labels_path, "\n".join(digits_labels()) + "\n")
    click.echo(str(path))
