import sys

from tests.drills.runner import main

sys.exit(main())
