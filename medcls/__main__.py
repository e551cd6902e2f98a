import sys

from medcls.cli import main

sys.exit(main())
