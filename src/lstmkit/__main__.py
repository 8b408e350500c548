"""`python -m lstmkit` runs the command line."""
import sys

from lstmkit.cli.main import main

sys.exit(main())
