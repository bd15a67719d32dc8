"""Entry point of the `nncodec` command; the commands live in their own modules.

Every failure is one `error: ...` line on stderr with exit code 1 (usage errors: click's code 2;
Ctrl-C: `error: interrupted`, 130); a traceback is a bug. Set NNCODEC_DEBUG=1 to see one anyway.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import click

from nncodec.errors import NNCodecError

from .cancel import cancellable
from .common import CliError, Interrupted, describe_os_error, one_line
from .decode import decode
from .demo import demo
from .encode import encode
from .info import info
from .lossy import budget
from .mdl import mdl
from .prune import prune
from .verify import verify

# Commands whose modules import torch at load time: imported only when used, so that encode, decode,
# info and verify start without torch (seconds of start-up and ~200 MB of memory).
LAZY_COMMANDS = {"importance": "nncodec_cli.importance"}


class NncodecGroup(click.Group):
    """A click group that turns every exception of a command into a one-line error."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        # in the order of a typical session, not alphabetical
        return list(self.commands) + [name for name in LAZY_COMMANDS if name not in self.commands]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            import importlib

            self.add_command(getattr(importlib.import_module(LAZY_COMMANDS[cmd_name]), cmd_name))
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except NNCodecError as e:
            raise CliError(one_line(e)) from None
        except OSError as e:
            raise CliError(describe_os_error(e)) from None
        except KeyboardInterrupt:
            raise Interrupted() from None
        except Exception as e:
            if os.environ.get("NNCODEC_DEBUG"):
                raise
            raise CliError(f"internal error: {type(e).__name__}: {one_line(e)} "
                           "(please report it; NNCODEC_DEBUG=1 shows the traceback)") from None


EPILOG = """\b
Examples:
  nncodec demo                                  # try it on a bundled model, no download
  nncodec encode model.pt -o model.nnc
  nncodec info model.nnc
  nncodec verify model.nnc
  nncodec decode model.nnc -o model.safetensors
"""


@click.group(cls=NncodecGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nncodec")
def main() -> None:
    """nncodec: compressed neural-network files (.nnc) whose size is the model's exact description length."""
    _exit_cleanly_on_sigterm()


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM becomes SystemExit, so half-written temporary files are removed on the way out
    (the default action would kill the process and leave them behind)."""

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, terminate)


# encode, decode, info and verify run in a worker thread so that Ctrl-C / SIGTERM act within a second
# (cli/cancel.py); not the training commands (prune, budget...), which catch Ctrl-C to stop training.
for command in (encode, decode, info, verify):
    main.add_command(cancellable(command))
main.add_command(demo)
main.add_command(prune)
main.add_command(budget)
main.add_command(mdl)
