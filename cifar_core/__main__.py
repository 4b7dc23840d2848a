import sys

from cifar_core.cli.main import main

sys.exit(main())
