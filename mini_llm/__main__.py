"""``python -m mini_llm``: the same as the ``mini-llm`` command."""

import sys

from mini_llm.cli import main

sys.exit(main())
