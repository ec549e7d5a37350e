import sys

from bench.baselines import main

sys.exit(main())
