"""Entry point of `python -m app.campaigns`: hands the arguments to the campaigns' command line
(`app/campaigns/cli.py`) and exits with its status."""

import sys

from app.campaigns.cli import main

if __name__ == "__main__":
    sys.exit(main())
