import sys
from pathlib import Path

# Tests import the project as installed (editable) into the virtualenv; the
# repo root is also put first so a checkout under test wins over another one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
