"""``python -m mini_llm``: the same as the ``mini-llm`` command."""

import sys

try:
    from mini_llm.cli import main
except KeyboardInterrupt:  # Ctrl-C before the command line could start: no traceback
    sys.exit(130)

sys.exit(main())
