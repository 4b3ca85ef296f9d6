import sys

from cskd.cli.main import main

sys.exit(main())
