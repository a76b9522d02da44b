"""The `kmq` command (and `python -m kmq`): its input image starts decoding before the rest of kmq loads
(kmq.prefetch), then kmq.cli runs."""
import sys


def main() -> None:
    from . import prefetch

    prefetch.start(sys.argv[1:])
    from .cli import main as cli

    cli()


if __name__ == "__main__":
    main()
