import os
import sys

# tests import their shared helpers (builders.py, models.py) by name
sys.path.insert(0, os.path.dirname(__file__))
