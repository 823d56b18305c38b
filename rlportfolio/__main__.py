import sys

from rlportfolio.cli import main

sys.exit(main())
