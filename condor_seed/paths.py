"""Where the project's data lives (templates and recipes ship beside the package)."""
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_DIR / "templates"
RECIPES_DIR = PROJECT_DIR / "recipes"


def tool_search_path() -> str:
    """PATH with this interpreter's folder first: tools installed by pip (shellcheck, zizmor) live in the
    project's virtual environment, which `.venv/bin/invoke` runs from without putting it on PATH."""
    import os
    import sys

    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
