"""The `nncodec` command line (click)."""
