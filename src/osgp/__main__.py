import sys

from osgp.cli import main

sys.exit(main())
