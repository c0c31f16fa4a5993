import sys

from audio2anim.cli import main

sys.exit(main())
