"""`python -m confroute.cli`: the `confroute` command."""
import sys

from confroute.cli import main

sys.exit(main())
