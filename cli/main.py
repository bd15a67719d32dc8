"""Entry point of the `nncodec` command; the commands live in their own modules."""

import click


@click.group()
def main() -> None:
    """nncodec: compressed neural-network files (.nnc)."""
