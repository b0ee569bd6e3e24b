"""`python -m rfmfast.bench ARGS` is `rfmfast bench ARGS`."""

import sys

from rfmfast.bench import main

sys.exit(main(sys.argv[1:]))
