"""``python -m prunehess`` is the ``prunehess`` command."""
from prunehess.cli import main

if __name__ == "__main__":
    main()
