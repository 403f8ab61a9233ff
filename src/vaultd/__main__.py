import sys

from vaultd.cli import main

sys.exit(main())
