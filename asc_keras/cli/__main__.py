import sys

from asc_keras.cli import main

sys.exit(main())
