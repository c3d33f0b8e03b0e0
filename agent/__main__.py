import sys

from agent.runtime import main

sys.exit(main())
